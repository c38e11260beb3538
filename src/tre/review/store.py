"""The review database: requests, every version of every file, reviews, comments, history.

SQLite by default (`<db_dir>/review.sqlite`), PostgreSQL in production. Nothing is
ever deleted: a changed file is a new version row, a removed one is marked so, and the
history's key (request, seq) refuses a second writer of the same step. Every change
to a request bumps its `revision` under a compare-and-set, so two checkers acting at
once cannot both move it.

The schema is alembic's (`tre/review/migrations`, version table
`review_alembic_version`): opening the store upgrades the database to the newest
revision and refuses one a newer jupyter-tre wrote. A database made before alembic
(these tables and `review_schema` holding 1) is stamped at revision 0001 as it is;
`review_schema` stays, as the fence that stops releases made before alembic from
writing to a schema they do not know (see tre.audit.migrations.runner).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    create_engine,
    event,
    select,
)
from sqlalchemy.exc import SQLAlchemyError

from tre.audit.migrations.runner import Schema, SchemaRefused, shown, upgrade_to_head

from .errors import ReviewError
from .models import (
    Comment,
    Controls,
    HistoryEntry,
    ReleaseFile,
    ReleaseRequest,
    Review,
)
from .states import Step

# What `review_schema` holds at the newest revision. Releases made before alembic refuse
# any other number: a migration they could not work with writes the next one here.
SCHEMA_VERSION = 1

metadata = MetaData()

requests_table = Table(
    "review_requests",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("project", String(64), nullable=False, index=True),
    Column("permit", String(64), nullable=False),
    Column("author", String(128), nullable=False, index=True),
    Column("title", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("state", String(32), nullable=False, index=True),
    Column("reviews_required", Integer, nullable=False),
    Column("revision", Integer, nullable=False),
    Column("created", String(40), nullable=False),  # UTC ISO 8601: sorts as time does
    Column("updated", String(40), nullable=False),
)

files_table = Table(
    "review_files",
    metadata,
    Column("request_id", String(64), primary_key=True),
    Column("name", String(255), primary_key=True),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("workspace_path", Text, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("description", Text, nullable=False),
    Column("context", Text, nullable=False),
    Column("population", Text, nullable=False),
    Column("suppression", Text, nullable=False),
    Column("stored_path", Text, nullable=False),
    Column("checks", Text),  # JSON
    Column("verdict", String(16)),
    Column("added_by", String(128), nullable=False),
    Column("added_at", String(40), nullable=False),
    Column("removed_at", String(40)),
)

reviews_table = Table(
    "review_decisions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(64), nullable=False, index=True),
    Column("checker", String(128), nullable=False),
    Column("decision", String(16), nullable=False),
    Column("file", String(255)),
    Column("reason", Text),
    Column("at", String(40), nullable=False),
    Column("file_versions", Text, nullable=False),  # JSON {name: version}
)

comments_table = Table(
    "review_comments",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(64), nullable=False, index=True),
    Column("author", String(128), nullable=False),
    Column("file", String(255), nullable=False),
    Column("version", Integer, nullable=False),
    Column("text", Text, nullable=False),
    Column("at", String(40), nullable=False),
)

history_table = Table(
    "review_history",
    metadata,
    Column("request_id", String(64), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("action", String(32), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("from_state", String(32), nullable=False),
    Column("to_state", String(32), nullable=False),
    Column("at", String(40), nullable=False),
    Column("reason", Text),
    Column("detail", Text, nullable=False),  # JSON
)

schema_table = Table(
    "review_schema",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
)

SCHEMA = Schema(
    what="review database",
    script_location="tre.review:migrations",
    version_table="review_alembic_version",
    metadata=metadata,
    first="0001",
    first_tables=(
        "review_requests",
        "review_files",
        "review_decisions",
        "review_comments",
        "review_history",
    ),
    fence=schema_table,
    fence_version=SCHEMA_VERSION,
)


class RequestNotFound(ReviewError):
    """No request has this id."""


class ConcurrentChange(ReviewError):
    """Someone else changed the request between reading and writing it; try again."""


def default_db_url(db_dir: Path) -> str:
    return f"sqlite:///{db_dir / 'review.sqlite'}"


def engine_url(url: str) -> str:
    """psycopg (3) is the PostgreSQL driver we ship; a bare postgresql:// URL means it."""
    for bare in ("postgresql://", "postgres://"):
        if url.startswith(bare):
            return "postgresql+psycopg://" + url[len(bare) :]
    return url


