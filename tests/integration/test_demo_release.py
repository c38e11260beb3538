"""`tre demo release`: the demo's example result, computed from gbm-linkage's ingested
clinical records and taken out through the real review service by alice, olivia and oscar.

No Docker: the review service runs in-process on the site's own SQLite databases, the
audit store is the site's, and the publication is built as the summaries service builds it.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from tests.support import DEMO_TODAY, gbm_version_dir, ingest_for_gbm
from tre.audit import EventKind, open_store
from tre.cli import app
from tre.demo.release import (
    FIGURE_NAME,
    FOLDER,
    PROJECT,
    TABLE_NAME,
    TITLE,
    DemoReleaseError,
    demo_release,
    diagnosis_table,
)
from tre.hub.quota import WORKSPACE_GID, WORKSPACE_UID
from tre.policy import DisclosureProfile, Policy
from tre.policy.disclosure import ACRO_DEFAULT, OPENSAFELY
from tre.publish.build import build_publication
from tre.review import SYSTEM_ACTOR, Controls, Decision, RequestState, ReviewService, Verdict
from tre.review.checks import FileKind, IdentifierIndex, check_file
from tre.review.checks import Verdict as CheckVerdict
from tre.settings import Settings

TABLE = f"{FOLDER}/{TABLE_NAME}"
FIGURE = f"{FOLDER}/{FIGURE_NAME}"


def ingest(settings: Settings, policy: Policy) -> None:
    ingest_for_gbm(settings, policy, "clinical-records", settings.silos_dir / "emr")


def patients_by_diagnosis(settings: Settings) -> dict[str, int]:
    """Counted here from the sealed Parquet table, independently of the code under test."""
    rows = pq.read_table(gbm_version_dir(settings, "clinical-records") / "diagnoses.parquet")
    seen: dict[str, set[str]] = {}
    for row in rows.select(["pseudonym", "description"]).to_pylist():
        seen.setdefault(row["description"], set()).add(row["pseudonym"])
    return {name: len(people) for name, people in seen.items()}


def service(settings: Settings, policy: Policy) -> ReviewService:
    return ReviewService(settings, policy_loader=lambda: policy)


def demo_requests(settings: Settings, policy: Policy) -> list[str]:
    svc = service(settings, policy)
    try:
        return [r.id for r in svc.list_for("alice", "author", project=PROJECT) if r.title == TITLE]
    finally:
        svc.close()


def review_kinds(settings: Settings) -> list[tuple[EventKind, str]]:
    return [
        (r.kind, r.actor)
        for r in open_store(settings).show(project=PROJECT)
        if str(r.kind).startswith("review_")
    ]


def table_verdict(
    path: Path, profile: DisclosureProfile
) -> tuple[CheckVerdict, dict[str, CheckVerdict]]:
    checks = check_file(
        path,
        kind=FileKind.table,
        profile=profile,
        identifiers=IdentifierIndex(pseudonyms=frozenset()),
    )
    return checks.verdict, {f.check: f.verdict for f in checks.findings}


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_real_aggregate_goes_out_through_the_airlock_once(
    tre_site: Settings, demo_policy: Policy
) -> None:
    ingest(tre_site, demo_policy)
    result = demo_release(tre_site, demo_policy, DEMO_TODAY)
    assert not result.already_released
    assert result.files == (TABLE, FIGURE)

    svc = service(tre_site, demo_policy)
    try:
        req = svc.get(result.request_id, "alice")
        assert (req.state, req.author, req.project, req.title) == (
            RequestState.released,
            "alice",
            PROJECT,
            TITLE,
        )
        assert req.reviews_required == 2
        for f in req.files:
            assert req.approvers(f.name) == {"olivia", "oscar"}
        assert {r.checker for r in req.reviews if r.decision is Decision.approve} == {
            "olivia",
            "oscar",
        }
        released = {r.file.name: r.file for r in svc.released_files(PROJECT)}
    finally:
        svc.close()

    # The table is the real count of distinct patients per diagnosis in the sealed version.
    workspace = tre_site.workspaces_dir / PROJECT
    table_bytes = (workspace / TABLE).read_bytes()
    rows = list(csv.reader(io.StringIO(table_bytes.decode())))
    assert rows[0] == ["diagnosis", "patients"]
    expected = patients_by_diagnosis(tre_site)
    assert {name: int(n) for name, n in rows[1:]} == expected
    assert min(expected.values()) >= ACRO_DEFAULT.safe_threshold  # nothing to suppress here
    assert "Glioblastoma multiforme" in expected
    # The released copy is those very bytes, and the workspace user owns what was written.
    assert released[TABLE_NAME].stored_path.read_bytes() == table_bytes
    assert released[FIGURE_NAME].stored_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for path in (workspace / FOLDER, workspace / TABLE, workspace / FIGURE):
        assert (path.stat().st_uid, path.stat().st_gid) == (WORKSPACE_UID, WORKSPACE_GID)

    # The stored checks passed the table; the figure waits for a person, as figures do.
    table = released[TABLE_NAME]
    assert table.verdict is Verdict.passed
    assert table.checks is not None
    assert {f["check"] for f in table.checks["findings"]} >= {
        "minimum-threshold",
        "zeros",
        "identifiers",
        "differencing",
    }
    assert all(f["verdict"] == "pass" for f in table.checks["findings"])
    assert released[FIGURE_NAME].verdict is Verdict.review

    # Every step is in the project's audit chain, which verifies.
    store = open_store(tre_site)
    assert store.verify().ok
    events = review_kinds(tre_site)
    assert events == [
        (EventKind.review_created, "alice"),
        (EventKind.review_file_added, "alice"),
        (EventKind.review_file_added, "alice"),
        (EventKind.review_submitted, "alice"),
        (EventKind.review_started, "olivia"),
        (EventKind.review_approval, "olivia"),
        (EventKind.review_approval, "oscar"),
        (EventKind.review_approved, SYSTEM_ACTOR),
        (EventKind.review_released, "alice"),
    ]

    # Again: nothing changes, anywhere.
    before = (table_bytes, (workspace / TABLE).stat().st_mtime_ns, store.count(PROJECT))
    again = demo_release(tre_site, demo_policy, DEMO_TODAY)
    assert again.already_released
    assert again.request_id == result.request_id
    assert again.done == (f"already released: {result.request_id}",)
    after = ((workspace / TABLE).read_bytes(), (workspace / TABLE).stat().st_mtime_ns)
    assert (*after, store.count(PROJECT)) == before
    assert demo_requests(tre_site, demo_policy) == [result.request_id]

    # What the summaries service publishes now holds the released table.
    build = build_publication(tre_site, demo_policy, today=DEMO_TODAY)
    summary = json.loads((build / "projects" / PROJECT / "summary.json").read_text())
    [release] = summary["releases"]
    assert (release["request_id"], release["title"]) == (result.request_id, TITLE)
    published = {f["name"]: f for f in release["files"]}
    assert set(published) == {TABLE_NAME, FIGURE_NAME}
    assert (build / published[TABLE_NAME]["path"]).read_bytes() == table_bytes


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_command_refuses_a_planted_link_then_releases_once(
    tre_site: Settings, demo_policy: Policy, tmp_path: Path
) -> None:
    ingest(tre_site, demo_policy)
    settings_file = tmp_path / "settings.yaml"
    settings_file.write_text(
        f"policy_dir: {tre_site.policy_dir}\nvar_dir: {tre_site.var_dir}\n", encoding="utf-8"
    )
    command = ["--settings", str(settings_file), "demo", "release", "--today", "2026-11-23"]
    runner = CliRunner()

    # A researcher's container plants demo-release as a link to a folder outside the
    # workspace: the command (run as root) must not write through it.
    outside = tmp_path / "outside"
    outside.mkdir()
    workspace = tre_site.workspaces_dir / PROJECT
    workspace.mkdir(parents=True)
    (workspace / FOLDER).symlink_to(outside, target_is_directory=True)
    refused = runner.invoke(app, command)
    assert refused.exit_code == 1, refused.output
    assert str(workspace / FOLDER) in refused.output
    assert "links in a workspace are never followed" in refused.output
    assert list(outside.iterdir()) == []
    assert demo_requests(tre_site, demo_policy) == []

    (workspace / FOLDER).unlink()
    first = runner.invoke(app, command)
    assert first.exit_code == 0, first.output
    [request_id] = demo_requests(tre_site, demo_policy)
    assert f"alice released request {request_id}" in first.output
    assert "oscar approved" in first.output
    assert "/services/tre-summaries/" in first.output

    second = runner.invoke(app, command)
    assert second.exit_code == 0, second.output
    assert second.output.strip() == f"already released: {request_id}"
    assert demo_requests(tre_site, demo_policy) == [request_id]
    assert open_store(tre_site).verify().ok


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_without_ingested_clinical_records_it_says_what_to_run(
    tre_site: Settings, demo_policy: Policy
) -> None:
    with pytest.raises(DemoReleaseError) as caught:
        demo_release(tre_site, demo_policy, DEMO_TODAY)
    message = str(caught.value)
    assert "clinical-records" in message
    assert "tre ingest project gbm-linkage" in message
    assert demo_requests(tre_site, demo_policy) == []
    assert not (tre_site.workspaces_dir / PROJECT / FOLDER).exists()
    assert review_kinds(tre_site) == []


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_table_the_checks_do_not_pass_is_not_submitted(
    tre_site: Settings, demo_policy: Policy
) -> None:
    """bob released nearly the same table before: subtracting the two would reveal small
    groups, the differencing check flags the demo's table, and the demo says so."""
    ingest(tre_site, demo_policy)
    counts = patients_by_diagnosis(tre_site)
    earlier = dict(counts, Epilepsy=counts["Epilepsy"] - 2)
    workspace = tre_site.workspaces_dir / PROJECT
    workspace.mkdir(parents=True)
    body = "".join(f'"{name}",{n}\n' for name, n in sorted(earlier.items()))
    (workspace / "earlier.csv").write_text("diagnosis,patients\n" + body, encoding="utf-8")
    svc = service(tre_site, demo_policy)
    try:
        req = svc.create_request("bob", PROJECT, "An earlier extract")
        svc.add_file(
            req.id,
            "bob",
            "earlier.csv",
            description="Patients by diagnosis, last year's extract",
            context="A table for the paper",
            controls=Controls(population="the project's cohort", suppression="none needed"),
        )
        svc.submit(req.id, "bob")
        svc.approve(req.id, "olivia")
        svc.approve(req.id, "oscar")
        assert svc.release(req.id, "bob").state is RequestState.released
    finally:
        svc.close()

    with pytest.raises(DemoReleaseError) as caught:
        demo_release(tre_site, demo_policy, DEMO_TODAY)
    message = str(caught.value)
    assert TABLE_NAME in message
    assert "differencing (review)" in message
    assert "Epilepsy" in message
    assert demo_requests(tre_site, demo_policy) == []


