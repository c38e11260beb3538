"""The audit store: one hash chain per project, kept as database rows and as JSON lines.

Every append holds the chain's lock file, inserts the row, writes and syncs the line,
and only then commits, so when `append` returns both copies hold the record; a failed
append leaves neither. Any process may append (the hub's spawner, the permit watch, the
audit service): the lock serialises them per chain and the key (project, seq) refuses
a second writer of the same position.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, delete, func, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from .database import connect, record_from_row, records_table, row_values
from .events import AuditEvent, EventKind
from .records import (
    GENESIS,
    SITE_CHAIN,
    AuditRecord,
    AuditStoreError,
    can_name_chain,
    canonical_json,
    chain_of,
    check_chain_name,
    format_at,
    make_record,
)
from .verify import VerifyReport, verify_store

if TYPE_CHECKING:
    from tre.settings import Settings

log = logging.getLogger("tre.audit")

_TAIL_CHUNK = 1 << 16
_INSERT = records_table.insert()  # compiled once: parameters go with each execute


@dataclass(frozen=True)
class _Head:
    """The last record of a chain, and the file state it was read from."""

    seq: int
    hash: str
    inode: int
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class PruneResult:
    project: str
    removed: int
    last_removed_seq: int
    kept: int
    anchor: AuditRecord | None


class AuditStore:
    """The audit log of a site: database `db_url` and JSON lines under `log_dir`."""

    def __init__(self, db_url: str, log_dir: Path) -> None:
        self.db_url = db_url
        self.log_dir = log_dir
        self.engine: Engine = connect(db_url)
        self._heads: dict[str, _Head] = {}
        self._heads_guard = threading.Lock()

    def close(self) -> None:
        self.engine.dispose()

    def path_of(self, chain: str) -> Path:
        check_chain_name(chain)
        return self.log_dir / f"{chain}.jsonl"

    # -- appending ------------------------------------------------------------

    def append(self, event: AuditEvent) -> AuditRecord:
        """Add `event` at the end of its project's chain; durable in both copies on return."""
        chain = chain_of(event)
        check_chain_name(chain)
        with self._locked(chain):
            return self._append_locked(chain, event)

    @contextmanager
    def _locked(self, chain: str) -> Iterator[None]:
        """Hold the chain's lock file (never replaced, unlike the JSON lines on prune)."""
        self._ensure_dir()
        lock = self.log_dir / f".{chain}.lock"
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise AuditStoreError(f"{lock}: cannot open the lock: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _ensure_dir(self) -> None:
        if not self.log_dir.is_dir():
            self.log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.log_dir.chmod(0o700)

    def _append_locked(self, chain: str, event: AuditEvent) -> AuditRecord:
        path = self.path_of(chain)
        created = not path.exists()
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as exc:
            raise AuditStoreError(f"{path}: cannot open: {exc.strerror}") from exc
        try:
            if created:
                _sync_dir(self.log_dir)
            head = self._head(chain, fd)
            record = make_record(event, head.seq + 1, head.hash)
            data = (record.line() + "\n").encode("ascii")
            values = row_values(record, canonical_json(record.detail))
            self._write(chain, fd, head=head, data=data, values=values, seq=record.seq)
            st = os.fstat(fd)
            with self._heads_guard:
                self._heads[chain] = _Head(
                    record.seq, record.hash, st.st_ino, st.st_size, st.st_mtime_ns
                )
            return record
        finally:
            os.close(fd)

    def _write(
        self,
        chain: str,
        fd: int,
        *,
        head: _Head,
        data: bytes,
        values: dict[str, object],
        seq: int,
    ) -> None:
        """Row inserted, line written and synced, then commit; on any failure, neither."""
        try:
            with self.engine.connect() as conn:
                trans = conn.begin()
                try:
                    conn.execute(_INSERT, values)
                    _write_all(fd, data)
                    os.fdatasync(fd)
                    trans.commit()
                except BaseException:
                    if trans.is_active:
                        trans.rollback()
                    os.ftruncate(fd, head.size)
                    os.fdatasync(fd)
                    raise
        except IntegrityError as exc:
            self._forget(chain)
            raise AuditStoreError(
                f"audit chain {chain!r}: another writer took seq {seq} (is the lock folder "
                f"{self.log_dir} on a file system without working locks?)"
            ) from exc
        except SQLAlchemyError as exc:
            self._forget(chain)
            raise AuditStoreError(
                f"audit chain {chain!r}: database refused the record: {exc}"
            ) from exc
        except OSError as exc:
            self._forget(chain)
            raise AuditStoreError(
                f"{self.path_of(chain)}: cannot write the record: {exc.strerror}"
            ) from exc

    def _forget(self, chain: str) -> None:
        with self._heads_guard:
            self._heads.pop(chain, None)

    def _head(self, chain: str, fd: int) -> _Head:
        """The chain's last record; re-read from both copies whenever another writer was here."""
        st = os.fstat(fd)
        cached = self._heads.get(chain)
        if cached is not None and (cached.inode, cached.size, cached.mtime_ns) == (
            st.st_ino,
            st.st_size,
            st.st_mtime_ns,
        ):
            return cached
        size = _drop_torn_tail(fd, st.st_size, self.path_of(chain))
        file_last = _last_record(fd, size, self.path_of(chain))
        db_last = self._db_last(chain)
        if file_last is not None and db_last is not None and file_last == db_last:
            head = file_last
        elif file_last is None and db_last is None:
            head = (0, GENESIS)
        elif file_last is not None and (db_last is None or file_last[0] > db_last[0]):
            head = self._complete_database(chain, db_last)
        else:
            raise AuditStoreError(
                f"audit chain {chain!r}: the database ends at seq "
                f"{db_last[0] if db_last else 0} but {self.path_of(chain)} at seq "
                f"{file_last[0] if file_last else 0}; the copies disagree, so nothing more "
                "is recorded until an administrator runs `tre audit verify` and repairs them"
            )
        st = os.fstat(fd)
        return _Head(head[0], head[1], st.st_ino, st.st_size, st.st_mtime_ns)

    def _db_last(self, chain: str) -> tuple[int, str] | None:
        t = records_table
        query = (
            select(t.c.seq, t.c.hash).where(t.c.project == chain).order_by(t.c.seq.desc()).limit(1)
        )
        try:
            with self.engine.connect() as conn:
                row = conn.execute(query).first()
        except SQLAlchemyError as exc:
            raise AuditStoreError(
                f"audit chain {chain!r}: cannot read the database: {exc}"
            ) from exc
        return (int(row.seq), str(row.hash)) if row is not None else None

    def _complete_database(self, chain: str, db_last: tuple[int, str] | None) -> tuple[int, str]:
        """The file holds records the database lacks: an append that stopped between syncing
        its line and committing its row. Add them if they chain on; else refuse."""
        after, prev = db_last if db_last is not None else (0, GENESIS)
        missing = [r for _, r in self.file_records(chain) if r is not None and r.seq > after]
        for record in missing:
            if (
                record.seq != after + 1
                or record.prev != prev
                or record.computed_hash() != record.hash
            ):
                raise AuditStoreError(
                    f"audit chain {chain!r}: {self.path_of(chain)} holds seq {record.seq} that "
                    f"does not follow the database's last record (seq {after}); run "
                    "`tre audit verify`"
                )
            after, prev = record.seq, record.hash
        try:
            with self.engine.begin() as conn:
                for record in missing:
                    conn.execute(
                        records_table.insert().values(
                            **row_values(record, canonical_json(record.detail))
                        )
                    )
        except SQLAlchemyError as exc:
            raise AuditStoreError(
                f"audit chain {chain!r}: cannot complete the database: {exc}"
            ) from exc
        log.warning(
            "audit chain %s: completed the database with %d record(s) from the file",
            chain,
            len(missing),
        )
        return after, prev

    # -- reading --------------------------------------------------------------

    def chains(self) -> list[str]:
        """Every chain either copy holds."""
        with self.engine.connect() as conn:
            names = {
                str(n) for n in conn.execute(select(records_table.c.project).distinct()).scalars()
            }
        if self.log_dir.is_dir():
            names |= {p.stem for p in self.log_dir.glob("*.jsonl") if can_name_chain(p.stem)}
        return sorted(names)

    def db_rows(self, chain: str) -> Iterator[tuple[int, AuditRecord | None]]:
        """(seq, record) of each row of a chain in seq order; record None when unreadable."""
        t = records_table
        query = select(t).where(t.c.project == chain).order_by(t.c.seq)
        with self.engine.connect() as conn:
            for row in conn.execution_options(yield_per=1000).execute(query):
                try:
                    yield int(row.seq), record_from_row(row)
                except (ValueError, RecursionError):
                    yield int(row.seq), None

    def file_records(self, chain: str) -> Iterator[tuple[int, AuditRecord | None]]:
        """(line number, record) of each line of a chain's file; record None when unreadable."""
        path = self.path_of(chain)
        if not path.exists():
            return
        with path.open("rb") as handle:
            for lineno, raw in enumerate(handle, start=1):
                try:
                    yield lineno, AuditRecord.from_line(raw.rstrip(b"\n").decode("utf-8"))
                except (ValueError, RecursionError):
                    yield lineno, None

    def show(
        self,
        *,
        project: str | None = None,
        user: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        kind: EventKind | None = None,
        limit: int | None = None,
    ) -> list[AuditRecord]:
        """Records from the database, oldest first: `since` inclusive, `until` exclusive."""
        t = records_table
        query = select(t).order_by(t.c.at, t.c.project, t.c.seq)
        if project is not None:
            query = query.where(t.c.project == project)
        if user is not None:
            query = query.where(t.c.actor == user)
        if since is not None:
            query = query.where(t.c.at >= format_at(since))
        if until is not None:
            query = query.where(t.c.at < format_at(until))
        if kind is not None:
            query = query.where(t.c.kind == str(kind))
        if limit is not None:
            query = query.limit(limit)
        try:
            with self.engine.connect() as conn:
                return [record_from_row(row) for row in conn.execute(query)]
        except SQLAlchemyError as exc:
            raise AuditStoreError(f"audit database: cannot read records: {exc}") from exc
        except ValueError as exc:
            raise AuditStoreError(
                f"audit database: a row is not a record ({exc}); run `tre audit verify`"
            ) from exc

    def count(self, chain: str) -> int:
        with self.engine.connect() as conn:
            n = conn.execute(
                select(func.count())
                .select_from(records_table)
                .where(records_table.c.project == chain)
            ).scalar_one()
        return int(n)

    def verify(self) -> VerifyReport:
        """Recompute every chain in both copies and compare them (see `verify`)."""
        return verify_store(self)

    # -- retention ------------------------------------------------------------

    def prune(
        self, before: datetime, *, dry_run: bool = False, actor: str = "system:audit-prune"
    ) -> list[PruneResult]:
        """Remove each chain's records older than `before` (the longest such head), after
        appending an `audit_pruned` anchor that names the last removed record, so the kept
        part still verifies and a head cut any other way does not."""
        results = []
        for chain in self.chains():
            with self._locked(chain):
                result = self._prune_locked(chain, before, dry_run=dry_run, actor=actor)
            if result is not None:
                results.append(result)
        return results

    def _prune_locked(
        self, chain: str, before: datetime, *, dry_run: bool, actor: str
    ) -> PruneResult | None:
        t = records_table
        cutoff = format_at(before)
        query = select(t.c.seq, t.c.hash, t.c.at).where(t.c.project == chain).order_by(t.c.seq)
        last: tuple[int, str] | None = None
        removed = 0
        with self.engine.connect() as conn:
            for row in conn.execution_options(yield_per=1000).execute(query):
                if row.at >= cutoff:
                    break  # only a head is removed: the kept part stays one chain
                last, removed = (int(row.seq), str(row.hash)), removed + 1
        if last is None:
            return None
        total = self.count(chain)
        if dry_run:
            return PruneResult(chain, removed, last[0], total - removed, None)
        anchor = self._append_locked(
            chain,
            AuditEvent(
                kind=EventKind.audit_pruned,
                actor=actor,
                project=None if chain == SITE_CHAIN else chain,
                detail={
                    "last_removed_seq": last[0],
                    "last_removed_hash": last[1],
                    "removed": removed,
                    "before": cutoff,
                },
            ),
        )
        try:
            with self.engine.begin() as conn:
                conn.execute(delete(t).where(t.c.project == chain, t.c.seq <= last[0]))
        except SQLAlchemyError as exc:
            raise AuditStoreError(
                f"audit chain {chain!r}: cannot prune the database: {exc}"
            ) from exc
        self._rewrite_file(chain, keep_after=last[0])
        self._forget(chain)
        return PruneResult(chain, removed, last[0], total - removed + 1, anchor)

    def _rewrite_file(self, chain: str, keep_after: int) -> None:
        path = self.path_of(chain)
        tmp = path.with_name(f".{path.name}.prune")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as out, path.open("rb") as source:
                for raw in source:
                    record = AuditRecord.from_line(raw.rstrip(b"\n").decode("utf-8"))
                    if record.seq > keep_after:
                        out.write(raw)
                out.flush()
                os.fsync(out.fileno())
            tmp.replace(path)
            _sync_dir(self.log_dir)
        except (OSError, ValueError) as exc:
            tmp.unlink(missing_ok=True)
            raise AuditStoreError(
                f"{path}: cannot prune (the database is pruned; run `tre audit prune` again "
                f"to finish): {exc}"
            ) from exc


def default_db_url(settings: Settings) -> str:
    return settings.audit.db_url or f"sqlite:///{settings.db_dir / 'audit.sqlite'}"


def audit_dir(settings: Settings) -> Path:
    return settings.logs_dir / "audit"


_stores: dict[tuple[str, Path], AuditStore] = {}
_stores_guard = threading.Lock()


def open_store(settings: Settings) -> AuditStore:
    """The site's audit store (one per process and site, so engines are reused)."""
    url = default_db_url(settings)
    key = (url, audit_dir(settings))
    with _stores_guard:
        store = _stores.get(key)
        if store is None:
            if settings.audit.db_url is None:
                settings.db_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            store = _stores[key] = AuditStore(url, audit_dir(settings))
        return store


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _drop_torn_tail(fd: int, size: int, path: Path) -> int:
    """Cut a last line without its newline: a write that stopped midway, never confirmed."""
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return size
    start = max(0, size - _TAIL_CHUNK)
    while True:
        chunk = os.pread(fd, size - start, start)
        cut = chunk.rfind(b"\n")
        if cut >= 0:
            keep = start + cut + 1
            break
        if start == 0:
            keep = 0
            break
        start = max(0, start - _TAIL_CHUNK)
    log.warning("%s: removing an unfinished last line (%d bytes)", path, size - keep)
    os.ftruncate(fd, keep)
    os.fdatasync(fd)
    return keep


def _last_record(fd: int, size: int, path: Path) -> tuple[int, str] | None:
    if size == 0:
        return None
    start = max(0, size - _TAIL_CHUNK)
    while True:
        chunk = os.pread(fd, size - start, start)
        body = chunk[:-1]  # the final newline
        cut = body.rfind(b"\n")
        if cut >= 0 or start == 0:
            line = body[cut + 1 :]
            break
        start = max(0, start - _TAIL_CHUNK)
    try:
        record = AuditRecord.from_line(line.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise AuditStoreError(
            f"{path}: the last line is not an audit record; run `tre audit verify`"
        ) from exc
    return record.seq, record.hash
