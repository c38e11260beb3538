"""Boundary: the datasets. alice's workspace reads only what gbm-linkage's permit names, and
writes none of it (controls: `tre.hub.plan.check_spawn`/`permit_mounts` mount exactly the
permitted versions read-only; the container has no capabilities, a seccomp profile and
no-new-privileges, so mount tables, `/proc` and file handles give no way round).

Every attempt runs as alice's code in her kernel, once; each case asserts one outcome.
The other project's data and workspace, and the pseudonym key, exist on this host at
the paths tried (checked here first), so ENOENT means "not reachable", not "wrong path".
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from tests.e2e.sites import PROJECT
from tests.security.support import OTHER_PROJECT, OTHER_SECRET, PROBE_PRELUDE, SUITE_MARKS, Parties
from tre.hub.datasets import check_dataset
from tre.hub.plan import check_spawn
from tre.policy import load_policy

pytestmark = SUITE_MARKS

PROBE = (
    PROBE_PRELUDE
    + r"""
DATA = "/data/clinical-records"
WORK = "/home/researcher/work"
first = next(os.path.join(r, f) for r, _, fs in sorted(os.walk(DATA)) for f in sorted(fs))
def read(path):
    with open(path, "rb") as f:
        return f.read(200)
def mount(source, target, fstype, flags):
    return check(libc.mount(source.encode(), target.encode(), fstype.encode(), flags, None))
MS_RDONLY, MS_REMOUNT, MS_BIND = 1, 32, 4096
def open_by_handle():
    # The "shocker" escape: open a host file by its handle (needs CAP_DAC_READ_SEARCH).
    handle = ctypes.create_string_buffer(8 + 128)
    ctypes.memmove(handle, (128).to_bytes(4, "little") + (1).to_bytes(4, "little"), 8)
    fd = os.open(DATA, os.O_RDONLY)
    try:
        opened = libc.open_by_handle_at(fd, handle, os.O_RDONLY)
        if opened < 0:
            e = ctypes.get_errno(); raise OSError(e, os.strerror(e))
        os.close(opened)
        return opened
    finally:
        os.close(fd)
def symlink_then_read(target, name):
    link = os.path.join(WORK, name)
    if os.path.islink(link):
        os.unlink(link)
    os.symlink(target, link)
    return read(link)
def hard_link_dataset():
    target = os.path.join(WORK, "hardlinked-dataset-file")
    os.link(first, target)
    return target
def host_processes():
    names = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                raw = open(f"/proc/{pid}/cmdline", "rb").read()
                names.append(raw.replace(b"\0", b" ").decode())
            except OSError:
                pass
    return [n for n in names if "jupyterhub " in n or "tre.audit" in n or "tre.review" in n]
