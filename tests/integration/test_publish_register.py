"""The public register: its counts are the audit log's, its releases the review database's,
its deadlines EHDS Art. 61(4)'s, and building it writes nothing.

A real site under tmp_path: the demo policy (plus an archived and a revoked permit), a
real audit store written with records of several kinds, permits and days, and a real
review service whose requests are brought to each state (the disclosure checks are the
review service tests' small double).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import jsonschema
import pytest
import yaml
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from tests.postgres import createdb, postgres_server
from tests.support import DEMO_POLICY, DEMO_TODAY, REPO, Edit
from tests.unit.test_review_service import Clock, FakeChecker, make_request
from tests.unit.test_review_service import Site as ReviewSite
from tre.audit import AuditEvent, AuditStore, EventKind, open_store
from tre.policy import Permit, PermitStatus, Policy, validate_policy
from tre.policy.permits import Publication
from tre.publish.register import (
    CSV_COLUMNS,
    LIST_SEPARATOR,
    Register,
    RegisterError,
    Release,
    add_months,
    build_register,
    end_of_processing,
    publication_deadline,
    read_only_url,
    register_csv,
    register_from_settings,
    register_json,
    releases_from_settings,
)
from tre.review import RequestState, ReviewService
from tre.settings import AuditSettings, ReviewSettings, Settings

GBM, GBM_PERMIT = "gbm-linkage", "gbm-linkage-2026"
HF, HF_PERMIT = "hf-outcomes", "hf-outcomes-2026"
PILOT = "gbm-pilot-2025"  # archived, with a publication
REVOKED = "hf-pilot-2024"  # revoked early, nothing published: overdue


def utc(day: str, hour: int = 10, minute: int = 0) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, minute=minute, tzinfo=UTC)


def extra_permit(**fields: object) -> Permit:
    base: dict[str, object] = {
        "access_body_reference": "HDAB-DEMO-OLD",
        "issued_by": "Health Data Access Body (demo)",
        "people": ["alice"],
        "datasets": [{"dataset": "clinical-records", "version": "1"}],
    }
    return Permit.model_validate({**base, **fields})


def extended(policy: Policy) -> Policy:
    """The demo policy plus an archived permit with a publication and a revoked one."""
    pilot = extra_permit(
        id=PILOT,
        project=GBM,
        issued="2025-01-02",
        purpose="scientific_research",
        start="2025-01-10",
        expiry="2025-08-31",
        archived=True,
        people=["alice", "bob"],
        publications=[
            {
                "title": "MGMT status and survival; a pilot",
                "published": "2026-05-04",
                "doi": "10.5555/gbm.pilot",
                "url": "https://journal.invalid/gbm-pilot",
            }
        ],
    )
    revoked = extra_permit(
        id=REVOKED,
        project=HF,
        issued="2024-01-05",
        purpose="public_health",
        start="2024-01-08",
        expiry="2025-12-31",
        people=["carla"],
        revoked={"effective": "2024-08-31", "reason": "conditions breached"},
    )
    return policy.model_copy(update={"permits": (*policy.permits, pilot, revoked)})


# -- the site ----------------------------------------------------------------------------

WORK: list[tuple[str, str, str, EventKind, str]] = [
    # (project, permit, actor, kind, day): the work the register must count...
    (GBM, GBM_PERMIT, "alice", EventKind.server_started, "2026-02-02"),
    (GBM, GBM_PERMIT, "alice", EventKind.execute, "2026-02-02"),
    (GBM, GBM_PERMIT, "alice", EventKind.execute, "2026-02-02"),
    (GBM, GBM_PERMIT, "alice", EventKind.server_started, "2026-03-15"),
    (GBM, GBM_PERMIT, "alice", EventKind.execute, "2026-03-15"),
    (GBM, GBM_PERMIT, "bob", EventKind.server_started, "2026-04-01"),
    (GBM, GBM_PERMIT, "bob", EventKind.execute, "2026-04-01"),
    (GBM, GBM_PERMIT, "bob", EventKind.execute, "2026-04-02"),
    (GBM, GBM_PERMIT, "bob", EventKind.execute, "2026-04-03"),
    (HF, HF_PERMIT, "carla", EventKind.server_started, "2026-03-02"),
    (HF, HF_PERMIT, "carla", EventKind.execute, "2026-03-02"),
    (HF, HF_PERMIT, "bob", EventKind.execute, "2026-05-20"),  # no session of his own counted
    (GBM, PILOT, "bob", EventKind.server_started, "2025-02-01"),
    (GBM, PILOT, "bob", EventKind.execute, "2025-02-01"),
    # ...and what it must not count: other kinds, and records without a permit.
    (GBM, GBM_PERMIT, "alice", EventKind.spawn_requested, "2026-02-02"),
    (GBM, GBM_PERMIT, "alice", EventKind.server_stopped, "2026-02-02"),
    (GBM, GBM_PERMIT, "alice", EventKind.file_saved, "2026-02-02"),
    (GBM, GBM_PERMIT, "alice", EventKind.kernel_event, "2026-02-02"),
    (GBM, GBM_PERMIT, "bob", EventKind.package_installed, "2026-04-01"),
    (GBM, GBM_PERMIT, "bob", EventKind.permit_ended_stop, "2026-04-04"),
    (HF, HF_PERMIT, "carla", EventKind.server_stopped, "2026-03-02"),
    (HF, HF_PERMIT, "carla", EventKind.file_saved, "2026-03-02"),
]
REFUSED = [
    # spawns refused before any permit was found: no permit, so no session of anyone
    AuditEvent(kind=EventKind.spawn_refused, actor="mallory", project=GBM, at=utc("2026-02-03")),
    AuditEvent(kind=EventKind.spawn_refused, actor="mallory", at=utc("2026-02-03")),
    AuditEvent(kind=EventKind.server_started, actor="adam", project=HF, at=utc("2026-02-04")),
]


@dataclass
class RegisterSite:
    settings: Settings
    policy: Policy
    review: ReviewSite
    released_at: dict[str, datetime]  # request id → when it was released

    @property
    def audit(self) -> AuditStore:
        return open_store(self.settings)

    def close(self) -> None:
        """Let go of every connection, as a stopped hub would."""
        self.review.service.close()
        self.audit.close()


def release_on(site: ReviewSite, when: datetime, **kwargs: object) -> str:
    site.clock.now = when
    req = make_request(site, state=RequestState.released, **kwargs)  # type: ignore[arg-type]
    assert req.state is RequestState.released
    step = req.history[-1].step
    assert str(step.action) == "release"
    return req.id


@pytest.fixture
def reg_site(tmp_path: Path, demo_policy: Policy) -> Iterator[RegisterSite]:
    settings = Settings(policy_dir=DEMO_POLICY, var_dir=tmp_path / "var")
    policy = extended(demo_policy)
    clock = Clock(utc("2026-05-01", 9))
    checker = FakeChecker()
    service = ReviewService(settings, lambda: demo_policy, checker, clock)
    review = ReviewSite(settings, service, checker, clock)
    site = RegisterSite(settings, policy, review, {})
    events = [
        AuditEvent(
            kind=kind,
            actor=actor,
            project=project,
            permit=permit,
            server=project,
            at=utc(day),
            detail={"code": "print(secret_variable)"} if kind is EventKind.execute else {},
        )
        for project, permit, actor, kind, day in WORK
    ]
    for event in sorted([*events, *REFUSED], key=lambda e: e.at):  # as they happened
        site.audit.append(event)

    # Releases on three days (one late in the UTC evening), and requests in every other state.
    for when, kwargs in [
        (utc("2026-06-10", 23, 58), {}),
        (utc("2026-09-01"), {"files": ("out/a.csv", "out/b.csv")}),
        (utc("2026-10-05"), {"project": HF, "author": "carla", "files": ("out/hf.csv",)}),
    ]:
        rid = release_on(review, when, **kwargs)
        site.released_at[rid] = when
    review.clock.now = utc("2026-10-20")
    for state in (
        RequestState.draft,
        RequestState.submitted,
        RequestState.under_review,
        RequestState.returned,
        RequestState.approved,
        RequestState.rejected,
        RequestState.withdrawn,
    ):
        make_request(review, state=state, files=(f"out/{state}.csv",))
    try:
        yield site
    finally:
        site.close()


def counted_from_the_log(store: AuditStore) -> dict[str, tuple[int, int, int]]:
    """permit → (sessions, executions, distinct people), straight from the JSON lines,
    checked against the database rows record by record."""
    sessions: Counter[str] = Counter()
    executions: Counter[str] = Counter()
    people: dict[str, set[str]] = defaultdict(set)
    for chain in store.chains():
        lines = [r for _, r in store.file_records(chain)]
        rows = [r for _, r in store.db_rows(chain)]
        assert lines == rows
        for record in lines:
            assert record is not None
            if record.permit is None:
                continue
            if record.kind is EventKind.server_started:
                sessions[record.permit] += 1
            elif record.kind is EventKind.execute:
                executions[record.permit] += 1
            else:
                continue
            people[record.permit].add(record.actor)
    permits = sessions.keys() | executions.keys()
    return {p: (sessions[p], executions[p], len(people[p])) for p in permits}


# -- counts, releases, deadlines ---------------------------------------------------------


def test_the_counts_are_the_audit_logs(reg_site: RegisterSite) -> None:
    reg = build_register(
        reg_site.policy, reg_site.audit, releases_from_settings(reg_site.settings), DEMO_TODAY
    )
    entries = {e.permit: e for e in reg.entries}
    assert set(entries) == {p.id for p in reg_site.policy.permits}
    from_log = counted_from_the_log(reg_site.audit)
    for permit, entry in entries.items():
        expected = from_log.get(permit, (0, 0, 0))
        assert (entry.sessions, entry.executions, entry.researchers_active) == expected, permit
    # The same numbers, written out, so that the register and the log cannot agree on a
    # mistake they share.
    counts = {
        p: (e.researchers_named, e.researchers_active, e.sessions, e.executions)
        for p, e in entries.items()
    }
    assert counts == {
        GBM_PERMIT: (2, 2, 3, 6),
        HF_PERMIT: (2, 2, 1, 2),
        PILOT: (2, 1, 1, 1),
        REVOKED: (1, 0, 0, 0),
    }
    assert all(e.counted_since is None for e in reg.entries)


def test_releases_are_the_released_requests_on_their_day(reg_site: RegisterSite) -> None:
    reg = build_register(
        reg_site.policy, reg_site.audit, releases_from_settings(reg_site.settings), DEMO_TODAY
    )
    entries = {e.permit: e for e in reg.entries}
    assert entries[GBM_PERMIT].releases == (
        Release(released=date(2026, 6, 10), files=1),
        Release(released=date(2026, 9, 1), files=2),
    )
    assert entries[HF_PERMIT].releases == (Release(released=date(2026, 10, 5), files=1),)
    assert entries[PILOT].releases == entries[REVOKED].releases == ()
    # Independently: what the review service calls released, by request, on its day.
    service = reg_site.review.service
    by_request: Counter[str] = Counter()
    for project in (GBM, HF):
        for released in service.released_files(project):
            by_request[released.request_id] += 1
    assert set(by_request) == set(reg_site.released_at)
    assert sorted((reg_site.released_at[rid].date(), n) for rid, n in by_request.items()) == sorted(
        (r.released, r.files) for e in reg.entries for r in e.releases
    )


def test_a_release_day_is_the_utc_day(reg_site: RegisterSite) -> None:
    # Released at 23:58 UTC on 10 June: still 10 June, wherever the register is built.
    when = min(reg_site.released_at.values())
    assert (when.hour, when.minute) == (23, 58)
    releases = releases_from_settings(reg_site.settings)
    assert releases[GBM_PERMIT][0].released == date(2026, 6, 10)


def test_status_deadline_publication_and_overdue(reg_site: RegisterSite) -> None:
    reg = build_register(reg_site.policy, reg_site.audit, {}, DEMO_TODAY)
    entries = {e.permit: e for e in reg.entries}
    gbm, hf, pilot, revoked = (entries[p] for p in (GBM_PERMIT, HF_PERMIT, PILOT, REVOKED))

    assert (gbm.status, gbm.end_of_processing, gbm.publication_deadline) == (
        PermitStatus.active,
        date(2028, 1, 14),
        date(2029, 7, 14),
    )
    assert (gbm.results_published, gbm.overdue) == (False, False)
    assert (hf.end_of_processing, hf.publication_deadline) == (
        date(2027, 4, 30),
        date(2028, 10, 30),
    )

    assert pilot.status is PermitStatus.archived
    assert (pilot.end_of_processing, pilot.publication_deadline) == (
        date(2025, 8, 31),
        date(2027, 2, 28),  # 31 February does not exist
    )
    assert (pilot.results_published, pilot.overdue) == (True, False)
    assert [p.doi for p in pilot.publications] == ["10.5555/gbm.pilot"]

    # Revoked on 31 August 2024: the deadline ran out on 28 February 2026.
    assert (revoked.status, revoked.revoked, revoked.end_of_processing) == (
        PermitStatus.revoked,
        date(2024, 8, 31),
        date(2024, 8, 31),
    )
    assert revoked.publication_deadline == date(2026, 2, 28)
    assert (revoked.results_published, revoked.overdue) == (False, True)
    # On the deadline itself it is not overdue yet; the day after it is.
    for day, overdue in ((date(2026, 2, 28), False), (date(2026, 3, 1), True)):
        later = build_register(reg_site.policy, reg_site.audit, {}, day)
        assert [e.overdue for e in later.entries if e.permit == REVOKED] == [overdue]
    assert [e.permit for e in reg.entries] == [REVOKED, PILOT, GBM_PERMIT, HF_PERMIT]


def test_the_entry_names_the_holder_purpose_and_datasets(reg_site: RegisterSite) -> None:
    reg = build_register(reg_site.policy, reg_site.audit, {}, DEMO_TODAY)
    gbm = next(e for e in reg.entries if e.permit == GBM_PERMIT)
    assert (gbm.holder.name, gbm.holder.organisation) == (
        "Alice Peeters",
        "Department of Neuro-oncology",
    )
    assert (gbm.purpose.code, gbm.purpose.article, gbm.purpose.label) == (
        "scientific_research",
        "Art. 53(1)(e)",
        "Scientific research related to health or care",
    )
    assert gbm.access_body_reference == "HDAB-DEMO-2026-0042"
    assert [(d.id, d.version) for d in gbm.datasets][:2] == [
        ("clinical-records", "1"),
        ("gbm-mri", "1"),
    ]
    assert gbm.datasets[0].title == reg_site.policy.dataset("clinical-records").title  # type: ignore[union-attr]
    assert (reg.site, reg.as_of) == (reg_site.policy.site.id, DEMO_TODAY)


def test_no_researcher_names_code_or_file_names_are_published(reg_site: RegisterSite) -> None:
    reg = register_from_settings(reg_site.settings, DEMO_TODAY, policy=reg_site.policy)
    text = register_json(reg) + register_csv(reg)
    holders = {"Alice Peeters", "Carla Janssens"}
    for person in reg_site.policy.people:
        if person.name not in holders:
            assert person.name not in text
        assert f'"{person.username}"' not in text
    for secret in ("secret_variable", "a.csv", "b.csv", "hf.csv", "mallory", "out/"):
        assert secret not in text


def test_a_pruned_log_says_from_when_it_counts(reg_site: RegisterSite) -> None:
    store = reg_site.audit
    pruned = store.prune(utc("2026-03-01", 0))
    assert {p.project for p in pruned} == {GBM, HF, "_site"}
    reg = build_register(reg_site.policy, store, {}, DEMO_TODAY)
    entries = {e.permit: e for e in reg.entries}
    assert entries[GBM_PERMIT].counted_since == utc("2026-03-01", 0)
    assert entries[PILOT].counted_since == utc("2026-03-01", 0)  # the same chain
    from_log = counted_from_the_log(store)
    for permit, entry in entries.items():
        expected = from_log.get(permit, (0, 0, 0))
        assert (entry.sessions, entry.executions, entry.researchers_active) == expected
    assert (entries[GBM_PERMIT].sessions, entries[GBM_PERMIT].executions) == (2, 4)
    assert (entries[PILOT].sessions, entries[PILOT].executions) == (0, 0)


def test_activity_under_a_permit_the_policy_lost_is_an_error(reg_site: RegisterSite) -> None:
    # The pilot permit had sessions and the policy no longer lists it: the register
    # would be incomplete, so there is none.
    without_pilot = reg_site.policy.model_copy(
        update={"permits": tuple(p for p in reg_site.policy.permits if p.id != PILOT)}
    )
    with pytest.raises(RegisterError, match=rf"{PILOT} \(project {GBM}\).*archived: true"):
        build_register(without_pilot, reg_site.audit, {}, DEMO_TODAY)
    with pytest.raises(RegisterError, match=r"gone-2020 \(released outputs\)"):
        build_register(
            reg_site.policy,
            reg_site.audit,
            {"gone-2020": [Release(released=date(2020, 1, 1), files=1)]},
            DEMO_TODAY,
        )


# -- the exports --------------------------------------------------------------------------


def test_json_round_trips(reg_site: RegisterSite) -> None:
    reg = register_from_settings(reg_site.settings, DEMO_TODAY, policy=reg_site.policy)
    text = register_json(reg)
    assert Register.model_validate_json(text) == reg
    data = json.loads(text)
    assert data["entries"][0]["purpose"] == {
        "code": "public_health",
        "article": "Art. 53(1)(a)",
        "label": "Public interest in public and occupational health",
    }


def test_csv_parses_back_to_the_same_values(reg_site: RegisterSite) -> None:
    reg = register_from_settings(reg_site.settings, DEMO_TODAY, policy=reg_site.policy)
    text = register_csv(reg)
    assert text.endswith("\r\n")
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert list(rows[0]) == [name for name, _ in CSV_COLUMNS]
    assert len(rows) == len(reg.entries)
    for row, entry in zip(rows, reg.entries, strict=True):
        assert row["permit"] == entry.permit
        assert row["lay_summary"] == entry.lay_summary  # several lines, commas: quoted
        assert row["holder"] == entry.holder.name
        assert row["purpose_article"] == entry.purpose.article
        assert row["start"] == entry.start.isoformat()
        assert row["revoked"] == (entry.revoked.isoformat() if entry.revoked else "")
        assert row["status"] == entry.status.value
        for column in ("researchers_named", "researchers_active", "sessions", "executions"):
            assert int(row[column]) == getattr(entry, column)
        assert row["publication_deadline"] == entry.publication_deadline.isoformat()
        assert row["results_published"] == ("yes" if entry.results_published else "no")
        assert row["overdue"] == ("yes" if entry.overdue else "no")
        datasets = row["datasets"].split(LIST_SEPARATOR)
        assert datasets == [f"{d.title} (version {d.version})" for d in entry.datasets]
        releases = [r for r in row["releases"].split(LIST_SEPARATOR) if r]
        assert [
            (date.fromisoformat(r.split(" ")[0]), int(r.split("(")[1].split(" ")[0]))
            for r in releases
        ] == [(r.released, r.files) for r in entry.releases]
    pilot = next(r for r in rows if r["permit"] == PILOT)
    assert pilot["publications"] == (
        "2026-05-04 MGMT status and survival; a pilot <https://doi.org/10.5555/gbm.pilot>"
    )


# -- read-only ----------------------------------------------------------------------------


def snapshot(folder: Path) -> dict[str, tuple[int, str]]:
    return {
        str(p.relative_to(folder)): (
            p.stat().st_mtime_ns,
            hashlib.sha256(p.read_bytes()).hexdigest(),
        )
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_building_the_register_writes_no_database(reg_site: RegisterSite) -> None:
    reg_site.close()
    before = snapshot(reg_site.settings.var_dir)
    assert "db/audit.sqlite" in before
    assert "db/review.sqlite" in before
    register_from_settings(reg_site.settings, DEMO_TODAY, policy=reg_site.policy)
    after = snapshot(reg_site.settings.var_dir)
    # Every file that was there is as it was, byte for byte and by its time.
    assert {k: after.get(k) for k in before} == before
    # Only SQLite's own reader files may appear beside a database nobody had open: an
    # empty write-ahead log and its index, never data.
    new = set(after) - set(before)
    assert new <= {f"db/{db}.sqlite-{x}" for db in ("audit", "review") for x in ("wal", "shm")}
    for name in new:
        if name.endswith("-wal"):
            assert (reg_site.settings.var_dir / name).stat().st_size == 0


def test_a_site_without_databases_is_an_error_and_stays_empty(tmp_path: Path) -> None:
    settings = Settings(policy_dir=DEMO_POLICY, var_dir=tmp_path / "var")
    settings.var_dir.mkdir()
    with pytest.raises(RegisterError, match=r"review database .*review\.sqlite does not exist"):
        register_from_settings(settings, DEMO_TODAY)
    settings.db_dir.mkdir()
    (settings.db_dir / "review.sqlite").touch()  # there, but never migrated
    with pytest.raises(RegisterError, match=r"at revision none, not 0001: start the review"):
        register_from_settings(settings, DEMO_TODAY)
    assert (settings.db_dir / "review.sqlite").stat().st_size == 0
    assert sorted(p.name for p in settings.var_dir.rglob("*")) == ["db", "review.sqlite"]


def test_an_unmigrated_audit_database_is_refused_not_migrated(reg_site: RegisterSite) -> None:
    reg_site.close()
    audit_db = reg_site.settings.db_dir / "audit.sqlite"
    audit_db.rename(audit_db.with_suffix(".moved"))
    audit_db.touch()
    with pytest.raises(RegisterError, match=r"readonly database"):
        register_from_settings(reg_site.settings, DEMO_TODAY, policy=reg_site.policy)
    assert audit_db.stat().st_size == 0


def test_read_only_urls(tmp_path: Path) -> None:
    folder = tmp_path / "a b#c"
    folder.mkdir()
    with sqlite3.connect(folder / "x.sqlite") as made:
        made.execute("CREATE TABLE t (x INTEGER)")
    engine = create_engine(read_only_url(f"sqlite:///{folder / 'x.sqlite'}", "x"))
    with engine.connect() as conn, pytest.raises(OperationalError, match="readonly database"):
        conn.execute(text("INSERT INTO t VALUES (1)"))
    engine.dispose()
    with pytest.raises(RegisterError, match="does not exist"):
        read_only_url("sqlite:////nonexistent/audit.sqlite", "audit database")
    with pytest.raises(RegisterError, match="in-memory"):
        read_only_url("sqlite://", "audit database")
    with pytest.raises(RegisterError, match="cannot open a mysql database read-only"):
        read_only_url("mysql://u:secret@h/db", "audit database")
    url = read_only_url("postgresql://u:secret@h:5432/tre?options=-c%20work_mem%3D4MB", "x")
    assert url == (
        "postgresql+psycopg://u:secret@h:5432/tre"
        "?options=-c+work_mem%3D4MB+-c+default_transaction_read_only%3Don"
    )


@pytest.mark.slow
def test_on_postgresql_the_register_reads_and_cannot_write(
    tmp_path: Path, demo_policy: Policy
) -> None:
    with postgres_server() as pg:
        for name in ("audit", "review", "empty"):
            createdb(pg, name)
        settings = Settings(
            policy_dir=DEMO_POLICY,
            var_dir=tmp_path / "var",
            audit=AuditSettings(db_url=pg.url("audit")),
            review=ReviewSettings(db_url=pg.url("review")),
        )
        clock = Clock(utc("2026-06-01"))
        service = ReviewService(
            settings, lambda: demo_policy, FakeChecker(), clock, db_url=pg.url("review")
        )
        site = ReviewSite(settings, service, FakeChecker(), clock)
        release_on(site, utc("2026-06-02"))
        audit = open_store(settings)
        for project, permit, actor, kind, day in WORK[:12]:
            audit.append(
                AuditEvent(kind=kind, actor=actor, project=project, permit=permit, at=utc(day))
            )
        service.close()

        reg = register_from_settings(settings, DEMO_TODAY)
        gbm = next(e for e in reg.entries if e.permit == GBM_PERMIT)
        assert (gbm.sessions, gbm.executions, gbm.researchers_active) == (3, 6, 2)
        assert gbm.releases == (Release(released=date(2026, 6, 2), files=1),)

        # A database that is not at the newest schema is refused, and left as it is.
        empty = settings.model_copy(update={"audit": AuditSettings(db_url=pg.url("empty"))})
        with pytest.raises(RegisterError, match="read-only transaction"):
            register_from_settings(empty, DEMO_TODAY)
        import psycopg

        with psycopg.connect(pg.url("empty")) as conn:
            tables = conn.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
            ).fetchone()
        assert tables == (0,)
        audit.close()


# -- the permit's publications ------------------------------------------------------------


def a_permit(**changes: object) -> Permit:
    fields: dict[str, object] = {
        "id": "p1",
        "project": "proj",
        "access_body_reference": "REF-1",
        "issued_by": "HDAB",
        "issued": date(2026, 1, 1),
        "purpose": "scientific_research",
        "start": date(2026, 1, 10),
        "expiry": date(2026, 12, 31),
        "people": ("alice",),
        "datasets": ({"dataset": "d", "version": "1"},),
    }
    return Permit.model_validate({**fields, **changes})


def test_a_permit_lists_its_publications() -> None:
    permit = a_permit(
        publications=[
            {"title": "Results", "published": "2027-03-01", "doi": "10.1234/abc.5"},
            {"title": "Preprint", "published": "2026-01-01", "url": "https://x.invalid/p"},
        ]
    )
    assert [p.published for p in permit.publications] == [date(2027, 3, 1), date(2026, 1, 1)]
    assert a_permit().publications == ()


@pytest.mark.parametrize(
    ("publication", "message"),
    [
        (
            {"title": "Early", "published": "2025-12-31", "doi": "10.1234/x"},
            r"publications\[0\]: published 2025-12-31 is before the permit was issued "
            r"\(2026-01-01\)",
        ),
        ({"title": "Nowhere", "published": "2027-01-01"}, "needs a doi or a url"),
        (
            {"title": "T", "published": "2027-01-01", "doi": "https://doi.org/10.1234/x"},
            "is not a DOI: give 10.<registrant>/<suffix>, without https://doi.org/",
        ),
        ({"title": "T", "published": "2027-01-01", "url": "ftp://x/y"}, "not an http or https"),
        ({"title": " ", "published": "2027-01-01", "url": "https://x/y"}, "at least 1 char"),
        ({"title": "T", "published": "2027-01-01", "doi": "10.1/x", "isbn": "1"}, "Extra inp"),
    ],
)
def test_a_bad_publication_is_refused(publication: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        a_permit(publications=[publication])


HF_CONDITIONS = "      disclosure_profile: opensafely\n      terminals_allowed: false\n"


def test_the_policy_file_takes_publications_and_says_where_one_is_wrong(
    site: Path, edit: Edit
) -> None:
    demo = (site / "permits.yaml").read_text(encoding="utf-8")
    demo_entry = demo[demo.index("    publications:\n") :]
    entry = "    publications:\n      - {title: Readmissions, published: %s, doi: 10.1234/hf}\n"
    edit("permits.yaml", HF_CONDITIONS + demo_entry, HF_CONDITIONS + entry % "2027-06-01")
    report = validate_policy(site, DEMO_TODAY)
    assert report.ok, report.findings
    assert report.policy is not None
    hf = report.policy.permit(HF_PERMIT)
    assert hf is not None
    assert hf.publications == (
        Publication(title="Readmissions", published=date(2027, 6, 1), doi="10.1234/hf"),
    )
    # The committed JSON Schema takes it too, and refuses a DOI given as a link.
    schema = json.loads((REPO / "policies" / "schema" / "permits.schema.json").read_text())
    data = json.loads(json.dumps(yaml.safe_load((site / "permits.yaml").read_text()), default=str))
    jsonschema.validate(data, schema, format_checker=jsonschema.FormatChecker())
    data["permits"][1]["publications"][0]["doi"] = "https://doi.org/10.1234/hf"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, schema)

    edit("permits.yaml", "published: 2027-06-01", "published: 2026-02-01")
    assert [str(f).replace(f"{site}/", "") for f in validate_policy(site, DEMO_TODAY).findings] == [
        "permits.yaml:30: error: permits[1]: publications[0]: published 2026-02-01 is before "
        "the permit was issued (2026-03-01)"
    ]


# -- the deadline's arithmetic -------------------------------------------------------------


@pytest.mark.parametrize(
    ("end", "deadline"),
    [
        (date(2028, 2, 29), date(2029, 8, 29)),  # a leap day: August has a 29th
        (date(2026, 8, 31), date(2028, 2, 29)),  # lands in a leap February: its last day
        (date(2027, 8, 31), date(2029, 2, 28)),  # lands in a common February
        (date(2026, 5, 31), date(2027, 11, 30)),  # a 31st into a 30-day month
        (date(2026, 7, 1), date(2028, 1, 1)),  # across the year end
        (date(2027, 12, 31), date(2029, 6, 30)),
    ],
)
def test_eighteen_months(end: date, deadline: date) -> None:
    assert add_months(end, 18) == deadline
    assert publication_deadline(a_permit(issued=date(2026, 1, 1), expiry=end)) == deadline


def test_the_end_of_processing_is_expiry_or_an_earlier_revocation() -> None:
    leap = a_permit(expiry=date(2028, 2, 29))
    assert end_of_processing(leap) == date(2028, 2, 29)
    assert publication_deadline(leap) == date(2029, 8, 29)
    revoked = a_permit(revoked={"effective": date(2026, 6, 1), "reason": "breach"})
    assert end_of_processing(revoked) == date(2026, 6, 1)
    assert publication_deadline(revoked) == date(2027, 12, 1)
    late = a_permit(revoked={"effective": date(2027, 6, 1), "reason": "after it ended"})
    assert end_of_processing(late) == date(2026, 12, 31)
    assert add_months(date(2026, 1, 31), 1) == date(2026, 2, 28)
    assert add_months(date(2026, 3, 31), -1) == date(2026, 2, 28)
    assert add_months(date(2026, 1, 1), 0) == date(2026, 1, 1)
    assert add_months(date(2026, 1, 1), 12 * 3 + 1) == date(2029, 2, 1)