def at_text(at: datetime) -> str:
    if at.tzinfo is None:
        raise ValueError(f"{at!r}: times must carry a time zone")
    return at.astimezone(UTC).isoformat(timespec="microseconds")


class ReviewStore:
    """The review database at `url`, with its schema in place."""

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            self.engine: Engine = create_engine(engine_url(url))
        except (SQLAlchemyError, ImportError, ValueError) as exc:
            raise ReviewError(f"review database {url!r}: cannot use it: {exc}") from exc
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", _sqlite_begin_immediate)
        self._ensure_schema()

    def close(self) -> None:
        self.engine.dispose()

    def _ensure_schema(self) -> None:
        try:
            upgrade_to_head(self.engine, self.url, SCHEMA)
        except SchemaRefused as exc:
            self.engine.dispose()
            raise ReviewError(str(exc)) from exc
        except SQLAlchemyError as exc:
            self.engine.dispose()
            raise ReviewError(f"review database {shown(self.url)!r}: {exc}") from exc

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    # -- writing -----------------------------------------------------------------

    def insert_request(self, conn: Connection, req: ReleaseRequest) -> None:
        conn.execute(requests_table.insert().values(**_request_row(req)))

    def update_request(self, conn: Connection, req: ReleaseRequest, *, expected: int) -> None:
        """Write `req` (whose revision is `expected` + 1) unless someone wrote it first."""
        values = _request_row(req)
        del values["id"]
        result = conn.execute(
            requests_table.update()
            .where(and_(requests_table.c.id == req.id, requests_table.c.revision == expected))
            .values(**values)
        )
        if result.rowcount != 1:
            raise ConcurrentChange(f"request {req.id} changed while this action was prepared")

    def insert_file(self, conn: Connection, request_id: str, f: ReleaseFile) -> None:
        conn.execute(
            files_table.insert().values(
                request_id=request_id,
                name=f.name,
                version=f.version,
                workspace_path=f.workspace_path,
                sha256=f.sha256,
                size=f.size,
                kind=f.kind,
                description=f.description,
                context=f.context,
                population=f.controls.population,
                suppression=f.controls.suppression,
                stored_path=str(f.stored_path),
                checks=None if f.checks is None else json.dumps(f.checks, sort_keys=True),
                verdict=None if f.verdict is None else str(f.verdict),
                added_by=f.added_by,
                added_at=at_text(f.added_at),
            )
        )

    def mark_removed(
        self, conn: Connection, request_id: str, name: str, version: int, at: datetime
    ) -> None:
        conn.execute(
            files_table.update()
            .where(
                and_(
                    files_table.c.request_id == request_id,
                    files_table.c.name == name,
                    files_table.c.version == version,
                )
            )
            .values(removed_at=at_text(at))
        )

    def insert_review(self, conn: Connection, request_id: str, r: Review) -> None:
        conn.execute(
            reviews_table.insert().values(
                request_id=request_id,
                checker=r.checker,
                decision=str(r.decision),
                file=r.file,
                reason=r.reason,
                at=at_text(r.at),
                file_versions=json.dumps(r.file_versions, sort_keys=True),
            )
        )

    def insert_comment(self, conn: Connection, request_id: str, c: Comment) -> None:
        conn.execute(
            comments_table.insert().values(
                request_id=request_id,
                author=c.author,
                file=c.file,
                version=c.version,
                text=c.text,
                at=at_text(c.at),
            )
        )

    def insert_step(self, conn: Connection, request_id: str, seq: int, step: Step) -> None:
        conn.execute(
            history_table.insert().values(
                request_id=request_id,
                seq=seq,
                action=str(step.action),
                actor=step.actor,
                from_state=str(step.from_state),
                to_state=str(step.to_state),
                at=at_text(step.at),
                reason=step.reason,
                detail=json.dumps(step.detail, sort_keys=True, default=str),
            )
        )

    # -- reading -----------------------------------------------------------------

    def load(self, conn: Connection, request_id: str) -> ReleaseRequest:
        row = conn.execute(select(requests_table).where(requests_table.c.id == request_id)).first()
        if row is None:
            raise RequestNotFound(f"no release request {request_id!r}")
        return self._assemble(conn, row._mapping)

    def ids(
        self,
        conn: Connection,
        *,
        projects: Iterable[str] | None = None,
        author: str | None = None,
        states: Iterable[str] | None = None,
        updated_before: datetime | None = None,
    ) -> list[str]:
        """Ids of matching requests, oldest change first (the order of a queue)."""
        query = select(requests_table.c.id).order_by(requests_table.c.updated, requests_table.c.id)
        if projects is not None:
            query = query.where(requests_table.c.project.in_(list(projects)))
        if author is not None:
            query = query.where(requests_table.c.author == author)
        if states is not None:
            query = query.where(requests_table.c.state.in_([str(s) for s in states]))
        if updated_before is not None:
            query = query.where(requests_table.c.updated < at_text(updated_before))
        return [r.id for r in conn.execute(query)]

    def versions(self, conn: Connection, request_id: str, name: str) -> list[ReleaseFile]:
        """Every stored version of one file, oldest first (removed ones included)."""
        rows = conn.execute(
            select(files_table)
            .where(and_(files_table.c.request_id == request_id, files_table.c.name == name))
            .order_by(files_table.c.version)
        )
        return [_file(r._mapping) for r in rows]

    def recorded_path(self, conn: Connection, stored_path: Path) -> bool:
        row = conn.execute(
            select(files_table.c.name).where(files_table.c.stored_path == str(stored_path))
        ).first()
        return row is not None

    def _assemble(self, conn: Connection, m: Any) -> ReleaseRequest:
        rid = m["id"]
        latest: dict[str, Any] = {}
        for row in conn.execute(
            select(files_table)
            .where(files_table.c.request_id == rid)
            .order_by(files_table.c.name, files_table.c.version)
        ):
            latest[row.name] = row._mapping
        files = tuple(_file(r) for r in latest.values() if r["removed_at"] is None)
        reviews = tuple(
            Review(
                checker=r.checker,
                decision=r.decision,
                file=r.file,
                reason=r.reason,
                at=datetime.fromisoformat(r.at),
                file_versions=json.loads(r.file_versions),
            )
            for r in conn.execute(
                select(reviews_table)
                .where(reviews_table.c.request_id == rid)
                .order_by(reviews_table.c.id)
            )
        )
        comments = tuple(
            Comment(
                author=r.author,
                file=r.file,
                version=r.version,
                text=r.text,
                at=datetime.fromisoformat(r.at),
            )
            for r in conn.execute(
                select(comments_table)
                .where(comments_table.c.request_id == rid)
                .order_by(comments_table.c.id)
            )
        )
        history = tuple(
            HistoryEntry(
                seq=r.seq,
                step=Step(
                    action=r.action,
                    actor=r.actor,
                    from_state=r.from_state,
                    to_state=r.to_state,
                    at=datetime.fromisoformat(r.at),
                    reason=r.reason,
                    detail=json.loads(r.detail),
                ),
            )
            for r in conn.execute(
                select(history_table)
                .where(history_table.c.request_id == rid)
                .order_by(history_table.c.seq)
            )
        )
        return ReleaseRequest(
            id=rid,
            project=m["project"],
            permit=m["permit"],
            author=m["author"],
            title=m["title"],
            description=m["description"],
            state=m["state"],
            created=datetime.fromisoformat(m["created"]),
            updated=datetime.fromisoformat(m["updated"]),
            reviews_required=m["reviews_required"],
            revision=m["revision"],
            files=files,
            reviews=reviews,
            comments=comments,
            history=history,
        )


