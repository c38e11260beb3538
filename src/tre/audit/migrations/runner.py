"""Bring a hub-side database (audit, review) to the newest alembic revision, once, safely.

Whoever opens the database first upgrades it, under a lock the database itself holds
(PostgreSQL: an advisory transaction lock; SQLite: BEGIN IMMEDIATE, inside an flock on
`<database>.migrate-lock` beside it, because SQLite's switch to WAL on a fresh file can
fail at once rather than wait), so the service and a CLI opening it at once never both
migrate; an open that finds it at head only reads.
A database at a revision this code does not know was written by a newer jupyter-tre:
it is refused and left exactly as it is; nothing here ever downgrades.

Databases made before alembic (`create_all` plus a one-row `<name>_schema` table) are
adopted: when every table of the first revision and the row `1` are there, they are
stamped at that revision, with their rows untouched. The `<name>_schema` table stays,
as a fence: releases made before alembic create what is missing, then refuse any
number but their own, so a migration those releases cannot work with must raise it.

It lives with the audit package because the review package may import audit, never
the reverse.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from alembic import command, context
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import (
    Connection,
    Engine,
    MetaData,
    Table,
    create_engine,
    event,
    inspect,
    make_url,
    pool,
    select,
    text,
)
from sqlalchemy.exc import ArgumentError, OperationalError

# Alembic's `context` and `op` are module-wide proxies: two migrations running at once
# in one process (the review and the audit store opened by two threads) would swap
# each other's. Different processes are kept apart by the databases' own locks.
_ALEMBIC = threading.Lock()

_SQLITE_ATTEMPTS = 3


class SchemaRefused(Exception):
    """The database's schema is not one this code may use or upgrade; it was not changed."""


@dataclass(frozen=True)
class Schema:
    """One database's migrations, and what its releases made before alembic left behind."""

    what: str  # "review database": how messages name it
    script_location: str  # "tre.review:migrations"
    version_table: str  # distinct per database, so several can share one PostgreSQL db
    metadata: MetaData  # the tables at the newest revision (autogenerate's target)
    first: str  # the revision whose tables the releases before alembic created
    first_tables: tuple[str, ...]
    fence: Table  # `<name>_schema`: one row, the number releases before alembic accept
    fence_version: int  # the number the newest revision writes there

    @property
    def lock_key(self) -> int:
        """A fixed signed 64-bit key for pg_advisory_xact_lock, one per database kind."""
        digest = hashlib.sha256(f"jupyter-tre {self.version_table}".encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)

    def config(self, conn: Connection | None = None) -> Config:
        cfg = Config()
        cfg.set_main_option("script_location", self.script_location)
        if conn is not None:
            cfg.attributes["connection"] = conn
        return cfg

    def head(self) -> str:
        head = ScriptDirectory.from_config(self.config()).get_current_head()
        if head is None:  # pragma: no cover - the package ships its revisions
            raise SchemaRefused(f"{self.what}: no migrations found in {self.script_location}")
        return head


def shown(url: str) -> str:
    """The URL as messages may show it: without its password."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # unparsable: it has no password we could find
        return url
    return url if parsed.password is None else parsed.render_as_string(hide_password=True)


def upgrade_to_head(engine: Engine, url: str, schema: Schema) -> None:
    """Migrate the database behind `engine` to `schema`'s head, or raise SchemaRefused."""
    if engine.dialect.name == "sqlite" and engine.url.database in (None, "", ":memory:"):
        raise SchemaRefused(f"{schema.what} {shown(url)!r}: in-memory SQLite is not supported")
    if engine.dialect.name == "sqlite":
        read_only = engine.url.query.get("mode") == "ro"
        with _sqlite_opening(str(engine.url.database), read_only=read_only):
            _upgrade_to_head(engine, url, schema)
    else:
        _upgrade_to_head(engine, url, schema)


