"""The audit database: one table of records keyed by (project, seq), and its schema version.

SQLite by default, PostgreSQL in production. The primary key (project, seq) makes a
second writer of the same position fail instead of forking a chain.

The schema is alembic's (`tre/audit/migrations`, version table `audit_alembic_version`):
connecting upgrades the database to the newest revision and refuses one a newer
jupyter-tre wrote. A database made before alembic (`audit_records` and `audit_schema`
holding 1) is stamped at revision 0001 as it is; `audit_schema` stays, as the fence
that stops releases made before alembic from writing to a schema they do not know
(see tre.audit.migrations.runner).
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    Index,
    Integer,
    MetaData,
    Row,
    String,
    Table,
    Text,
    create_engine,
    event,
)
from sqlalchemy.exc import SQLAlchemyError

from .migrations.runner import Schema, SchemaRefused, shown, upgrade_to_head
from .records import AuditRecord, AuditStoreError

# What `audit_schema` holds at the newest revision. Releases made before alembic refuse
# any other number: a migration they could not work with writes the next one here.
SCHEMA_VERSION = 1

metadata = MetaData()

records_table = Table(
    "audit_records",
    metadata,
    Column("project", String(64), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("prev", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Column("at", String(32), nullable=False),  # format_at(): sorts as time does
    Column("kind", String(64), nullable=False),
    Column("actor", String(256), nullable=False),
    Column("server", String(256)),
    Column("permit", String(128)),
    Column("detail", Text, nullable=False),  # canonical JSON
    Index("ix_audit_records_at", "at"),
    Index("ix_audit_records_actor", "actor"),
)

schema_table = Table(
    "audit_schema",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
)

SCHEMA = Schema(
    what="audit database",
    script_location="tre.audit:migrations",
    version_table="audit_alembic_version",
    metadata=metadata,
    first="0001",
    first_tables=("audit_records",),
    fence=schema_table,
    fence_version=SCHEMA_VERSION,
)


def engine_url(url: str) -> str:
    """psycopg (3) is the PostgreSQL driver we ship; a bare postgresql:// URL means it."""
    for bare in ("postgresql://", "postgres://"):
        if url.startswith(bare):
            return "postgresql+psycopg://" + url[len(bare) :]
    return url


def connect(url: str) -> Engine:
    """An engine on the audit database, upgraded to the newest schema (created if missing)."""
    try:
        engine = create_engine(engine_url(url), pool_pre_ping=False)
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        raise AuditStoreError(f"audit database {url!r}: cannot use it: {exc}") from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    try:
        upgrade_to_head(engine, url, SCHEMA)
    except SchemaRefused as exc:
        engine.dispose()
        raise AuditStoreError(str(exc)) from exc
    except SQLAlchemyError as exc:
        engine.dispose()
        raise AuditStoreError(f"audit database {shown(url)!r}: cannot open it: {exc}") from exc
    return engine


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    # Several processes write (the hub and the audit service): WAL lets readers go on,
    # busy_timeout makes writers wait for each other instead of failing (set first, so
    # that switching to WAL waits too).
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA journal_mode=WAL")
    # The JSON line is synced before the commit, so a commit lost to a power cut is put
    # back from the file by the next append (store._complete_database): NORMAL suffices
    # and saves the second sync of every record.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def row_values(record: AuditRecord, detail_json: str) -> dict[str, Any]:
    body = record.body()
    return {**body, "hash": record.hash, "detail": detail_json}


def record_from_row(row: Row[Any]) -> AuditRecord:
    """Rebuild a record from its row; raises ValueError when the row is not a record."""
    m = row._mapping
    return AuditRecord.model_validate(
        {
            "project": m["project"],
            "seq": m["seq"],
            "prev": m["prev"],
            "hash": m["hash"],
            "at": m["at"],
            "kind": m["kind"],
            "actor": m["actor"],
            "server": m["server"],
            "permit": m["permit"],
            "detail": json.loads(m["detail"]),
        }
    )
