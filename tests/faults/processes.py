"""Finding and killing the real processes of a running site, as the kernel sees them.

Only processes this test run started are touched: children of a hub the test started,
found through /proc by their command line.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def command_of(pid: int) -> str:
    """The process's command line, space-separated ('' once it has gone)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def children_of(pid: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue  # the thread ended meanwhile
    return children


def child_running(parent: int, needle: str) -> int:
    """The pid of `parent`'s one child whose command line contains `needle`."""
    found = [c for c in children_of(parent) if needle in command_of(c)]
    assert len(found) == 1, f"{len(found)} children of {parent} run {needle!r}: {found}"
    return found[0]


def alive(pid: int) -> bool:
    """Running, and not a zombie waiting for its parent."""
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return status.rsplit(")", 1)[1].split()[0] != "Z"


def kill(pid: int) -> None:
    """SIGKILL: no handler runs, nothing is flushed or cleaned up. Returns once it is gone."""
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not alive(pid), 10, f"process {pid} to die")


def wait_until(check: Callable[[], T], timeout: float, what: str, every: float = 0.1) -> T:
    """The first truthy value of `check()`, polled for at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:g} s for {what}")
        time.sleep(every)
