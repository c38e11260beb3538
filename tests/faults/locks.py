"""Holding the audit chain's lock from a test, and seeing who waits for a lock.

Every append to a project's audit chain takes the chain's lock file first, inside the
transaction of whatever the appending process is doing. A test that holds the lock stops
that process at exactly that point — the work before it done, nothing recorded or
committed — where it can be killed: a fault injection point made of the real lock.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tre.audit import audit_dir
from tre.settings import Settings


@contextmanager
def chain_locked(settings: Settings, chain: str) -> Iterator[None]:
    """Hold the audit chain's lock, as a slow writer would: every append to it waits."""
    fd = os.open(audit_dir(settings) / f".{chain}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def waiting_for_a_lock(pid: int) -> bool:
    """Whether `pid` is blocked waiting for a file lock (a `->` line of /proc/locks)."""
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if len(fields) > 5 and fields[1] == "->" and fields[5] == str(pid):
            return True
    return False
