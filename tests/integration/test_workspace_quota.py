"""Workspace quotas for real: an ext4 image per project, mounted through a loop device.

These tests mount file systems, so they need root and loop devices (a loud skip
without them locally, a failure in CI, where both are there).
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tre.hub.quota import (
    QuotaError,
    prepare_workspace,
    quota_bytes,
    quota_image,
    release_workspace,
    workspace_capacity,
)
from tre.settings import HubSettings, Settings

PROJECT = "gbm-linkage"
MiB = 1 << 20


def _unavailable() -> str | None:
    if os.geteuid() != 0:
        return "mounting needs root"
    if not Path("/dev/loop-control").exists():
        return "no loop devices (/dev/loop-control)"
    for tool in ("mkfs.ext4", "resize2fs", "losetup", "mount", "umount"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


@pytest.fixture(autouse=True)
def _needs_loop_mounts() -> None:
    problem = _unavailable()
    if problem is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{problem} (CI is set: quotas are tested here)", pytrace=False)
    pytest.skip(f"SKIPPED LOUDLY: {problem}")


def settings_with(var: Path, quota: str | None) -> Settings:
    return Settings(
        policy_dir=var.parent / "policy", var_dir=var, hub=HubSettings(workspace_quota=quota)
    )


@pytest.fixture
def var(tmp_path: Path) -> Iterator[Path]:
    var = tmp_path / "var"
    yield var
    folder = var / "workspaces" / PROJECT
    if folder.is_mount():
        subprocess.run(["umount", str(folder)], check=False)


def fill(folder: Path, mib: int) -> int:
    """Write up to `mib` MiB into `folder`; the MiB written before the disk was full."""
    block = b"\0" * MiB
    written = 0
    with (folder / "big.bin").open("wb") as out:
        for _ in range(mib):
            try:
                out.write(block)
                out.flush()
                os.fsync(out.fileno())
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                return written
            written += 1
    return written


def test_a_quota_makes_the_workspace_its_own_file_system_of_that_size(var: Path) -> None:
    settings = settings_with(var, "32M")
    said = prepare_workspace(settings, PROJECT)
    folder = settings.workspaces_dir / PROJECT
    assert folder.is_mount(), said
    assert "own file system of 32M" in said
    assert 24 * MiB < workspace_capacity(folder) <= 32 * MiB
    info = folder.stat()
    assert (info.st_uid, info.st_gid, info.st_mode & 0o7777) == (1000, 100, 0o2770)
    image = quota_image(settings, PROJECT)
    assert image.stat().st_mode & 0o777 == 0o600
    assert image.stat().st_blocks * 512 < 32 * MiB  # sparse
    # The project cannot write past its quota, and the host's disk is untouched.
    written = fill(folder, 64)
    assert 16 <= written < 32
    options = next(
        line.split()[3]
        for line in Path("/proc/self/mounts").read_text().splitlines()
        if line.split()[1] == str(folder)
    )
    assert {"nodev", "nosuid"} <= set(options.split(","))


def test_preparing_again_changes_nothing_and_a_lost_mount_comes_back(var: Path) -> None:
    settings = settings_with(var, "32M")
    prepare_workspace(settings, PROJECT)
    folder = settings.workspaces_dir / PROJECT
    (folder / "analysis.py").write_text("print('kept')\n")
    assert "mounted" in prepare_workspace(settings, PROJECT)
    # A reboot loses the mount: the next start (or provision) mounts the same image again.
    subprocess.run(["umount", str(folder)], check=True)
    assert not (folder / "analysis.py").exists()
    prepare_workspace(settings, PROJECT)
    assert (folder / "analysis.py").read_text() == "print('kept')\n"


def test_a_larger_quota_grows_in_place_and_a_smaller_one_is_refused(var: Path) -> None:
    prepare_workspace(settings_with(var, "32M"), PROJECT)
    folder = var / "workspaces" / PROJECT
    (folder / "analysis.py").write_text("x = 1\n")
    said = prepare_workspace(settings_with(var, "64M"), PROJECT)
    if "grown to 64M" not in said:  # the kernel refused to grow it online: at the next mount
        assert "quota 64M from its next mount" in said, said
        subprocess.run(["umount", str(folder)], check=True)
        prepare_workspace(settings_with(var, "64M"), PROJECT)
    assert workspace_capacity(folder) > 48 * MiB
    assert (folder / "analysis.py").read_text() == "x = 1\n"
    with pytest.raises(QuotaError, match=r"'32M' \(32M\) is smaller than .*64M.*not done"):
        prepare_workspace(settings_with(var, "32M"), PROJECT)
    assert folder.is_mount() and (folder / "analysis.py").exists()


def test_an_unmounted_image_grows_before_it_is_mounted(var: Path) -> None:
    prepare_workspace(settings_with(var, "32M"), PROJECT)
    folder = var / "workspaces" / PROJECT
    subprocess.run(["umount", str(folder)], check=True)
    prepare_workspace(settings_with(var, "48M"), PROJECT)
    assert workspace_capacity(folder) > 36 * MiB


def test_files_already_in_a_workspace_without_quota_are_not_hidden(var: Path) -> None:
    prepare_workspace(settings_with(var, None), PROJECT)
    folder = var / "workspaces" / PROJECT
    assert not folder.is_mount()
    (folder / "notes.md").write_text("mine\n")
    with pytest.raises(QuotaError, match="already holds files and has no quota yet"):
        prepare_workspace(settings_with(var, "32M"), PROJECT)
    assert not folder.is_mount() and (folder / "notes.md").read_text() == "mine\n"
    assert not quota_image(settings_with(var, "32M"), PROJECT).exists()


def test_release_unmounts_and_removes_the_image(var: Path) -> None:
    settings = settings_with(var, "32M")
    prepare_workspace(settings, PROJECT)
    done = release_workspace(settings, PROJECT)
    folder = settings.workspaces_dir / PROJECT
    assert not folder.is_mount()
    assert not quota_image(settings, PROJECT).exists()
    assert [d.split()[0] for d in done] == ["unmounted", "removed"]
    assert release_workspace(settings, PROJECT) == []


@pytest.mark.parametrize(
    ("size", "message"),
    [("8M", "below the smallest, 16M"), ("lots", "is not a size")],
)
def test_bad_quotas_are_refused_by_value(var: Path, size: str, message: str) -> None:
    if size == "lots":
        with pytest.raises(QuotaError, match=message):
            quota_bytes(size)
        return
    with pytest.raises(QuotaError, match=message):
        prepare_workspace(settings_with(var, size), PROJECT)
    assert not quota_image(settings_with(var, size), PROJECT).exists()
