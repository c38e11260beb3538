"""Verifying the audit log: every chain recomputed in both copies, and the copies compared.

A chain verifies when each record's hash matches its content, its seq follows the one
before and its `prev` is that record's hash, and it starts either at seq 1 from 64 zeros
or right after a record that one of its own `audit_pruned` anchors names. The first
record that breaks this is named, by project and seq (and line, in the file).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from .events import EventKind
from .records import GENESIS, AuditRecord

if TYPE_CHECKING:
    from .store import AuditStore


class ProblemKind(StrEnum):
    edited = "edited"
    deleted = "deleted"
    inserted = "inserted"
    reordered = "reordered"
    cut = "cut"
    unreadable = "unreadable"
    misplaced = "misplaced"
    disagree = "disagree"


@dataclass(frozen=True)
class Problem:
    project: str
    copy: str  # "database", "file" or "both"
    kind: ProblemKind
    seq: int | None
    line: int | None
    message: str
    where: str = ""

    def __str__(self) -> str:
        place = f"project {self.project}"
        if self.seq is not None:
            place += f" seq {self.seq}"
        if self.line is not None:
            place += f" ({self.where}:{self.line})"
        elif self.where:
            place += f" ({self.where})"
        return f"{place}: {self.kind} — {self.message}"


@dataclass
class VerifyReport:
    problems: list[Problem] = field(default_factory=list)
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Per chain: (records in the database, lines in the file)."""

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class _Entry:
    """What verification needs of one record (the record itself may be large)."""

    pos: int  # line number in the file; seq in the database
    seq: int
    project: str
    prev: str
    hash: str
    content: str  # the hash the content has, whatever `hash` says
    anchor: tuple[int, str] | None  # (last_removed_seq, last_removed_hash)


def _entry(pos: int, record: AuditRecord) -> _Entry:
    anchor = None
    if record.kind is EventKind.audit_pruned:
        seq, digest = record.detail.get("last_removed_seq"), record.detail.get("last_removed_hash")
        if isinstance(seq, int) and isinstance(digest, str):
            anchor = (seq, digest)
    return _Entry(
        pos=pos,
        seq=record.seq,
        project=record.project,
        prev=record.prev,
        hash=record.hash,
        content=record.computed_hash(),
        anchor=anchor,
    )


def verify_store(store: AuditStore) -> VerifyReport:
    report = VerifyReport()
    for chain in store.chains():
        where_db, where_file = "database", str(store.path_of(chain))
        db = _entries(store.db_rows(chain))
        lines = _entries(store.file_records(chain))
        report.counts[chain] = (len(db), len(lines))
        for copy, where, entries, by_line in (
            ("database", where_db, db, False),
            ("file", where_file, lines, True),
        ):
            problem = check_chain(chain, entries, copy=copy, where=where, by_line=by_line)
            if problem is not None:
                report.problems.append(problem)
        disagreement = compare_copies(chain, db, lines, where_file)
        if disagreement is not None:
            report.problems.append(disagreement)
    return report


def _entries(rows: Iterable[tuple[int, AuditRecord | None]]) -> list[_Entry | int]:
    """Entries in storage order; an int stands for an unreadable record at that position."""
    return [pos if record is None else _entry(pos, record) for pos, record in rows]


