"""Reading a file out of a project's workspace folder without ever leaving it.

The workspace is written by the researcher's (hostile) container, so a path is walked
one component at a time from the project folder with `O_NOFOLLOW`: absolute paths,
`..`, symbolic links anywhere on the way, anything but a regular file with one link,
and files over the size limit are refused, and the check is made on the very file
descriptor that is then read.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from .errors import ReviewError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO planted under the file's name must not hang the service.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class PathRefused(ReviewError):
    """A workspace path names something the service will not copy; the message says why."""


@dataclass(frozen=True)
class WorkspaceFile:
    """An open regular file of the workspace: read it, then close it."""

    fd: int
    name: str
    size: int

    def close(self) -> None:
        os.close(self.fd)


def split_workspace_path(relative: str) -> list[str]:
    """The components of a relative workspace path; `PathRefused` if it could leave the folder."""
    if not relative or "\x00" in relative:
        raise PathRefused(f"workspace path {relative!r}: empty or contains a NUL byte")
    if relative.startswith("/"):
        raise PathRefused(f"workspace path {relative!r}: absolute paths are not allowed")
    parts = [p for p in relative.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise PathRefused(f"workspace path {relative!r}: '..' is not allowed")
    if not parts:
        raise PathRefused(f"workspace path {relative!r}: names no file")
    return parts


def open_in_workspace(root: Path, relative: str, *, max_bytes: int) -> WorkspaceFile:
    """Open `relative` under `root` for reading, refusing every way out of `root`."""
    parts = split_workspace_path(relative)
    if root.is_symlink():
        raise PathRefused(f"workspace folder {root}: is a symbolic link; links are never followed")
    try:
        fd = os.open(root, _DIR_FLAGS)
    except OSError as exc:
        raise PathRefused(f"workspace folder {root}: cannot open it: {_why(exc)}") from exc
    try:
        walked: list[str] = []
        for part in parts[:-1]:
            walked.append(part)
            _refuse_link(fd, part, relative, "/".join(walked))
            try:
                next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                raise PathRefused(
                    f"workspace path {relative!r}: {'/'.join(walked)}: {_why(exc)}"
                ) from exc
            os.close(fd)
            fd = next_fd
        name = parts[-1]
        _refuse_link(fd, name, relative, relative)
        try:
            file_fd = os.open(name, _FILE_FLAGS, dir_fd=fd)
        except OSError as exc:
            raise PathRefused(f"workspace path {relative!r}: {_why(exc)}") from exc
    finally:
        os.close(fd)
    try:
        st = os.fstat(file_fd)
        if not stat.S_ISREG(st.st_mode):
            raise PathRefused(f"workspace path {relative!r}: not a regular file")
        if st.st_nlink != 1:
            # A hard link may share its content with a file outside the workspace.
            raise PathRefused(
                f"workspace path {relative!r}: has {st.st_nlink} hard links; copy it to a "
                "new file first"
            )
        if st.st_size > max_bytes:
            raise PathRefused(
                f"workspace path {relative!r}: {st.st_size} bytes, over the limit of "
                f"{max_bytes} bytes"
            )
        os.set_blocking(file_fd, True)
    except BaseException:
        os.close(file_fd)
        raise
    return WorkspaceFile(fd=file_fd, name=name, size=st.st_size)


def _refuse_link(dir_fd: int, part: str, relative: str, where: str) -> None:
    try:
        st = os.stat(part, dir_fd=dir_fd, follow_symlinks=False)
    except OSError as exc:
        raise PathRefused(f"workspace path {relative!r}: {where}: {_why(exc)}") from exc
    if stat.S_ISLNK(st.st_mode):
        raise PathRefused(
            f"workspace path {relative!r}: {where} is a symbolic link; links are never followed"
        )


def _why(exc: OSError) -> str:
    if exc.errno in (errno.ELOOP, errno.EMLINK):
        return "is a symbolic link; links are never followed"
    if exc.errno == errno.ENOTDIR:
        return "not a folder"
    if exc.errno == errno.ENOENT:
        return "does not exist"
    return exc.strerror or str(exc)
