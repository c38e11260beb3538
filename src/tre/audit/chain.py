"""An append-only, hash-chained audit log in JSON lines.

Each line holds an event and the SHA-256 of the previous line, so removing,
reordering or editing any line breaks the chain from there on, and `verify`
says where. Appends are serialised with a file lock and synced to disk.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .events import AuditEvent

GENESIS = "0" * 64


class AuditChainError(Exception):
    """The log cannot be written, or does not verify; the message says where."""


@dataclass(frozen=True)
class Entry:
    seq: int
    prev: str
    event: AuditEvent
    digest: str


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, event: AuditEvent) -> Entry:
        """Append one event after the current last line; durable when this returns."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            seq, prev = _last(fd, self.path)
            body = {
                "seq": seq + 1,
                "prev": prev,
                "event": event.model_dump(mode="json"),
            }
            line = json.dumps(body, sort_keys=True, separators=(",", ":"))
            data = (line + "\n").encode()
            os.write(fd, data)
            os.fsync(fd)
        except OSError as exc:
            raise AuditChainError(f"{self.path}: cannot append: {exc.strerror}") from exc
        finally:
            os.close(fd)
        return Entry(seq + 1, prev, event, hashlib.sha256(line.encode()).hexdigest())

    def entries(self) -> Iterator[Entry]:
        """Every entry, checked: raises `AuditChainError` at the first break."""
        if not self.path.exists():
            return
        prev, expected = GENESIS, 1
        with self.path.open("rb") as handle:
            for lineno, raw in enumerate(handle, start=1):
                line = raw.rstrip(b"\n").decode()
                try:
                    body = json.loads(line)
                    event = AuditEvent.model_validate(body["event"])
                except (ValueError, KeyError) as exc:
                    raise AuditChainError(f"{self.path}:{lineno}: not an audit entry") from exc
                if body.get("seq") != expected or body.get("prev") != prev:
                    raise AuditChainError(
                        f"{self.path}:{lineno}: chain broken (entry {body.get('seq')}, expected "
                        f"{expected} following {prev[:12]}…)"
                    )
                digest = hashlib.sha256(line.encode()).hexdigest()
                yield Entry(expected, prev, event, digest)
                prev, expected = digest, expected + 1

    def verify(self) -> int:
        """Check the whole chain; return the number of entries."""
        return sum(1 for _ in self.entries())


def _last(fd: int, path: Path) -> tuple[int, str]:
    """Sequence number and digest of the last line (0 and GENESIS for an empty log)."""
    size = os.fstat(fd).st_size
    if size == 0:
        return 0, GENESIS
    chunk = min(size, 1 << 16)
    while True:
        os.lseek(fd, size - chunk, os.SEEK_SET)
        tail = os.read(fd, chunk)
        lines = tail.rstrip(b"\n").split(b"\n")
        if len(lines) > 1 or chunk == size:
            break
        chunk = min(size, chunk * 4)
    line = lines[-1].decode()
    try:
        seq = int(json.loads(line)["seq"])
    except (ValueError, KeyError) as exc:
        raise AuditChainError(f"{path}: last line is not an audit entry") from exc
    return seq, hashlib.sha256(line.encode()).hexdigest()