def _request_row(req: ReleaseRequest) -> dict[str, Any]:
    return {
        "id": req.id,
        "project": req.project,
        "permit": req.permit,
        "author": req.author,
        "title": req.title,
        "description": req.description,
        "state": str(req.state),
        "reviews_required": req.reviews_required,
        "revision": req.revision,
        "created": at_text(req.created),
        "updated": at_text(req.updated),
    }


def _file(m: Any) -> ReleaseFile:
    return ReleaseFile(
        name=m["name"],
        version=m["version"],
        workspace_path=m["workspace_path"],
        sha256=m["sha256"],
        size=m["size"],
        kind=m["kind"],
        description=m["description"],
        context=m["context"],
        controls=Controls(population=m["population"], suppression=m["suppression"]),
        stored_path=Path(m["stored_path"]),
        checks=None if m["checks"] is None else json.loads(m["checks"]),
        verdict=m["verdict"],
        added_by=m["added_by"],
        added_at=datetime.fromisoformat(m["added_at"]),
    )


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # The driver's own transaction handling off: `_sqlite_begin_immediate` starts them.
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    # busy_timeout first: switching to WAL then waits for another opener, not fails.
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def _sqlite_begin_immediate(conn: Connection) -> None:
    # Take the write lock when the transaction starts, not at its first write: two
    # checkers acting at once then wait for each other (busy_timeout) instead of one
    # failing with "database is locked" when its read turns into a write.
    conn.exec_driver_sql("BEGIN IMMEDIATE")