mountinfo = open("/proc/self/mountinfo").read()
print(json.dumps({
    "datasets-listed": sorted(os.listdir("/data")),
    "read-other-projects-dataset-by-host-path": attempt(lambda: read(OTHER_DATA)),
    "read-other-projects-workspace-by-host-path": attempt(lambda: read(OTHER_WORK)),
    "read-the-pseudonym-key-by-host-path": attempt(lambda: read(KEY)),
    "dotdot-out-of-a-dataset-mount": attempt(
        lambda: os.listdir("/data/clinical-records/../../" + OTHER_PROJECT)),
    "proc-self-root-to-host-path": attempt(lambda: read("/proc/self/root" + OTHER_DATA)),
    "proc-1-root-to-host-path": attempt(lambda: read("/proc/1/root" + OTHER_DATA)),
    "proc-1-cwd-dotdot-to-host-path": attempt(lambda: read("/proc/1/cwd/../../.." + OTHER_DATA)),
    "symlink-in-workspace-to-other-dataset": attempt(
        lambda: symlink_then_read(OTHER_DATA, "link-other-data")),
    "symlink-in-workspace-to-other-workspace": attempt(
        lambda: symlink_then_read(OTHER_WORK, "link-other-work")),
    "mount-table-names-another-project": OTHER_PROJECT in mountinfo,
    "host-processes-visible-in-proc": host_processes(),
    "proc-kcore-read": attempt(lambda: len(read("/proc/kcore"))),
    "bind-mount-a-host-path": attempt(lambda: mount(OTHER_DATA, WORK, "", MS_BIND)),
    "mount-the-host-disk": attempt(lambda: mount("/dev/sda1", WORK, "ext4", 0)),
    "open-by-handle-shocker": attempt(open_by_handle),
    "write-new-file-in-dataset": attempt(lambda: write("/data/gbm-mri/planted")),
    "overwrite-dataset-file": attempt(lambda: write(first, "r+")),
    "append-to-dataset-file": attempt(lambda: write(first, "a")),
    "chmod-dataset-file": attempt(lambda: os.chmod(first, 0o666)),
    "rename-dataset-file": attempt(lambda: os.rename(first, first + ".moved")),
    "delete-dataset-file": attempt(lambda: os.unlink(first)),
    "touch-dataset-file-times": attempt(lambda: os.utime(first, (0, 0))),
    "hard-link-dataset-into-workspace": attempt(hard_link_dataset),
    "remount-dataset-read-write": attempt(
        lambda: mount("none", DATA, "", MS_REMOUNT | MS_BIND)),
}))
"""
)


@pytest.fixture(scope="module")
def attempts(parties: Parties) -> dict[str, Any]:
    settings = parties.site.settings
    other_data = sorted(
        p for p in (settings.datasets_dir / OTHER_PROJECT).rglob("*") if p.is_file()
    )[0]
    other_work = settings.workspaces_dir / OTHER_PROJECT / "carla-secret.csv"
    key = sorted(p for p in settings.keys_dir.rglob("*") if p.is_file())[0]
    for path in (other_data, other_work, key):
        assert path.is_file(), path  # the target is real: ENOENT inside means unreachable
    assert OTHER_SECRET in other_work.read_text()
    code = (
        f"OTHER_DATA = {str(other_data)!r}; OTHER_WORK = {str(other_work)!r}; "
        f"KEY = {str(key)!r}; OTHER_PROJECT = {OTHER_PROJECT!r}\n" + PROBE
    )
    found: dict[str, Any] = parties.alice.run_json(code)
    return found


GBM_DATASETS = [
    "clinical-records",
    "gbm-alignments",
    "gbm-mri",
    "gbm-mri-nifti",
    "gbm-pathology",
    "gbm-single-cell",
    "gbm-variants",
]

UNREACHABLE = [
    "read-other-projects-dataset-by-host-path",
    "read-other-projects-workspace-by-host-path",
    "read-the-pseudonym-key-by-host-path",
    "dotdot-out-of-a-dataset-mount",
    "proc-self-root-to-host-path",
    "proc-1-root-to-host-path",
    "proc-1-cwd-dotdot-to-host-path",
    "symlink-in-workspace-to-other-dataset",
    "symlink-in-workspace-to-other-workspace",
]

NOT_PERMITTED = {
    "proc-kcore-read": {"EACCES", "EPERM", "ENOENT"},
    "bind-mount-a-host-path": {"EPERM"},
    "mount-the-host-disk": {"EPERM"},
    "open-by-handle-shocker": {"EPERM"},
    "hard-link-dataset-into-workspace": {"EXDEV"},
}

WRITE_OPENS = {"overwrite-dataset-file", "append-to-dataset-file"}

READ_ONLY = [
    "write-new-file-in-dataset",
    "overwrite-dataset-file",
    "append-to-dataset-file",
    "chmod-dataset-file",
    "rename-dataset-file",
    "delete-dataset-file",
    "touch-dataset-file-times",
]


def test_only_the_permitted_datasets_are_there(attempts: dict[str, Any]) -> None:
    """Control: the workspace does see its own project's datasets."""
    assert attempts["datasets-listed"] == GBM_DATASETS


@pytest.mark.parametrize("attempt", UNREACHABLE)
def test_data_outside_the_permit_is_unreachable(attempts: dict[str, Any], attempt: str) -> None:
    assert attempts[attempt] == "refused: ENOENT", attempts[attempt]


def test_the_mount_table_names_no_other_project(attempts: dict[str, Any]) -> None:
    assert attempts["mount-table-names-another-project"] is False


def test_proc_shows_no_host_process(attempts: dict[str, Any]) -> None:
    assert attempts["host-processes-visible-in-proc"] == []


@pytest.mark.parametrize("attempt", sorted(NOT_PERMITTED))
def test_no_mount_or_handle_trick_opens_the_host(attempts: dict[str, Any], attempt: str) -> None:
    outcome = str(attempts[attempt])
    if attempt == "proc-kcore-read" and outcome == "ok: 0":
        return  # Docker masks it with an empty file: nothing of the host's memory
    assert outcome.startswith("refused: "), outcome
    assert outcome.removeprefix("refused: ") in NOT_PERMITTED[attempt], outcome


@pytest.mark.parametrize("attempt", READ_ONLY)
def test_a_dataset_cannot_be_changed(attempts: dict[str, Any], attempt: str) -> None:
    # Opening a 0444 file for writing is refused by its mode before the mount is asked.
    allowed = {"EROFS", "EACCES"} if attempt in WRITE_OPENS else {"EROFS"}
    outcome = str(attempts[attempt])
    assert outcome.removeprefix("refused: ") in allowed, outcome


def test_remounting_a_dataset_read_write_is_refused(attempts: dict[str, Any]) -> None:
    assert attempts["remount-dataset-read-write"] == "refused: EPERM"


def test_the_dataset_files_on_the_host_are_unchanged(
    parties: Parties, attempts: dict[str, Any]
) -> None:
    """Whatever the attempts did, every mounted version still matches its sealed manifest."""
    settings = parties.site.settings
    policy = load_policy(settings.policy_dir, date.today())
    plan = check_spawn(policy, settings, "alice", PROJECT, date.today())
    for mount in plan.datasets:
        check_dataset(mount)  # raises DatasetUnavailable naming the changed file
