"""The review database's schema is alembic's: a fresh database is migrated to head, one
made before alembic is adopted with every row, one a newer jupyter-tre wrote is refused
and left alone, the tables never drift from `store.metadata` without a migration, and
two openers at once both succeed — on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import multiprocessing
import re
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData, create_engine, inspect, text

from tests.postgres import createdb, postgres_server
from tests.support import DEMO_TODAY
from tests.unit.test_review_service import Clock, FakeChecker, Site, make_request
from tre.audit.migrations.runner import Schema
from tre.policy import Policy
from tre.review import RequestState, ReviewError, ReviewService
from tre.review.store import SCHEMA, ReviewStore, engine_url
from tre.settings import Settings

# What `metadata.create_all` made on SQLite before alembic (the release this replaces),
# frozen here: the first revision must make exactly this, and adopt it as it is.
PRE_ALEMBIC_DDL = (
    "CREATE TABLE review_requests (\n\tid VARCHAR(64) NOT NULL, \n\tproject VARCHAR(64) NOT "
    "NULL, \n\tpermit VARCHAR(64) NOT NULL, \n\tauthor VARCHAR(128) NOT NULL, \n\ttitle TEXT "
    "NOT NULL, \n\tdescription TEXT NOT NULL, \n\tstate VARCHAR(32) NOT NULL, \n\t"
    "reviews_required INTEGER NOT NULL, \n\trevision INTEGER NOT NULL, \n\tcreated "
    "VARCHAR(40) NOT NULL, \n\tupdated VARCHAR(40) NOT NULL, \n\tPRIMARY KEY (id)\n)",
    "CREATE INDEX ix_review_requests_author ON review_requests (author)",
    "CREATE INDEX ix_review_requests_project ON review_requests (project)",
    "CREATE INDEX ix_review_requests_state ON review_requests (state)",
    "CREATE TABLE review_files (\n\trequest_id VARCHAR(64) NOT NULL, \n\tname VARCHAR(255) "
    "NOT NULL, \n\tversion INTEGER NOT NULL, \n\tworkspace_path TEXT NOT NULL, \n\tsha256 "
    "VARCHAR(64) NOT NULL, \n\tsize BIGINT NOT NULL, \n\tkind VARCHAR(32) NOT NULL, \n\t"
    "description TEXT NOT NULL, \n\tcontext TEXT NOT NULL, \n\tpopulation TEXT NOT NULL, "
    "\n\tsuppression TEXT NOT NULL, \n\tstored_path TEXT NOT NULL, \n\tchecks TEXT, \n\t"
    "verdict VARCHAR(16), \n\tadded_by VARCHAR(128) NOT NULL, \n\tadded_at VARCHAR(40) NOT "
    "NULL, \n\tremoved_at VARCHAR(40), \n\tPRIMARY KEY (request_id, name, version)\n)",
    "CREATE TABLE review_decisions (\n\tid INTEGER NOT NULL, \n\trequest_id VARCHAR(64) NOT "
    "NULL, \n\tchecker VARCHAR(128) NOT NULL, \n\tdecision VARCHAR(16) NOT NULL, \n\tfile "
    "VARCHAR(255), \n\treason TEXT, \n\tat VARCHAR(40) NOT NULL, \n\tfile_versions TEXT NOT "
    "NULL, \n\tPRIMARY KEY (id)\n)",
    "CREATE INDEX ix_review_decisions_request_id ON review_decisions (request_id)",
    "CREATE TABLE review_comments (\n\tid INTEGER NOT NULL, \n\trequest_id VARCHAR(64) NOT "
    "NULL, \n\tauthor VARCHAR(128) NOT NULL, \n\tfile VARCHAR(255) NOT NULL, \n\tversion "
    "INTEGER NOT NULL, \n\ttext TEXT NOT NULL, \n\tat VARCHAR(40) NOT NULL, \n\tPRIMARY KEY "
    "(id)\n)",
    "CREATE INDEX ix_review_comments_request_id ON review_comments (request_id)",
    "CREATE TABLE review_history (\n\trequest_id VARCHAR(64) NOT NULL, \n\tseq INTEGER NOT "
    "NULL, \n\taction VARCHAR(32) NOT NULL, \n\tactor VARCHAR(128) NOT NULL, \n\tfrom_state "
    "VARCHAR(32) NOT NULL, \n\tto_state VARCHAR(32) NOT NULL, \n\tat VARCHAR(40) NOT NULL, "
    "\n\treason TEXT, \n\tdetail TEXT NOT NULL, \n\tPRIMARY KEY (request_id, seq)\n)",
    "CREATE TABLE review_schema (\n\tversion INTEGER NOT NULL, \n\tPRIMARY KEY (version)\n)",
)

HEAD = SCHEMA.head()
FUTURE = "9999_from_a_newer_release"


# -- helpers (the audit's migration tests use them too) ------------------------------


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def make_pre_alembic(path: Path, ddl: tuple[str, ...], fence: str, rows: int | None = 1) -> None:
    """A database as the releases before alembic left it (`rows=None`: fence row missing)."""
    with sqlite3.connect(path) as db:
        for statement in ddl:
            db.execute(statement)
        if rows is not None and fence in {statement.split()[2] for statement in ddl}:
            db.execute(f"INSERT INTO {fence} (version) VALUES (?)", (rows,))
    db.close()


def copy_rows(source: Path, target: Path, tables: tuple[str, ...]) -> None:
    with sqlite3.connect(target) as db:
        db.execute("ATTACH DATABASE ? AS source", (str(source),))
        for table in tables:
            db.execute(f"INSERT INTO main.{table} SELECT * FROM source.{table}")
    db.close()


def dump(path: Path) -> list[str]:
    """Every table, index and row of a SQLite database, as SQL."""
    db = sqlite3.connect(path)
    try:
        return list(db.iterdump())
    finally:
        db.close()


def schema_sql(path: Path, prefix: str) -> set[str]:
    db = sqlite3.connect(path)
    try:
        return {
            sql
            for (sql,) in db.execute(
                "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name LIKE ?",
                (f"%{prefix}%",),
            )
            if "alembic_version" not in sql
        }
    finally:
        db.close()


def revisions(url: str, schema: Schema) -> list[str]:
    engine = create_engine(engine_url(url))
    try:
        with engine.connect() as conn:
            return [
                r[0] for r in conn.execute(text(f"SELECT version_num FROM {schema.version_table}"))
            ]
    finally:
        engine.dispose()


def stamp(url: str, schema: Schema, revision: str) -> None:
    engine = create_engine(engine_url(url))
    try:
        with engine.begin() as conn:
            conn.execute(
                text(f"UPDATE {schema.version_table} SET version_num = :r"), {"r": revision}
            )
    finally:
        engine.dispose()


def drift(url: str, schema: Schema) -> list[Any]:
    """What autogenerate would put in a new migration: empty unless someone changed the
    tables in code without writing one."""
    engine = create_engine(engine_url(url))
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "version_table": schema.version_table,
                    "compare_type": True,
                    "include_name": lambda name, type_, _parent: (
                        type_ != "table" or name in schema.metadata.tables
                    ),
                },
            )
            return list(compare_metadata(context, schema.metadata))
    finally:
        engine.dispose()


def table_names(url: str) -> set[str]:
    engine = create_engine(engine_url(url))
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


# -- a request with every kind of row ------------------------------------------------


def filled_review_db(tmp_path: Path, policy: Policy) -> tuple[Path, str]:
    """A review database (today's code) holding one request with files, reviews, a
    comment and history; returns its path and the request's id."""
    settings = Settings(policy_dir=tmp_path / "unused", var_dir=tmp_path / "var")
    clock = Clock(datetime(DEMO_TODAY.year, DEMO_TODAY.month, DEMO_TODAY.day, 9, tzinfo=UTC))
    service = ReviewService(settings, lambda: policy, FakeChecker(), clock)
    site = Site(settings, service, FakeChecker(), clock)
    req = make_request(site, state=RequestState.approved, files=("out/a.csv", "out/b.csv"))
    service.comment(req.id, "olivia", req.files[0].name, "rounded to 5?")
    service.close()
    return settings.db_dir / "review.sqlite", req.id


def load(url: str, request_id: str) -> Any:
    store = ReviewStore(url)
    try:
        with store.transaction() as conn:
            return store.load(conn, request_id)
    finally:
        store.close()


TABLES = SCHEMA.first_tables


# -- SQLite ---------------------------------------------------------------------------


def test_a_fresh_database_is_migrated_to_head_with_the_tables_create_all_made(
    tmp_path: Path,
) -> None:
    path = tmp_path / "review.sqlite"
    ReviewStore(sqlite_url(path)).close()
    assert revisions(sqlite_url(path), SCHEMA) == [HEAD]
    assert schema_sql(path, "review_") == set(PRE_ALEMBIC_DDL)
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version FROM review_schema").fetchall() == [(1,)]
    db.close()
    # Opening it again changes nothing.
    before = dump(path)
    ReviewStore(sqlite_url(path)).close()
    assert dump(path) == before


def test_a_database_at_head_is_opened_without_writing(tmp_path: Path) -> None:
    path = tmp_path / "review.sqlite"
    ReviewStore(sqlite_url(path)).close()
    before = dump(path)
    store = ReviewStore(f"sqlite:///file:{path}?mode=ro&uri=true")
    with store.transaction() as conn:
        assert store.ids(conn) == []
    store.close()
    assert dump(path) == before


def test_the_migrated_tables_match_the_code(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "review.sqlite")
    ReviewStore(url).close()
    assert drift(url, SCHEMA) == []


def test_the_drift_check_sees_a_table_changed_without_a_migration(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "review.sqlite")
    ReviewStore(url).close()
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE review_requests ADD COLUMN sneaked_in TEXT"))
        conn.execute(text("DROP INDEX ix_review_requests_state"))
    engine.dispose()
    found = drift(url, SCHEMA)
    assert {diff[0] for diff in found} == {"remove_column", "add_index"}


def test_a_database_made_before_alembic_is_adopted_with_every_row(
    tmp_path: Path, demo_policy: Policy
) -> None:
    source, request_id = filled_review_db(tmp_path / "today", demo_policy)
    expected = load(sqlite_url(source), request_id)
    assert expected.reviews and expected.comments and len(expected.files) == 2

    old = tmp_path / "old.sqlite"
    make_pre_alembic(old, PRE_ALEMBIC_DDL, "review_schema")
    copy_rows(source, old, TABLES)
    assert "review_alembic_version" not in table_names(sqlite_url(old))

    assert load(sqlite_url(old), request_id) == expected
    assert revisions(sqlite_url(old), SCHEMA) == [HEAD]
    assert drift(sqlite_url(old), SCHEMA) == []
    assert [dump_rows(old, t) for t in TABLES] == [dump_rows(source, t) for t in TABLES]
    # The fence stays: a release made before alembic still opens this database.
    assert dump_rows(old, "review_schema") == [(1,)]


def dump_rows(path: Path, table: str) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(path)
    try:
        return sorted(db.execute(f"SELECT * FROM {table}").fetchall(), key=repr)
    finally:
        db.close()


def test_a_database_before_alembic_without_its_version_row_is_adopted(tmp_path: Path) -> None:
    # Those releases wrote the row after the tables, in a second transaction.
    old = tmp_path / "old.sqlite"
    make_pre_alembic(old, PRE_ALEMBIC_DDL, "review_schema", rows=None)
    ReviewStore(sqlite_url(old)).close()
    assert revisions(sqlite_url(old), SCHEMA) == [HEAD]
    assert dump_rows(old, "review_schema") == [(1,)]


@pytest.mark.parametrize(
    ("ddl", "row", "why"),
    [
        (PRE_ALEMBIC_DDL[:4], None, r"only some of its tables \(missing: review_comments, "),
        (PRE_ALEMBIC_DDL, 2, r"schema version \[2\] in review_schema and no alembic revision"),
    ],
    ids=["some-tables-missing", "another-version"],
)
def test_a_database_that_is_not_one_we_made_is_refused_and_left_alone(
    tmp_path: Path, ddl: tuple[str, ...], row: int | None, why: str
) -> None:
    path = tmp_path / "odd.sqlite"
    make_pre_alembic(path, ddl, "review_schema", row)
    before = dump(path)
    with pytest.raises(ReviewError, match=why):
        ReviewStore(sqlite_url(path))
    assert dump(path) == before


def test_a_database_from_a_newer_release_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "review.sqlite"
    url = sqlite_url(path)
    ReviewStore(url).close()
    stamp(url, SCHEMA, FUTURE)
    with sqlite3.connect(path) as db:  # what that newer release might have added
        db.execute("ALTER TABLE review_requests ADD COLUMN embargo VARCHAR(40)")
    db.close()
    before = dump(path)
    with pytest.raises(ReviewError) as refused:
        ReviewStore(url)
    message = str(refused.value)
    assert url in message
    assert FUTURE in message and HEAD in message
    assert "newer jupyter-tre" in message
    assert dump(path) == before


def _open_at_once(url: str, barrier: Any, results: Any) -> None:
    barrier.wait(60)
    try:
        ReviewStore(url).close()
        results.put("ok")
    except BaseException as exc:
        results.put(f"{type(exc).__name__}: {exc}")


@pytest.mark.slow
def test_processes_opening_a_fresh_database_at_once_all_succeed(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "review.sqlite")
    opened_at_once(url, processes=4)
    assert revisions(url, SCHEMA) == [HEAD]
    assert drift(url, SCHEMA) == []


@pytest.mark.parametrize("round_", range(8))
def test_threads_opening_a_fresh_database_at_once_all_succeed(tmp_path: Path, round_: int) -> None:
    # Several rounds: SQLite's switch to WAL on a fresh file failed now and then.
    url = sqlite_url(tmp_path / "review.sqlite")
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def open_it() -> None:
        try:
            barrier.wait(60)
            ReviewStore(url).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert revisions(url, SCHEMA) == [HEAD]


def opened_at_once(
    url: str, processes: int, target: Any = _open_at_once, schema: Schema = SCHEMA
) -> None:
    """`processes` processes open the database at the same moment; all must succeed."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(processes)
    results = ctx.Queue()
    procs = [ctx.Process(target=target, args=(url, barrier, results)) for _ in range(processes)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert outcomes == ["ok"] * processes
    assert revisions(url, schema) == [schema.head()]


# -- PostgreSQL ------------------------------------------------------------------------


@pytest.mark.slow
def test_postgresql_is_migrated_to_head_adopted_and_guarded() -> None:
    with postgres_server() as pg:
        createdb(pg, "review")
        url = pg.url("review")
        ReviewStore(url).close()
        assert revisions(url, SCHEMA) == [HEAD]
        assert drift(url, SCHEMA) == []
        ReviewStore(url).close()  # at head: nothing to do

        # Several processes opening a fresh database at once: one migrates, the others
        # wait for its advisory lock and find it done.
        createdb(pg, "review_at_once")
        opened_at_once(pg.url("review_at_once"), processes=6)
        assert drift(pg.url("review_at_once"), SCHEMA) == []

        # An opener waits for whoever holds the lock, and touches nothing meanwhile.
        createdb(pg, "review_locked")
        locked = pg.url("review_locked")
        errors: list[BaseException] = []

        def open_it() -> None:
            try:
                ReviewStore(locked).close()
            except BaseException as exc:
                errors.append(exc)

        with psycopg.connect(
            host=pg.host, port=pg.port, user=pg.user, dbname="review_locked"
        ) as holder:
            holder.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA.lock_key,))
            opener = threading.Thread(target=open_it)
            opener.start()
            opener.join(1.5)
            assert opener.is_alive()
            assert table_names(locked) == set()
            holder.commit()
        opener.join(60)
        assert errors == []
        assert revisions(locked, SCHEMA) == [HEAD]

        # A database made before alembic, by the metadata of those releases.
        createdb(pg, "review_old")
        old = pg.url("review_old")
        engine = create_engine(engine_url(old))
        pre_alembic = MetaData()
        for table in SCHEMA.metadata.sorted_tables:
            table.to_metadata(pre_alembic)
        pre_alembic.create_all(engine)
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO review_schema (version) VALUES (1)"))
            conn.execute(
                text(
                    "INSERT INTO review_history VALUES "
                    "('r1', 1, 'create', 'alice', 'draft', 'draft', '2026-01-01', NULL, '{}')"
                )
            )
        engine.dispose()
        ReviewStore(old).close()
        assert revisions(old, SCHEMA) == [HEAD]
        assert drift(old, SCHEMA) == []
        engine = create_engine(engine_url(old))
        with engine.connect() as conn:
            assert conn.execute(text("SELECT request_id FROM review_history")).all() == [("r1",)]
        engine.dispose()

        # A newer release's revision is refused, and nothing is changed.
        stamp(url, SCHEMA, FUTURE)
        with pytest.raises(ReviewError, match=rf"{re.escape(url)}.*{FUTURE}.*{HEAD}"):
            ReviewStore(url)
        assert revisions(url, SCHEMA) == [FUTURE]
        # The message names the database but never its password (trust auth ignores it).
        secret = url.replace(f"{pg.user}@", f"{pg.user}:s3cret@")
        with pytest.raises(ReviewError, match=FUTURE) as refused:
            ReviewStore(secret)
        assert "s3cret" not in str(refused.value)
