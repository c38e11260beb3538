"""The audit store: one hash chain per project, in a database and in JSON lines.

Every way of changing a chain behind the store's back — editing, deleting, inserting or
reordering a record in either copy, cutting its head — is named by `verify`; only
`prune`, which leaves an anchor, may shorten a chain.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.postgres import createdb, postgres_server
from tre.audit import (
    GENESIS,
    AuditEvent,
    AuditStore,
    AuditStoreError,
    EventKind,
    ProblemKind,
    VerifyReport,
)
from tre.audit.database import SCHEMA_VERSION

OLD = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
NEW = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)


def event(
    project: str | None = "gbm-linkage",
    n: int = 0,
    *,
    actor: str = "alice",
    kind: EventKind = EventKind.execute,
    at: datetime = NEW,
) -> AuditEvent:
    return AuditEvent(
        kind=kind,
        actor=actor,
        project=project,
        permit="gbm-linkage-2026" if project else None,
        server=project,
        at=at,
        detail={"code": f"x = {n}", "n": n},
    )


def make_store(tmp_path: Path, url: str | None = None) -> AuditStore:
    return AuditStore(url or f"sqlite:///{tmp_path / 'audit.sqlite'}", tmp_path / "audit")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AuditStore]:
    s = make_store(tmp_path)
    yield s
    s.close()


def filled(store: AuditStore, count: int = 5, project: str = "gbm-linkage") -> AuditStore:
    for n in range(count):
        store.append(event(project, n))
    return store


def sql(store: AuditStore, statement: str, **params: object) -> None:
    with store.engine.begin() as conn:
        conn.execute(text(statement), params)


def file_lines(store: AuditStore, chain: str = "gbm-linkage") -> list[str]:
    return store.path_of(chain).read_text().splitlines()


def write_lines(store: AuditStore, lines: list[str], chain: str = "gbm-linkage") -> None:
    store.path_of(chain).write_text("".join(line + "\n" for line in lines))


def forged_line(seq: int, prev: str, actor: str = "mallory") -> str:
    """A record with a correct hash, as anyone who knows the format can write one."""
    body = {
        "project": "gbm-linkage",
        "seq": seq,
        "prev": prev,
        "at": "2026-11-20T09:31:00.000000Z",
        "kind": "execute",
        "actor": actor,
        "server": "gbm-linkage",
        "permit": "gbm-linkage-2026",
        "detail": {"code": "forged"},
    }
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    body["hash"] = hashlib.sha256(canonical.encode()).hexdigest()
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def only(report: VerifyReport, copy: str) -> list[tuple[str, ProblemKind, int | None, int | None]]:
    return [(p.project, p.kind, p.seq, p.line) for p in report.problems if p.copy == copy]


# -- appending -----------------------------------------------------------------


def test_each_project_has_its_own_chain_in_both_copies(store: AuditStore) -> None:
    a1 = store.append(event("gbm-linkage", 1))
    b1 = store.append(event("hf-outcomes", 1))
    a2 = store.append(event("gbm-linkage", 2))
    site = store.append(event(None, kind=EventKind.spawn_refused))
    assert (a1.seq, a1.prev) == (1, GENESIS)
    assert (b1.seq, b1.prev) == (1, GENESIS)
    assert (a2.seq, a2.prev) == (2, a1.hash)
    assert (site.project, site.seq) == ("_site", 1)
    assert store.chains() == ["_site", "gbm-linkage", "hf-outcomes"]
    report = store.verify()
    assert report.ok, report.problems
    assert report.counts == {"_site": (1, 1), "gbm-linkage": (2, 2), "hf-outcomes": (1, 1)}
    assert store.log_dir.stat().st_mode & 0o777 == 0o700
    assert store.path_of("gbm-linkage").stat().st_mode & 0o777 == 0o600


def test_the_hash_is_sha256_of_the_canonical_record_without_it(store: AuditStore) -> None:
    record = store.append(event())
    stored = json.loads(file_lines(store)[0])
    digest = stored.pop("hash")
    canonical = json.dumps(stored, sort_keys=True, separators=(",", ":"))
    assert digest == hashlib.sha256(canonical.encode()).hexdigest() == record.hash
    assert set(stored) == {
        "project", "seq", "prev", "at", "kind", "actor", "server", "permit", "detail",
    }  # fmt: skip
    assert stored["at"] == "2026-11-20T09:30:00.000000Z"


def test_a_project_that_is_not_an_id_is_refused(store: AuditStore) -> None:
    with pytest.raises(AuditStoreError, match=r"'\.\./etc': not a project id"):
        store.append(event("../etc"))
    assert not list(store.log_dir.glob("*.jsonl"))


def test_a_time_without_zone_is_refused(store: AuditStore) -> None:
    with pytest.raises(AuditStoreError, match="no time zone"):
        store.append(event(at=datetime(2026, 11, 20, 9, 30)))


def test_a_second_store_continues_the_chain(tmp_path: Path, store: AuditStore) -> None:
    filled(store, 2)
    other = make_store(tmp_path)
    third = other.append(event(n=3))
    fourth = store.append(event(n=4))  # the first store's cached head is stale
    assert (third.seq, fourth.seq, fourth.prev) == (3, 4, third.hash)
    assert store.verify().ok
    other.close()


def test_an_unfinished_last_line_is_removed_before_the_next_append(store: AuditStore) -> None:
    filled(store, 2)
    with store.path_of("gbm-linkage").open("a") as handle:
        handle.write('{"actor":"alice","at":"2026-')  # a write that stopped midway
    fresh = AuditStore(store.db_url, store.log_dir)
    assert fresh.append(event(n=3)).seq == 3
    assert fresh.verify().ok
    fresh.close()


def test_a_line_synced_but_never_committed_is_completed(store: AuditStore) -> None:
    filled(store, 3)
    sql(store, "DELETE FROM audit_records WHERE seq = 3")  # the crash between the two
    report = store.verify()
    assert [(p.kind, p.seq, p.message) for p in report.problems] == [
        (ProblemKind.disagree, 3, "the file holds this record, the database does not")
    ]
    fresh = AuditStore(store.db_url, store.log_dir)
    assert fresh.append(event(n=4)).seq == 4
    assert fresh.verify().ok
    fresh.close()


def test_a_cut_file_stops_recording(store: AuditStore) -> None:
    filled(store, 3)
    write_lines(store, file_lines(store)[:2])
    fresh = AuditStore(store.db_url, store.log_dir)
    with pytest.raises(AuditStoreError, match=r"database ends at seq 3 but .* at seq 2"):
        fresh.append(event(n=4))
    assert fresh.count("gbm-linkage") == 3
    fresh.close()


def _append_many(url: str, log_dir: str, worker: int) -> None:
    store = AuditStore(url, Path(log_dir))
    for n in range(40):
        store.append(event(n=worker * 1000 + n))
    store.close()


def concurrent_appends(url: str, log_dir: Path, workers: int = 4) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(url, str(log_dir), w)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0


def test_processes_appending_to_one_project_make_one_gapless_chain(
    tmp_path: Path, store: AuditStore
) -> None:
    concurrent_appends(store.db_url, store.log_dir)
    report = store.verify()
    assert report.ok, report.problems
    assert report.counts == {"gbm-linkage": (160, 160)}
    seqs = [json.loads(line)["seq"] for line in file_lines(store)]
    assert seqs == list(range(1, 161))
    assert sorted(r.detail["n"] for r in store.show()) == sorted(
        w * 1000 + n for w in range(4) for n in range(40)
    )


# -- tampering with the file -------------------------------------------------------


def test_an_edited_line_is_named(store: AuditStore) -> None:
    filled(store)
    lines = file_lines(store)
    lines[2] = lines[2].replace('"actor":"alice"', '"actor":"mallory"')
    write_lines(store, lines)
    report = store.verify()
    assert only(report, "file") == [("gbm-linkage", ProblemKind.edited, 3, 3)]
    assert only(report, "both") == [("gbm-linkage", ProblemKind.disagree, 3, 3)]
    assert only(report, "database") == []
    assert "gbm-linkage.jsonl:3" in str(report.problems[0])


def test_a_deleted_line_is_named(store: AuditStore) -> None:
    filled(store)
    lines = file_lines(store)
    del lines[1]
    write_lines(store, lines)
    report = store.verify()
    assert only(report, "file") == [("gbm-linkage", ProblemKind.deleted, 3, 2)]
    assert "records 2..2 are missing" in report.problems[0].message
    assert only(report, "both") == [("gbm-linkage", ProblemKind.disagree, 2, None)]


def test_reordered_lines_are_named(store: AuditStore) -> None:
    filled(store)
    lines = file_lines(store)
    lines[1], lines[2] = lines[2], lines[1]
    write_lines(store, lines)
    report = store.verify()
    assert only(report, "file") == [("gbm-linkage", ProblemKind.reordered, 3, 2)]
    assert only(report, "both") == []  # the same records, in another order


def test_an_inserted_line_is_named_even_with_a_correct_hash(store: AuditStore) -> None:
    filled(store)
    lines = file_lines(store)
    second = json.loads(lines[1])
    lines.insert(2, forged_line(3, second["hash"]))
    write_lines(store, lines)
    report = store.verify()
    assert only(report, "file") == [("gbm-linkage", ProblemKind.inserted, 3, 4)]
    assert only(report, "both") == [("gbm-linkage", ProblemKind.disagree, 3, 3)]


def test_a_line_that_is_not_a_record_is_named(store: AuditStore) -> None:
    filled(store, 2)
    with store.path_of("gbm-linkage").open("a") as handle:
        handle.write("{not json\n")
    assert only(store.verify(), "file") == [("gbm-linkage", ProblemKind.unreadable, None, 3)]


def test_a_record_moved_to_another_project_is_named(store: AuditStore) -> None:
    filled(store, 2, project="gbm-linkage")
    filled(store, 2, project="hf-outcomes")
    moved = file_lines(store, "gbm-linkage")[1]
    write_lines(store, [*file_lines(store, "hf-outcomes"), moved], "hf-outcomes")
    problems = only(store.verify(), "file")
    assert problems == [("hf-outcomes", ProblemKind.misplaced, 2, 3)]


# -- tampering with the database ----------------------------------------------------


def test_an_edited_row_is_named(store: AuditStore) -> None:
    filled(store)
    sql(store, "UPDATE audit_records SET actor = 'mallory' WHERE seq = 3")
    report = store.verify()
    assert only(report, "database") == [("gbm-linkage", ProblemKind.edited, 3, None)]
    assert only(report, "both") == [("gbm-linkage", ProblemKind.disagree, 3, 3)]


def test_a_deleted_row_is_named(store: AuditStore) -> None:
    filled(store)
    sql(store, "DELETE FROM audit_records WHERE seq = 2")
    report = store.verify()
    assert only(report, "database") == [("gbm-linkage", ProblemKind.deleted, 3, None)]
    assert only(report, "both") == [("gbm-linkage", ProblemKind.disagree, 2, 2)]


def test_reordered_rows_are_named(store: AuditStore) -> None:
    filled(store)
    sql(store, "UPDATE audit_records SET seq = -seq WHERE seq IN (2, 3)")
    sql(store, "UPDATE audit_records SET seq = CASE seq WHEN -2 THEN 3 ELSE 2 END WHERE seq < 0")
    report = store.verify()
    assert only(report, "database") == [("gbm-linkage", ProblemKind.edited, 2, None)]
    assert only(report, "both") == [("gbm-linkage", ProblemKind.disagree, 2, 2)]


def test_an_inserted_row_is_named(store: AuditStore) -> None:
    filled(store)
    sql(store, "UPDATE audit_records SET seq = -seq WHERE seq >= 3")
    sql(store, "UPDATE audit_records SET seq = 1 - seq WHERE seq < 0")
    second = json.loads(file_lines(store)[1])
    forged = json.loads(forged_line(3, second["hash"]))
    forged["detail"] = json.dumps(forged["detail"], sort_keys=True, separators=(",", ":"))
    sql(
        store,
        "INSERT INTO audit_records (project, seq, prev, hash, at, kind, actor, server, permit, "
        "detail) VALUES (:project, :seq, :prev, :hash, :at, :kind, :actor, :server, :permit, "
        ":detail)",
        **forged,
    )
    report = store.verify()
    # The forged row itself chains; the one it displaced does not.
    assert only(report, "database") == [("gbm-linkage", ProblemKind.edited, 4, None)]
    assert only(report, "both") == [("gbm-linkage", ProblemKind.disagree, 3, 3)]


def test_copies_that_each_verify_but_differ_are_named(store: AuditStore) -> None:
    filled(store, 3)
    write_lines(store, file_lines(store)[:2])  # a shorter, valid chain
    report = store.verify()
    assert only(report, "file") == [] and only(report, "database") == []
    assert only(report, "both") == [("gbm-linkage", ProblemKind.disagree, 3, None)]
    assert "the database holds this record, the file does not" in str(report.problems[0])


def test_another_schema_version_is_refused(tmp_path: Path, store: AuditStore) -> None:
    sql(store, "UPDATE audit_schema SET version = :v", v=SCHEMA_VERSION + 1)
    with pytest.raises(AuditStoreError, match=rf"schema version \[{SCHEMA_VERSION + 1}\]"):
        make_store(tmp_path)


# -- retention --------------------------------------------------------------------


def aged(store: AuditStore) -> AuditStore:
    for n in range(3):
        store.append(event(n=n, at=OLD))
    for n in range(3, 5):
        store.append(event(n=n, at=NEW))
    return store


def test_prune_leaves_an_anchor_and_the_rest_verifies(store: AuditStore) -> None:
    aged(store)
    third = json.loads(file_lines(store)[2])
    [result] = store.prune(datetime(2026, 1, 1, tzinfo=UTC))
    assert (result.project, result.removed, result.last_removed_seq, result.kept) == (
        "gbm-linkage", 3, 3, 3,
    )  # fmt: skip
    assert result.anchor is not None
    assert result.anchor.kind is EventKind.audit_pruned
    assert result.anchor.detail["last_removed_hash"] == third["hash"]
    assert [r.seq for r in store.show(project="gbm-linkage")] == [4, 5, 6]
    assert [json.loads(line)["seq"] for line in file_lines(store)] == [4, 5, 6]
    report = store.verify()
    assert report.ok, report.problems
    assert store.append(event(n=9)).seq == 7
    assert store.verify().ok


def test_prune_dry_run_changes_nothing(store: AuditStore) -> None:
    aged(store)
    before = file_lines(store)
    [result] = store.prune(datetime(2026, 1, 1, tzinfo=UTC), dry_run=True)
    assert (result.removed, result.anchor) == (3, None)
    assert file_lines(store) == before and store.count("gbm-linkage") == 5


def test_a_silently_cut_head_does_not_verify(store: AuditStore) -> None:
    aged(store)
    sql(store, "DELETE FROM audit_records WHERE seq <= 2")
    write_lines(store, file_lines(store)[2:])
    report = store.verify()
    assert only(report, "database") == [("gbm-linkage", ProblemKind.cut, 3, None)]
    assert only(report, "file") == [("gbm-linkage", ProblemKind.cut, 3, 1)]


def test_cutting_past_a_prune_anchor_does_not_verify(store: AuditStore) -> None:
    aged(store)
    store.prune(datetime(2026, 1, 1, tzinfo=UTC))
    sql(store, "DELETE FROM audit_records WHERE seq = 4")
    write_lines(store, file_lines(store)[1:])
    report = store.verify()
    assert only(report, "database") == [("gbm-linkage", ProblemKind.cut, 5, None)]
    assert only(report, "file") == [("gbm-linkage", ProblemKind.cut, 5, 1)]


# -- reading -----------------------------------------------------------------------


def test_show_filters_by_project_user_time_and_kind(store: AuditStore) -> None:
    store.append(event("gbm-linkage", 1, at=OLD))
    store.append(event("gbm-linkage", 2, actor="bob"))
    store.append(event("hf-outcomes", 3, actor="bob", kind=EventKind.file_saved))
    assert [r.detail["n"] for r in store.show(user="bob")] == [2, 3]
    assert [r.detail["n"] for r in store.show(project="gbm-linkage")] == [1, 2]
    assert [r.detail["n"] for r in store.show(since=datetime(2026, 1, 1, tzinfo=UTC))] == [2, 3]
    assert [r.detail["n"] for r in store.show(until=datetime(2026, 1, 1, tzinfo=UTC))] == [1]
    assert [r.detail["n"] for r in store.show(kind=EventKind.file_saved)] == [3]


# -- PostgreSQL ----------------------------------------------------------------------


@pytest.mark.slow
def test_postgresql_keeps_the_same_chains(tmp_path: Path) -> None:
    with postgres_server() as pg:
        createdb(pg, "audit")
        store = make_store(tmp_path, pg.url("audit"))
        filled(store, 3, project="hf-outcomes")
        concurrent_appends(store.db_url, store.log_dir, workers=3)
        report = store.verify()
        assert report.ok, report.problems
        assert report.counts == {"gbm-linkage": (120, 120), "hf-outcomes": (3, 3)}
        sql(
            store,
            "UPDATE audit_records SET detail = '{}' WHERE project = 'gbm-linkage' AND seq = 7",
        )
        report = store.verify()
        assert only(report, "database") == [("gbm-linkage", ProblemKind.edited, 7, None)]
        assert only(report, "both") == [("gbm-linkage", ProblemKind.disagree, 7, 7)]
        store.close()
        assert not (tmp_path / "audit.sqlite").exists()
