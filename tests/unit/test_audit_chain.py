"""The hash-chained audit log: appends verify; any edit, removal or reordering is found."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from tre.audit import AuditChainError, AuditEvent, AuditLog, EventKind


def event(n: int) -> AuditEvent:
    return AuditEvent(
        kind=EventKind.execute, actor="alice", project="p", permit="x", detail={"n": n}
    )


def filled(tmp_path: Path, count: int = 5) -> AuditLog:
    log = AuditLog(tmp_path / "audit" / "audit.jsonl")
    for n in range(count):
        log.append(event(n))
    return log


def test_appended_events_verify_in_order(tmp_path: Path) -> None:
    log = filled(tmp_path)
    assert log.verify() == 5
    assert [e.event.detail["n"] for e in log.entries()] == [0, 1, 2, 3, 4]
    assert log.path.stat().st_mode & 0o777 == 0o600


def test_an_edited_line_breaks_the_chain_after_it(tmp_path: Path) -> None:
    log = filled(tmp_path)
    lines = log.path.read_text().splitlines()
    lines[2] = lines[2].replace('"alice"', '"mallory"')
    log.path.write_text("\n".join(lines) + "\n")
    with pytest.raises(AuditChainError, match=r"audit.jsonl:4: chain broken"):
        log.verify()


@pytest.mark.parametrize("change", ["remove", "swap"])
def test_a_removed_or_reordered_line_is_found(tmp_path: Path, change: str) -> None:
    log = filled(tmp_path)
    lines = log.path.read_text().splitlines()
    if change == "remove":
        del lines[1]
    else:
        lines[1], lines[2] = lines[2], lines[1]
    log.path.write_text("\n".join(lines) + "\n")
    with pytest.raises(AuditChainError, match=r"audit.jsonl:2: chain broken"):
        log.verify()


def test_garbage_is_not_an_entry(tmp_path: Path) -> None:
    log = filled(tmp_path, 2)
    with log.path.open("a") as handle:
        handle.write("{not json\n")
    with pytest.raises(AuditChainError, match=r"audit.jsonl:3: not an audit entry"):
        log.verify()


def _append_many(path: str, who: int) -> None:
    log = AuditLog(Path(path))
    for n in range(50):
        log.append(event(who * 1000 + n))


def test_concurrent_appenders_keep_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_append_many, args=(str(path), w)) for w in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    assert AuditLog(path).verify() == 150
