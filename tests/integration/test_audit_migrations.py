"""The audit database's schema is alembic's: a fresh database is migrated to head, one
made before alembic is adopted with its chains intact, one a newer jupyter-tre wrote is
refused and left alone, the table never drifts from `database.metadata` without a
migration, and openers at once all succeed — on SQLite and on a real PostgreSQL server,
where the audit and review databases may share one database."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import MetaData, create_engine, text

from tests.integration.test_review_migrations import (
    FUTURE,
    copy_rows,
    drift,
    dump,
    dump_rows,
    make_pre_alembic,
    opened_at_once,
    revisions,
    schema_sql,
    sqlite_url,
    stamp,
    table_names,
)
from tests.postgres import createdb, postgres_server
from tests.unit.test_audit_store import filled, make_store
from tre.audit import AuditStore, AuditStoreError
from tre.audit.database import SCHEMA, connect, engine_url
from tre.review.store import SCHEMA as REVIEW_SCHEMA
from tre.review.store import ReviewStore

# What `metadata.create_all` made on SQLite before alembic, frozen here: the first
# revision must make exactly this, and adopt it as it is.
PRE_ALEMBIC_DDL = (
    "CREATE TABLE audit_records (\n\tproject VARCHAR(64) NOT NULL, \n\tseq BIGINT NOT NULL, "
    "\n\tprev VARCHAR(64) NOT NULL, \n\thash VARCHAR(64) NOT NULL, \n\tat VARCHAR(32) NOT "
    "NULL, \n\tkind VARCHAR(64) NOT NULL, \n\tactor VARCHAR(256) NOT NULL, \n\tserver "
    "VARCHAR(256), \n\tpermit VARCHAR(128), \n\tdetail TEXT NOT NULL, \n\tPRIMARY KEY "
    "(project, seq)\n)",
    "CREATE INDEX ix_audit_records_at ON audit_records (at)",
    "CREATE INDEX ix_audit_records_actor ON audit_records (actor)",
    "CREATE TABLE audit_schema (\n\tversion INTEGER NOT NULL, \n\tPRIMARY KEY (version)\n)",
)

HEAD = SCHEMA.head()


def test_a_fresh_database_is_migrated_to_head_with_the_table_create_all_made(
    tmp_path: Path,
) -> None:
    path = tmp_path / "audit.sqlite"
    connect(sqlite_url(path)).dispose()
    assert revisions(sqlite_url(path), SCHEMA) == [HEAD]
    assert schema_sql(path, "audit_") == set(PRE_ALEMBIC_DDL)
    assert dump_rows(path, "audit_schema") == [(1,)]
    assert drift(sqlite_url(path), SCHEMA) == []
    before = dump(path)
    connect(sqlite_url(path)).dispose()
    assert dump(path) == before


def test_the_drift_check_sees_a_table_changed_without_a_migration(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "audit.sqlite")
    connect(url).dispose()
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE INDEX ix_audit_records_kind ON audit_records (kind)"))
    engine.dispose()
    assert [diff[0] for diff in drift(url, SCHEMA)] == ["remove_index"]


def test_a_database_made_before_alembic_is_adopted_with_its_chains(tmp_path: Path) -> None:
    today = make_store(tmp_path)  # audit.sqlite, JSON lines under tmp_path/audit
    filled(today, 4)
    filled(today, 2, project="hf-outcomes")
    expected = today.show()
    today.close()

    old = tmp_path / "old.sqlite"
    make_pre_alembic(old, PRE_ALEMBIC_DDL, "audit_schema")
    copy_rows(tmp_path / "audit.sqlite", old, SCHEMA.first_tables)
    assert "audit_alembic_version" not in table_names(sqlite_url(old))

    adopted = AuditStore(sqlite_url(old), tmp_path / "audit")
    report = adopted.verify()
    assert report.ok, report.problems
    assert report.counts == {"gbm-linkage": (4, 4), "hf-outcomes": (2, 2)}
    assert adopted.show() == expected
    adopted.close()
    assert revisions(sqlite_url(old), SCHEMA) == [HEAD]
    assert drift(sqlite_url(old), SCHEMA) == []
    assert dump_rows(old, "audit_records") == dump_rows(tmp_path / "audit.sqlite", "audit_records")
    # The fence stays: a release made before alembic still opens this database.
    assert dump_rows(old, "audit_schema") == [(1,)]


def test_a_database_that_is_not_one_we_made_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "odd.sqlite"
    make_pre_alembic(path, PRE_ALEMBIC_DDL[-1:], "audit_schema")  # the fence, no records
    before = dump(path)
    with pytest.raises(AuditStoreError, match=r"missing: audit_records"):
        connect(sqlite_url(path))
    assert dump(path) == before


def test_a_database_from_a_newer_release_is_refused_and_left_alone(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    filled(store, 2)
    store.close()
    path = tmp_path / "audit.sqlite"
    url = sqlite_url(path)
    stamp(url, SCHEMA, FUTURE)
    before = dump(path)
    with pytest.raises(AuditStoreError) as refused:
        make_store(tmp_path)
    message = str(refused.value)
    assert url in message and FUTURE in message and HEAD in message
    assert "newer jupyter-tre" in message
    assert dump(path) == before


def _open_at_once(url: str, barrier: Any, results: Any) -> None:
    barrier.wait(60)
    try:
        connect(url).dispose()
        results.put("ok")
    except BaseException as exc:
        results.put(f"{type(exc).__name__}: {exc}")


@pytest.mark.slow
def test_processes_opening_a_fresh_database_at_once_all_succeed(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "audit.sqlite")
    opened_at_once(url, processes=4, target=_open_at_once, schema=SCHEMA)
    assert drift(url, SCHEMA) == []


@pytest.mark.slow
def test_postgresql_is_migrated_to_head_and_shared_with_the_review_database(
    tmp_path: Path,
) -> None:
    with postgres_server() as pg:
        createdb(pg, "audit")
        url = pg.url("audit")
        connect(url).dispose()
        assert revisions(url, SCHEMA) == [HEAD]
        assert drift(url, SCHEMA) == []

        createdb(pg, "audit_at_once")
        opened_at_once(pg.url("audit_at_once"), processes=6, target=_open_at_once, schema=SCHEMA)

        # One database for both: each has its own version table and its own tables, and
        # neither sees the other's as drift.
        createdb(pg, "tre")
        shared = pg.url("tre")
        ReviewStore(shared).close()
        store = make_store(tmp_path, shared)
        filled(store, 3)
        assert store.verify().ok
        store.close()
        ReviewStore(shared).close()
        assert revisions(shared, SCHEMA) == [HEAD]
        assert revisions(shared, REVIEW_SCHEMA) == [REVIEW_SCHEMA.head()]
        assert drift(shared, SCHEMA) == []
        assert drift(shared, REVIEW_SCHEMA) == []
        assert {"audit_alembic_version", "review_alembic_version"} <= table_names(shared)

        # A database made before alembic, by the metadata of those releases.
        createdb(pg, "audit_old")
        old = pg.url("audit_old")
        engine = create_engine(engine_url(old))
        pre_alembic = MetaData()
        for table in SCHEMA.metadata.sorted_tables:
            table.to_metadata(pre_alembic)
        pre_alembic.create_all(engine)
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO audit_schema (version) VALUES (1)"))
        engine.dispose()
        store = make_store(tmp_path / "old", old)
        filled(store, 2)
        assert store.verify().ok
        store.close()
        assert revisions(old, SCHEMA) == [HEAD]
        assert drift(old, SCHEMA) == []

        # A newer release's revision is refused, and nothing is changed.
        stamp(url, SCHEMA, FUTURE)
        with pytest.raises(AuditStoreError, match=rf"{re.escape(url)}.*{FUTURE}.*{HEAD}"):
            connect(url)
        assert revisions(url, SCHEMA) == [FUTURE]


def test_the_fence_of_releases_before_alembic_is_checked(tmp_path: Path) -> None:
    """A release made before alembic refuses any `audit_schema` but its own; a migration
    that such a release could not work with raises it. Today's code insists on it too."""
    path = tmp_path / "audit.sqlite"
    connect(sqlite_url(path)).dispose()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE audit_schema SET version = 2")
    db.close()
    before = dump(path)
    with pytest.raises(AuditStoreError, match=r"schema version \[2\] in audit_schema"):
        connect(sqlite_url(path))
    assert dump(path) == before