@pytest.mark.parametrize("profile", [ACRO_DEFAULT, OPENSAFELY], ids=lambda p: p.id)
def test_small_counts_are_shaped_as_the_profile_demands(
    profile: DisclosureProfile, tmp_path: Path
) -> None:
    counts = {"Rare disease": 3, "Uncommon": 8, "Common": 12, "Frequent": 41}
    raw = tmp_path / "raw.csv"
    raw.write_text(
        "diagnosis,patients\n" + "".join(f"{k},{v}\n" for k, v in counts.items()),
        encoding="utf-8",
    )
    verdict, _ = table_verdict(raw, profile)
    assert verdict is CheckVerdict.fail  # the control: the checks do catch the raw counts

    table = diagnosis_table(counts, profile)
    shaped = tmp_path / "shaped.csv"
    shaped.write_bytes(table.csv_bytes())
    verdict, findings = table_verdict(shaped, profile)
    assert verdict is CheckVerdict.passed, findings
    assert table.suppressed == ("Rare disease", "Uncommon")
    assert dict(table.rows)["Rare disease"] == "<10"
    if profile is OPENSAFELY:
        assert dict(table.rows)["Frequent"] == "40"
        assert findings["rounding"] is CheckVerdict.passed
    else:
        assert dict(table.rows)["Frequent"] == "41"