@contextmanager
def _sqlite_opening(database: str, *, read_only: bool = False) -> Iterator[None]:
    """Openers of one SQLite file, in this process or another, one at a time.

    A database opened through a `file:` URI read-only, or in a folder this process may
    not write, cannot be migrated by it anyway: it is opened without the lock.
    """
    if database.startswith("file:"):
        path, _, query = database[len("file:") :].partition("?")
        read_only = read_only or "mode=ro" in query.split("&")
        database = path
    if read_only:
        yield
        return
    try:
        fd = os.open(f"{database}.migrate-lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _upgrade_to_head(engine: Engine, url: str, schema: Schema) -> None:
    script = ScriptDirectory.from_config(schema.config())
    # A connection of its own: the caller's engine may leave SQLite's transactions to
    # the driver, which would run each CREATE TABLE outside any transaction.
    migrator = _migration_engine(engine)
    try:
        # Most opens find the database at head: they read, and take no write lock.
        with migrator.connect().execution_options(tre_read_only=True) as conn:
            if _at_head(conn, url, schema, script):
                return
        for attempt in range(1, _SQLITE_ATTEMPTS + 1):
            try:
                with _ALEMBIC, migrator.begin() as conn:
                    if conn.dialect.name == "postgresql":
                        conn.execute(
                            text("SELECT pg_advisory_xact_lock(CAST(:key AS BIGINT))"),
                            {"key": schema.lock_key},
                        )
                    _upgrade(conn, url, schema, script)
                return
            except OperationalError:
                # SQLite gave up waiting for another opener (busy_timeout): try again.
                if migrator.dialect.name != "sqlite" or attempt == _SQLITE_ATTEMPTS:
                    raise
                time.sleep(0.5 * attempt)
    except CommandError as exc:
        raise SchemaRefused(f"{schema.what} {shown(url)!r}: {exc}") from exc
    finally:
        migrator.dispose()


def _current(conn: Connection, url: str, schema: Schema, script: ScriptDirectory) -> set[str]:
    """The database's revisions; refused when this code does not know one of them."""
    current = set(
        MigrationContext.configure(
            conn, opts={"version_table": schema.version_table}
        ).get_current_heads()
    )
    unknown = sorted(current - {rev.revision for rev in script.walk_revisions()})
    if unknown:
        raise SchemaRefused(
            f"{schema.what} {shown(url)!r} is at revision {', '.join(unknown)}, which this "
            f"jupyter-tre does not know (its newest is {script.get_current_head()}): a newer "
            "jupyter-tre wrote it. Upgrade jupyter-tre; the database was left as it is."
        )
    return current


def _at_head(conn: Connection, url: str, schema: Schema, script: ScriptDirectory) -> bool:
    if _current(conn, url, schema, script) != {script.get_current_head()}:
        return False
    _check_fence(conn, url, schema, script)
    return True


def _upgrade(conn: Connection, url: str, schema: Schema, script: ScriptDirectory) -> None:
    # Again, under the lock: another opener may have migrated meanwhile.
    current = _current(conn, url, schema, script)
    cfg = schema.config(conn)
    if not current and _adopt(conn, url, schema):
        command.stamp(cfg, schema.first)
        current = {schema.first}
    if current != {script.get_current_head()}:
        command.upgrade(cfg, "head")
    _check_fence(conn, url, schema, script)


def _check_fence(conn: Connection, url: str, schema: Schema, script: ScriptDirectory) -> None:
    fence = [row[0] for row in conn.execute(select(schema.fence.c.version))]
    if fence != [schema.fence_version]:
        raise SchemaRefused(
            f"{schema.what} {shown(url)!r}: schema version {fence} in {schema.fence.name}, "
            f"this jupyter-tre expects {schema.fence_version} at revision "
            f"{script.get_current_head()}; the database was changed by hand or by another "
            "program. Nothing was changed."
        )


def _adopt(conn: Connection, url: str, schema: Schema) -> bool:
    """True when a database made before alembic is to be stamped; False when empty."""
    present = set(inspect(conn).get_table_names())
    ours = {*schema.first_tables, schema.fence.name}
    found = ours & present
    if not found:
        return False
    missing = sorted(ours - found)
    if missing:
        raise SchemaRefused(
            f"{schema.what} {shown(url)!r} has no alembic revision and only some of its "
            f"tables (missing: {', '.join(missing)}): not a database this jupyter-tre can "
            "adopt. Nothing was changed."
        )
    versions = [row[0] for row in conn.execute(select(schema.fence.c.version))]
    if not versions:
        # Releases before alembic created the tables, then wrote the row in a second
        # transaction, and wrote it on their next start if it was missing: so do we.
        conn.execute(schema.fence.insert().values(version=1))
    elif versions != [1]:
        raise SchemaRefused(
            f"{schema.what} {shown(url)!r}: schema version {versions} in {schema.fence.name} "
            "and no alembic revision: not a database this jupyter-tre can adopt. Nothing "
            "was changed."
        )
    return True


def _migration_engine(engine: Engine) -> Engine:
    migrator = create_engine(engine.url, poolclass=pool.NullPool)
    if migrator.dialect.name == "sqlite":
        event.listen(migrator, "connect", _sqlite_connect)
        event.listen(migrator, "begin", _sqlite_begin_immediate)
    return migrator


def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # transactions are begun by _sqlite_begin_immediate
    cursor = dbapi_conn.cursor()
    # busy_timeout first: switching to WAL waits for other openers instead of failing.
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def _sqlite_begin_immediate(conn: Connection) -> None:
    # The write lock from the start: a second opener waits here until the first has
    # migrated and committed, then finds the database at head. Only looking needs none.
    if conn.get_execution_options().get("tre_read_only"):
        conn.exec_driver_sql("BEGIN")
    else:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


# -- env.py ---------------------------------------------------------------------------


def run_env(schema: Schema) -> None:
    """What each migrations folder's env.py does, for `upgrade_to_head` and the alembic CLI.

    Given a connection (`upgrade_to_head`), migrate inside its transaction. From the
    command line (`alembic -c <ini>` with `sqlalchemy.url`), open the database, or with
    `--sql` print the SQL instead.
    """
    config = context.config
    options: dict[str, Any] = {
        "target_metadata": schema.metadata,
        "version_table": schema.version_table,
        # The review and audit databases may share one PostgreSQL database: each
        # compares and migrates its own tables only.
        "include_name": _own_tables(schema),
    }
    conn = config.attributes.get("connection")
    if conn is not None:
        context.configure(connection=conn, **options)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise SchemaRefused(f"{schema.what}: set sqlalchemy.url in the alembic ini file")
    url = _driver_url(url)
    if context.is_offline_mode():
        context.configure(url=url, literal_binds=True, **options)
        with context.begin_transaction():
            context.run_migrations()
        return
    with _connected(url) as connection:
        context.configure(connection=connection, **options)
        with context.begin_transaction():
            context.run_migrations()


def _own_tables(schema: Schema) -> Any:
    def include(name: str | None, type_: str, _parent: Any) -> bool:
        return type_ != "table" or name in schema.metadata.tables

    return include


@contextmanager
def _connected(url: str) -> Iterator[Connection]:
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()


def _driver_url(url: str) -> str:
    """psycopg (3) is the PostgreSQL driver we ship; a bare postgresql:// URL means it."""
    for bare in ("postgresql://", "postgres://"):
        if url.startswith(bare):
            return "postgresql+psycopg://" + url[len(bare) :]
    return url
