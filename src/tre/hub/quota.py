"""A project's workspace folder, and its disk quota.

Without a quota (`hub.workspace_quota` unset) the folder is a plain folder under
`var/workspaces`. With one, the folder is a file system of its own: an ext4 image
(`var/quotas/<project>.ext4`, sparse, so it takes only what is written) mounted through a
loop device with `nodev,nosuid`. A project that writes more than its quota gets "No space
left on device" in its own workspace and fills no one else's disk. This needs no quota
support from the host's file system (XFS or ext4 project quotas) and works the same on
every host; the hub runs as root and mounts it, at provisioning or at the first start
after a reboot.

A larger quota grows the image and the file system in place (`resize2fs` works on a
mounted ext4). A smaller one is refused: shrinking could lose a project's files.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from tre.settings import Settings

WORKSPACE_UID = 1000
WORKSPACE_GID = 100
WORKSPACE_MODE = 0o2770

_SIZE = re.compile(r"^([1-9][0-9]*)([KMGT])$")
_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
MIN_QUOTA = 16 << 20
"""ext4 needs room for its journal and tables; smaller quotas are refused."""


class QuotaError(RuntimeError):
    """The workspace folder or its quota could not be set up; the message says which and why."""


def quota_bytes(size: str) -> int:
    """`"20G"` as bytes; `QuotaError` names the value when it is not a size."""
    match = _SIZE.match(size)
    if match is None:
        raise QuotaError(f"workspace quota {size!r} is not a size such as 512M or 20G")
    return int(match.group(1)) * _UNITS[match.group(2)]


def quota_image(settings: Settings, project: str) -> Path:
    return settings.var_dir / "quotas" / f"{project}.ext4"


def workspace_capacity(folder: Path) -> int:
    """The size of the file system holding `folder`, in bytes."""
    stats = os.statvfs(folder)
    return stats.f_blocks * stats.f_frsize


def prepare_workspace(settings: Settings, project: str) -> str:
    """Make the project's workspace folder ready for a container (idempotent): owned by the
    workspace user, setgid, private; with the site's quota mounted when one is set.
    Returns what was found or done, for the caller's log."""
    folder = settings.workspaces_dir / project
    folder.mkdir(parents=True, exist_ok=True)
    size = settings.hub.workspace_quota
    said = f"workspace {folder}"
    if size is not None:
        said = _mount_quota(settings, project, folder, quota_bytes(size))
    os.chown(folder, WORKSPACE_UID, WORKSPACE_GID)
    folder.chmod(WORKSPACE_MODE)
    return said


def release_workspace(settings: Settings, project: str) -> list[str]:
    """Unmount the project's quota file system and remove its image (archive); the folder
    itself is the caller's to remove."""
    done = []
    folder = settings.workspaces_dir / project
    if folder.is_mount():
        _run(["umount", str(folder)], f"unmounting {folder}")
        done.append(f"unmounted {folder}")
    image = quota_image(settings, project)
    if image.exists():
        image.unlink()
        done.append(f"removed {image}")
    return done


def _mount_quota(settings: Settings, project: str, folder: Path, size: int) -> str:
    if size < MIN_QUOTA:
        raise QuotaError(
            f"workspace quota {settings.hub.workspace_quota!r} is below the smallest, 16M"
        )
    image = quota_image(settings, project)
    if folder.is_mount():
        return _grow(settings, folder, image, size)
    if not image.exists():
        if any(folder.iterdir()):
            raise QuotaError(
                f"workspace {folder} already holds files and has no quota yet: move them out, "
                f"provision the project again, then move them back in"
            )
        _make_image(image, size, project)
    elif image.stat().st_size > size:
        raise QuotaError(_shrink_refusal(settings, image, size))
    elif image.stat().st_size < size or _unused_image_space(image):
        os.truncate(image, size)
        _run(["e2fsck", "-f", "-p", str(image)], f"checking {image}")
        _run(["resize2fs", str(image)], f"growing {image}")
    _run(
        ["mount", "-o", "loop,nodev,nosuid", str(image), str(folder)],
        f"mounting {image} on {folder}",
    )
    return f"workspace {folder} (own file system of {_human(size)}, {image})"


def _make_image(image: Path, size: int, project: str) -> None:
    image.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = image.with_suffix(".partial")
    with partial.open("wb") as out:
        out.truncate(size)  # sparse: takes only what is written
    partial.chmod(0o600)
    _run(
        [
            "mkfs.ext4",
            "-q",
            "-F",
            "-m",
            "0",
            "-L",
            f"tre-{project}"[:16],
            "-E",
            f"root_owner={WORKSPACE_UID}:{WORKSPACE_GID}",
            str(partial),
        ],
        f"making the file system in {partial}",
    )
    partial.rename(image)


def _grow(settings: Settings, folder: Path, image: Path, size: int) -> str:
    current = image.stat().st_size
    if current > size:
        raise QuotaError(_shrink_refusal(settings, image, size))
    if current < size:
        # Online growth needs the kernel's consent (some refuse it: EPERM). Without it the
        # image grows now and the file system at its next mount (after the next reboot or
        # archive-and-restore): a larger quota never stops a workspace from starting.
        os.truncate(image, size)
        device = _loop_device(folder)
        try:
            _run(["losetup", "-c", device], f"telling {device} that {image} grew")
            _run(["resize2fs", device], f"growing the file system on {device}")
        except QuotaError as exc:
            return (
                f"workspace {folder} (quota {_human(size)} from its next mount; "
                f"{_human(workspace_capacity(folder))} until then: {exc})"
            )
        return f"workspace {folder} (quota grown to {_human(size)})"
    return f"workspace {folder} (own file system of {_human(size)}, mounted)"


def _unused_image_space(image: Path) -> bool:
    """True when the image grew while mounted and its file system has not caught up."""
    if shutil.which("dumpe2fs") is None:
        return False
    found = subprocess.run(
        ["dumpe2fs", "-h", str(image)], capture_output=True, text=True, check=False
    )
    fields = dict(line.split(":", 1) for line in found.stdout.splitlines() if ":" in line)
    try:
        blocks = int(fields["Block count"]) * int(fields["Block size"])
    except (KeyError, ValueError):
        return False
    return blocks < image.stat().st_size


def _loop_device(folder: Path) -> str:
    for line in Path("/proc/self/mounts").read_text(encoding="utf-8").splitlines():
        source, target, *_ = line.split()
        if target == str(folder):
            return source
    raise QuotaError(f"{folder} is a mount point, but not in /proc/self/mounts")


def _shrink_refusal(settings: Settings, image: Path, size: int) -> str:
    return (
        f"workspace quota {settings.hub.workspace_quota!r} ({_human(size)}) is smaller than "
        f"the project's file system ({_human(image.stat().st_size)}, {image}): shrinking "
        f"could lose files and is not done; set a quota at least as large"
    )


def _human(size: int) -> str:
    for unit in ("T", "G", "M", "K"):
        if size % _UNITS[unit] == 0:
            return f"{size // _UNITS[unit]}{unit}"
    return f"{size} bytes"


def _run(argv: list[str], what: str) -> None:
    if shutil.which(argv[0]) is None:
        raise QuotaError(f"{what}: {argv[0]} is not installed (Debian: e2fsprogs, mount)")
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()
        raise QuotaError(f"{what} failed: {detail}")