def check_chain(
    chain: str, entries: list[_Entry | int], *, copy: str, where: str, by_line: bool
) -> Problem | None:
    """The first record of one copy of a chain that breaks it, or None."""
    readable = [e for e in entries if isinstance(e, _Entry)]
    present = {e.seq for e in readable}
    anchors = {e.anchor[0]: e.anchor[1] for e in readable if e.anchor is not None}
    seen: set[int] = set()
    expected, prev = 0, GENESIS
    for index, e in enumerate(entries):
        if isinstance(e, int):
            return Problem(
                chain,
                copy,
                ProblemKind.unreadable,
                None if by_line else e,
                e if by_line else None,
                "not an audit record",
                where,
            )
        found = _record_problem(e, chain) or (
            _start_problem(e, present, anchors)
            if index == 0
            else _link_problem(e, seen, present, expected, prev)
        )
        if found is not None:
            kind, message = found
            return Problem(chain, copy, kind, e.seq, e.pos if by_line else None, message, where)
        seen.add(e.seq)
        expected, prev = e.seq + 1, e.hash
    hashes = {e.seq: e.hash for e in readable}
    for e in readable:
        if e.anchor is not None and hashes.get(e.anchor[0], e.anchor[1]) != e.anchor[1]:
            message = f"this audit_pruned record names seq {e.anchor[0]} with another hash"
            return Problem(
                chain, copy, ProblemKind.edited, e.seq, e.pos if by_line else None, message, where
            )
    return None


Found = tuple[ProblemKind, str] | None


def _record_problem(e: _Entry, chain: str) -> Found:
    if e.project != chain:
        return ProblemKind.misplaced, f"a record of project {e.project!r} is here"
    if e.content != e.hash:
        return ProblemKind.edited, "its hash does not match its content"
    return None


def _start_problem(e: _Entry, present: set[int], anchors: dict[int, str]) -> Found:
    """A chain starts at seq 1 from 64 zeros, or after the record an anchor names."""
    if e.seq == 1:
        if e.prev != GENESIS:
            return ProblemKind.inserted, "the first record does not start from 64 zeros"
        return None
    if e.seq - 1 in present:
        return ProblemKind.reordered, f"it comes before seq {e.seq - 1}"
    if anchors.get(e.seq - 1) != e.prev:
        return ProblemKind.cut, (
            f"the chain starts here, but no audit_pruned record of the chain names seq "
            f"{e.seq - 1} and this record's prev: records 1..{e.seq - 1} were removed "
            "outside `tre audit prune`"
        )
    return None


def _link_problem(e: _Entry, seen: set[int], present: set[int], expected: int, prev: str) -> Found:
    if e.seq in seen:
        return ProblemKind.inserted, f"a second record with seq {e.seq}"
    if e.seq != expected:
        if e.seq < expected or expected in present:
            return ProblemKind.reordered, f"it comes before seq {expected}"
        return ProblemKind.deleted, f"records {expected}..{e.seq - 1} are missing before it"
    if e.prev != prev:
        return ProblemKind.inserted, (
            f"its prev is not the hash of seq {e.seq - 1}: a record was inserted or replaced"
        )
    return None


def compare_copies(
    chain: str, db: list[_Entry | int], lines: list[_Entry | int], where_file: str
) -> Problem | None:
    """The first seq at which the database and the file hold different records, or None."""
    in_db: dict[int, list[tuple[tuple[str, str], int]]] = {}
    in_file: dict[int, list[tuple[tuple[str, str], int]]] = {}
    for entries, by_seq in ((db, in_db), (lines, in_file)):
        for e in entries:
            if isinstance(e, _Entry):
                by_seq.setdefault(e.seq, []).append(((e.hash, e.content), e.pos))
    for seq in sorted(in_db.keys() | in_file.keys()):
        db_side, file_side = in_db.get(seq, []), in_file.get(seq, [])
        if not file_side:
            message, line = "the database holds this record, the file does not", None
        elif not db_side:
            message, line = "the file holds this record, the database does not", file_side[0][1]
        else:
            expected = db_side[0][0]
            differing = [pos for key, pos in file_side if key != expected]
            if len(db_side) == 1 and len(file_side) == 1 and not differing:
                continue
            line = differing[0] if differing else file_side[-1][1]
            found = next((key for key, pos in file_side if pos == line), expected)
            message = f"the copies differ (database {expected[1][:12]}…, file {found[1][:12]}…)"
        return Problem(chain, "both", ProblemKind.disagree, seq, line, message, where_file)
    return None
