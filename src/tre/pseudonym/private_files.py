"""Owner-only files on the ingest host: secrets and patient lists live in mode 0600 files
inside mode 0700 directories, and anything looser, or a symbolic link, is refused.

The checks return a problem (a sentence naming the path) rather than raising, so
each caller raises its own domain error.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700
_GROUP_OTHER = 0o077


def private_dir_problem(directory: Path, what: str) -> str | None:
    """Create `directory` (mode 0700) if missing; say what is wrong with an existing one.

    Parents that have to be created get the process's default mode: only the last
    folder holds the secrets.
    """
    if not directory.exists() and not directory.is_symlink():
        directory.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
        # mkdir's mode is filtered by the umask; set it exactly.
        directory.chmod(PRIVATE_DIR_MODE)
    st = directory.lstat()
    if stat.S_ISLNK(st.st_mode):
        return (
            f"{directory}: the {what} directory is a symbolic link; a real directory "
            "with mode 0700 is required"
        )
    if not stat.S_ISDIR(st.st_mode):
        return f"{directory}: the {what} directory is not a directory"
    mode = stat.S_IMODE(st.st_mode)
    if mode & _GROUP_OTHER:
        return (
            f"{directory}: the {what} directory has mode {mode:04o}, so group or others "
            f"can reach it; mode 0700 is required (chmod 700 {directory})"
        )
    return None


def private_file_problem(st: os.stat_result, path: Path, what: str) -> str | None:
    """Say what is wrong unless `st` is a regular file that only its owner can use."""
    if stat.S_ISLNK(st.st_mode):
        return f"{path}: the {what} is a symbolic link; a regular file is required"
    if not stat.S_ISREG(st.st_mode):
        return f"{path}: the {what} is not a regular file"
    mode = stat.S_IMODE(st.st_mode)
    if mode & _GROUP_OTHER:
        return (
            f"{path}: the {what} has mode {mode:04o}, so group or others can read or "
            f"write it; mode 0600 is required (chmod 600 {path})"
        )
    return None


def fsync_dir(directory: Path) -> None:
    """Make a rename or a new file in `directory` survive a crash."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
