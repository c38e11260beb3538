"""The review service's domain: a request from draft to release, and every way to cheat it.

A real SQLite database, a real file store and a real audit store under tmp_path; the
disclosure checks are a small double here (the real ones run in the last test).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.support import DEMO_TODAY
from tre.audit import AuditRecord, EventKind, open_store
from tre.policy import DisclosureProfile, Policy
from tre.review import (
    ACTION_EVENTS,
    SYSTEM_ACTOR,
    Action,
    CheckResult,
    ChecksBlocked,
    Controls,
    Decision,
    NotAllowed,
    PathRefused,
    PermitRefused,
    ReleaseRequest,
    RequestState,
    ReviewError,
    ReviewService,
    TamperedFile,
    TransitionRefused,
    Verdict,
)
from tre.settings import Settings

GBM = "gbm-linkage"  # alice (author), bob (member); two reviews; checkers olivia, oscar
HF = "hf-outcomes"  # carla, bob; one review; permit ends 2027-04-30
CONTROLS = Controls(population="GBM cohort 2015-2024", suppression="counts < 10 suppressed")


@dataclass
class FakeChecker:
    """Verdict from the content: BLOCK → block, FAIL → fail, otherwise pass."""

    calls: list[tuple[Path, str, str, list[Path]]] = field(default_factory=list)

    def kind_of(self, filename: str) -> str:
        return "table" if filename.endswith((".csv", ".tsv")) else "other"

    def check(
        self,
        path: Path,
        *,
        kind: str,
        profile: DisclosureProfile,
        project: str,
        earlier: Sequence[Path],
    ) -> CheckResult:
        self.calls.append((path, kind, profile.id, list(earlier)))
        data = path.read_bytes()
        if b"BLOCK" in data:
            verdict = Verdict.block
            checks = [{"check": "identifiers", "verdict": "block", "message": "pseudonym found"}]
        elif b"FAIL" in data:
            verdict, checks = Verdict.fail, [{"check": "threshold", "verdict": "fail"}]
        else:
            verdict, checks = Verdict.passed, []
        # The shape of tre.review.checks.FileChecks.model_dump().
        return CheckResult(
            verdict=verdict, detail={"verdict": str(verdict), "findings": checks, "summary": ""}
        )


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@dataclass
class Site:
    settings: Settings
    service: ReviewService
    checker: FakeChecker
    clock: Clock

    def workspace(self, project: str) -> Path:
        folder = self.settings.workspaces_dir / project
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def put(self, project: str, relative: str, content: bytes | str = b"a,b\n12,15\n") -> Path:
        path = self.workspace(project) / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    def audit(self, project: str) -> list[AuditRecord]:
        store = open_store(self.settings)
        return [r for _, r in store.db_rows(project) if r is not None]


@pytest.fixture
def site(tmp_path: Path, demo_policy: Policy) -> Iterator[Site]:
    settings = Settings(policy_dir=tmp_path / "unused", var_dir=tmp_path / "var")
    checker = FakeChecker()
    clock = Clock(datetime(DEMO_TODAY.year, DEMO_TODAY.month, DEMO_TODAY.day, 9, tzinfo=UTC))
    service = ReviewService(settings, lambda: demo_policy, checker, clock)
    yield Site(settings, service, checker, clock)
    service.close()


def make_request(
    site: Site,
    *,
    state: RequestState = RequestState.draft,
    project: str = GBM,
    author: str = "alice",
    files: Sequence[str] = ("out/table.csv",),
) -> ReleaseRequest:
    """A request of `author` with `files` (created in the workspace), brought to `state`."""
    svc = site.service
    req = svc.create_request(author, project, "Survival by MGMT status", "for the paper")
    for name in files:
        if not (site.workspace(project) / name).exists():
            site.put(project, name)
        req = svc.add_file(
            req.id, author, name, description="counts", context="Table 2", controls=CONTROLS
        )
    checkers = ["olivia", "oscar"][: req.reviews_required]
    steps: dict[RequestState, Callable[[], ReleaseRequest]] = {
        RequestState.submitted: lambda: svc.submit(req.id, author),
        RequestState.under_review: lambda: svc.start_review(req.id, "olivia"),
        RequestState.returned: lambda: svc.return_(req.id, "olivia", "round the counts"),
        RequestState.rejected: lambda: svc.reject(req.id, "olivia", "identifiable"),
        RequestState.approved: lambda: [svc.approve(req.id, c) for c in checkers][-1],
        RequestState.released: lambda: svc.release(req.id, author),
        RequestState.withdrawn: lambda: svc.withdraw(req.id, author, "wrong table"),
    }
    path = {
        RequestState.draft: [],
        RequestState.submitted: [RequestState.submitted],
        RequestState.under_review: [RequestState.submitted, RequestState.under_review],
        RequestState.returned: [RequestState.submitted, RequestState.returned],
        RequestState.rejected: [RequestState.submitted, RequestState.rejected],
        RequestState.approved: [RequestState.submitted, RequestState.approved],
        RequestState.released: [
            RequestState.submitted,
            RequestState.approved,
            RequestState.released,
        ],
        RequestState.withdrawn: [RequestState.withdrawn],
    }[state]
    for s in path:
        req = steps[s]()
    assert req.state is state
    return req


# -- the happy path ---------------------------------------------------------------


def test_two_reviews_then_release_every_step_audited(site: Site) -> None:
    svc = site.service
    site.put(GBM, "out/table.csv", "age,n\n<50,12\n>=50,30\n")
    site.put(GBM, "out/km.png", b"\x89PNG fake")
    req = svc.create_request("alice", GBM, "Survival tables", "Tables 2 and 3")
    assert (req.state, req.permit, req.reviews_required) == (
        RequestState.draft,
        "gbm-linkage-2026",
        2,
    )
    for name in ("out/table.csv", "out/km.png"):
        req = svc.add_file(req.id, "alice", name, description="d", context="c", controls=CONTROLS)
    table = req.file("table.csv")
    assert table is not None
    assert (table.kind, table.verdict, table.version, table.size) == ("table", "pass", 1, 21)
    assert table.stored_path == site.settings.releases_dir / GBM / req.id / "1" / "table.csv"
    assert table.stored_path.read_bytes() == b"age,n\n<50,12\n>=50,30\n"
    assert table.stored_path.stat().st_mode & 0o777 == 0o444
    # The checks ran on the stored copy, with the permit's disclosure profile.
    assert [(c[0], c[2]) for c in site.checker.calls] == [
        (table.stored_path, "acro-default"),
        (req.file("km.png").stored_path, "acro-default"),  # type: ignore[union-attr]
    ]

    req = svc.submit(req.id, "alice")
    assert req.state is RequestState.submitted
    assert [r.id for r in svc.list_for("olivia", "checker", my_turn=True)] == [req.id]
    req = svc.start_review(req.id, "olivia")
    req = svc.approve(req.id, "olivia")
    assert req.state is RequestState.under_review  # one of two
    assert req.missing_approvals() == {"table.csv": 1, "km.png": 1}
    with pytest.raises(TransitionRefused):
        svc.release(req.id, "alice")
    assert svc.list_for("olivia", "checker", my_turn=True) == []
    req = svc.approve(req.id, "oscar")
    assert req.state is RequestState.approved
    assert req.history[-1].step.actor == SYSTEM_ACTOR
    req = svc.release(req.id, "alice")
    assert req.state is RequestState.released
    assert svc.download(req.id, "table.csv", "alice") == b"age,n\n<50,12\n>=50,30\n"
    assert [r.file.name for r in svc.released_files(GBM)] == ["km.png", "table.csv"]

    actions = [h.step.action for h in req.history]
    assert actions == [
        Action.create,
        Action.add_file,
        Action.add_file,
        Action.submit,
        Action.start_review,
        Action.review,
        Action.review,
        Action.approve,
        Action.release,
    ]
    records = [r for r in site.audit(GBM) if r.kind.startswith("review_")]
    assert [r.kind for r in records] == [ACTION_EVENTS[a] for a in actions] + [
        EventKind.review_downloaded
    ]
    assert [r.actor for r in records] == [
        "alice", "alice", "alice", "alice", "olivia", "olivia", "oscar", SYSTEM_ACTOR,
        "alice", "alice",
    ]  # fmt: skip
    assert {r.permit for r in records} == {"gbm-linkage-2026"}
    assert all(r.detail["request"] == req.id for r in records)
    # A later file of the project is checked against what was released before.
    site.put(GBM, "out/table2.csv")
    later = svc.create_request("alice", GBM, "More", "")
    svc.add_file(
        later.id, "alice", "out/table2.csv", description="d", context="c", controls=CONTROLS
    )
    assert sorted(site.checker.calls[-1][3]) == sorted(f.stored_path for f in req.files)


def test_one_review_permit_approves_after_one_checker(site: Site) -> None:
    req = make_request(site, project=HF, author="carla", state=RequestState.submitted)
    assert req.reviews_required == 1
    req = site.service.approve(req.id, "olivia")  # starts the review itself
    assert req.state is RequestState.approved
    assert [h.step.action for h in req.history][-3:] == [
        Action.start_review,
        Action.review,
        Action.approve,
    ]


# -- who may review -------------------------------------------------------------------


@pytest.mark.security
@pytest.mark.parametrize("who", ["alice", "bob"])
def test_the_author_and_project_members_cannot_review(site: Site, who: str) -> None:
    req = make_request(site, state=RequestState.under_review)
    for act in (
        lambda: site.service.approve(req.id, who),
        lambda: site.service.reject(req.id, who, "no"),
        lambda: site.service.return_(req.id, who, "no"),
    ):
        with pytest.raises(TransitionRefused):
            act()
    assert site.service.get(req.id, "alice").reviews == ()


@pytest.mark.security
def test_an_author_who_is_also_a_checker_cannot_review_their_own_request(
    tmp_path: Path, demo_policy: Policy
) -> None:
    """Olivia is a site checker; given a permit of her own she writes a request and may
    not approve it, even though she is not a member of the project."""
    permit = demo_policy.permit("hf-outcomes-2026")
    assert permit is not None
    policy = demo_policy.model_copy(
        update={
            "permits": tuple(
                p.model_copy(update={"people": (*p.people, "olivia")}) if p is permit else p
                for p in demo_policy.permits
            )
        }
    )
    settings = Settings(policy_dir=tmp_path, var_dir=tmp_path / "var")
    clock = Clock(datetime(2026, 11, 23, 9, tzinfo=UTC))
    svc = ReviewService(settings, lambda: policy, FakeChecker(), clock)
    (settings.workspaces_dir / HF).mkdir(parents=True)
    (settings.workspaces_dir / HF / "t.csv").write_text("a\n1\n")
    req = svc.create_request("olivia", HF, "mine", "")
    svc.add_file(req.id, "olivia", "t.csv", description="d", context="c", controls=CONTROLS)
    svc.submit(req.id, "olivia")
    with pytest.raises(TransitionRefused, match="'olivia' wrote this request"):
        svc.approve(req.id, "olivia")
    assert svc.list_for("olivia", "checker") == []
    assert svc.approve(req.id, "oscar").state is RequestState.approved
    svc.close()


@pytest.mark.security
@pytest.mark.parametrize("who", ["carla", "adam", "pat", "nobody"])
def test_only_eligible_checkers_review(site: Site, who: str) -> None:
    req = make_request(site, state=RequestState.submitted)
    with pytest.raises(TransitionRefused, match="only the checker"):
        site.service.approve(req.id, who)
    with pytest.raises(NotAllowed):
        site.service.get(req.id, who)


def test_the_same_checker_twice_counts_once(site: Site) -> None:
    req = make_request(site, state=RequestState.under_review)
    site.service.approve(req.id, "olivia")
    req = site.service.approve(req.id, "olivia")
    assert req.state is RequestState.under_review
    assert req.approvers("table.csv") == {"olivia"}
    assert len(req.reviews) == 1  # a double click is recorded once
    # Two per-file approvals by one checker still make one approver.
    req = make_request(site, state=RequestState.under_review, files=["a.csv", "b.csv"])
    site.service.approve(req.id, "olivia", file="a.csv")
    req = site.service.approve(req.id, "olivia")
    assert req.state is RequestState.under_review
    assert req.missing_approvals() == {"a.csv": 1, "b.csv": 1}


def test_every_file_needs_its_approvals(site: Site) -> None:
    req = make_request(site, state=RequestState.under_review, files=["a.csv", "b.csv"])
    for checker in ("olivia", "oscar"):
        req = site.service.approve(req.id, checker, file="a.csv")
    assert req.state is RequestState.under_review
    assert req.missing_approvals() == {"b.csv": 2}
    site.service.approve(req.id, "oscar", file="b.csv")
    assert site.service.approve(req.id, "olivia", file="b.csv").state is RequestState.approved


# -- changing files -------------------------------------------------------------------


def test_changing_a_file_resets_its_reviews_and_reopens_an_approved_request(site: Site) -> None:
    req = make_request(site, state=RequestState.approved, files=["a.csv", "b.csv"])
    first = req.file("a.csv")
    assert first is not None
    site.put(GBM, "a.csv", "a,b\n20,25\n")
    req = site.service.add_file(
        req.id, "alice", "a.csv", description="rounded", context="c", controls=CONTROLS
    )
    assert req.state is RequestState.under_review
    changed = req.file("a.csv")
    assert changed is not None and changed.version == 2
    assert req.approvers("a.csv") == frozenset()
    assert req.approvers("b.csv") == {"olivia", "oscar"}
    assert req.history[-1].step.detail["reviews_reset"] == ["olivia", "oscar"]
    # The first version's copy is still there, unchanged.
    assert first.stored_path.read_bytes() == b"a,b\n12,15\n"
    with pytest.raises(TransitionRefused):
        site.service.release(req.id, "alice")
    site.service.approve(req.id, "olivia", file="a.csv")
    req = site.service.approve(req.id, "oscar", file="a.csv")
    assert req.state is RequestState.approved


def test_adding_the_same_file_again_changes_nothing(site: Site) -> None:
    req = make_request(site, state=RequestState.under_review)
    site.service.approve(req.id, "olivia")
    again = site.service.add_file(
        req.id, "alice", "out/table.csv", description="counts", context="Table 2", controls=CONTROLS
    )
    assert again.file("table.csv").version == 1  # type: ignore[union-attr]
    assert again.approvers("table.csv") == {"olivia"}
    stored = again.file("table.csv")
    assert stored is not None
    assert sorted(p.name for p in stored.stored_path.parent.parent.iterdir()) == [".lock", "1"]


def test_two_files_with_one_name_from_different_folders_are_refused(site: Site) -> None:
    req = make_request(site, files=["a/t.csv"])
    site.put(GBM, "b/t.csv")
    with pytest.raises(ReviewError, match="already has a file of this name"):
        site.service.add_file(
            req.id, "alice", "b/t.csv", description="d", context="c", controls=CONTROLS
        )


# -- reasons, terminal states, release --------------------------------------------------


@pytest.mark.parametrize("decision", [Decision.return_, Decision.reject])
def test_return_and_reject_need_a_reason(site: Site, decision: Decision) -> None:
    req = make_request(site, state=RequestState.under_review)
    with pytest.raises(TransitionRefused, match="reason"):
        site.service.review(req.id, "olivia", decision, "  ")
    req = site.service.review(req.id, "olivia", decision, "cell of 3 in row 2")
    assert req.history[-1].step.reason == "cell of 3 in row 2"
    audited = site.audit(GBM)[-1]
    assert (audited.actor, audited.detail["reason"]) == ("olivia", "cell of 3 in row 2")


@pytest.mark.parametrize("state", [RequestState.withdrawn, RequestState.rejected])
def test_withdrawn_and_rejected_are_terminal(site: Site, state: RequestState) -> None:
    req = make_request(site, state=state)
    svc = site.service
    for act in (
        lambda: svc.submit(req.id, "alice"),
        lambda: svc.add_file(
            req.id, "alice", "out/table.csv", description="d", context="c", controls=CONTROLS
        ),
        lambda: svc.approve(req.id, "olivia"),
        lambda: svc.release(req.id, "alice"),
        lambda: svc.withdraw(req.id, "alice"),
        lambda: svc.comment(req.id, "olivia", "table.csv", "hm"),
    ):
        with pytest.raises(TransitionRefused, match="nothing more can happen"):
            act()
    assert svc.get(req.id, "alice").state is state


@pytest.mark.parametrize(
    "state",
    [RequestState.draft, RequestState.submitted, RequestState.under_review, RequestState.returned],
)
def test_release_only_after_approval(site: Site, state: RequestState) -> None:
    req = make_request(site, state=state)
    with pytest.raises(TransitionRefused):
        site.service.release(req.id, "alice")
    with pytest.raises(NotAllowed):
        site.service.download(req.id, "table.csv", "alice")


@pytest.mark.security
def test_only_the_author_downloads_released_files(site: Site) -> None:
    req = make_request(site, state=RequestState.released)
    for who in ("bob", "olivia", "adam"):
        with pytest.raises(NotAllowed):
            site.service.download(req.id, "table.csv", who)
    assert site.service.download(req.id, "table.csv", "alice") == b"a,b\n12,15\n"


def test_returned_request_is_fixed_and_submitted_again(site: Site) -> None:
    req = make_request(site, state=RequestState.returned)
    site.service.comment(req.id, "olivia", "table.csv", "Round to 5")
    site.put(GBM, "out/table.csv", "a,b\n10,15\n")
    site.service.add_file(
        req.id, "alice", "out/table.csv", description="d", context="c", controls=CONTROLS
    )
    req = site.service.submit(req.id, "alice")
    assert req.state is RequestState.submitted
    assert [(c.author, c.file, c.version) for c in req.comments] == [("olivia", "table.csv", 1)]
    assert [r.id for r in site.service.list_for("alice", "author")] == [req.id]


@pytest.mark.security
def test_a_blocked_file_can_be_submitted_but_never_approved(site: Site) -> None:
    site.put(GBM, "ids.csv", "pseudonym\nBLOCK-123\n")
    req = make_request(site, files=["ids.csv", "ok.csv"], state=RequestState.submitted)
    assert req.blocked_files() == {"ids.csv": "pseudonym found"}
    with pytest.raises(ChecksBlocked, match=r"ids\.csv: pseudonym found"):
        site.service.approve(req.id, "olivia")
    with pytest.raises(ChecksBlocked):
        site.service.approve(req.id, "olivia", file="ids.csv")
    site.service.approve(req.id, "olivia", file="ok.csv")
    req = site.service.approve(req.id, "oscar", file="ok.csv")
    assert req.state is RequestState.under_review
    assert site.service.return_(req.id, "olivia", "remove the ids").state is RequestState.returned


def test_every_transition_is_in_the_history_and_the_audit(site: Site) -> None:
    req = make_request(site, state=RequestState.returned)
    req = site.service.withdraw(req.id, "alice", "will redo")
    records = [r for r in site.audit(GBM) if r.kind.startswith("review_")]
    assert len(records) == len(req.history)
    for entry, record in zip(req.history, records, strict=True):
        step = entry.step
        assert record.kind == ACTION_EVENTS[step.action]
        assert (record.actor, record.at) == (step.actor, step.at)
        assert (record.detail["from"], record.detail["to"]) == (step.from_state, step.to_state)
        assert record.detail["reason"] == step.reason
        assert (record.project, record.permit) == (GBM, "gbm-linkage-2026")
    assert records[-1].detail["reason"] == "will redo"
    # The same history survives a fresh read from the database.
    assert site.service.get(req.id, "alice").history == req.history


@pytest.mark.security
def test_an_action_the_audit_cannot_record_does_not_happen(site: Site) -> None:
    req = make_request(site)

    class Broken:
        def append(self, event: object) -> object:
            raise OSError("audit disk full")

    site.service.audit = Broken()
    with pytest.raises(OSError, match="disk full"):
        site.service.submit(req.id, "alice")
    assert site.service.get(req.id, "alice").state is RequestState.draft


# -- permits ------------------------------------------------------------------------------


def test_an_expired_permit_cannot_create_or_submit(site: Site) -> None:
    req = make_request(site, project=HF, author="carla")
    site.clock.now = datetime(2027, 5, 1, 9, tzinfo=UTC)
    with pytest.raises(PermitRefused, match="expired"):
        site.service.submit(req.id, "carla")
    with pytest.raises(PermitRefused, match="expired"):
        site.service.create_request("carla", HF, "late", "")
    with pytest.raises(PermitRefused):
        site.service.add_file(
            req.id, "carla", "out/table.csv", description="d", context="c", controls=CONTROLS
        )
    assert site.service.get(req.id, "carla").state is RequestState.draft


def test_no_permit_no_request(site: Site) -> None:
    with pytest.raises(PermitRefused, match="no current permit names 'carla'"):
        site.service.create_request("carla", GBM, "not mine", "")


# -- files out of the workspace -----------------------------------------------------------


@pytest.mark.security
@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("/etc/passwd", "absolute"),
        ("../hf-outcomes/secret.csv", r"'\.\.'"),
        ("out/../../hf-outcomes/secret.csv", r"'\.\.'"),
        ("", "empty"),
        ("out/\x00x", "NUL"),
        ("missing.csv", "does not exist"),
        ("out", "not a regular file|not a folder|symbolic|regular"),
    ],
)
def test_paths_that_leave_the_workspace_are_refused(site: Site, path: str, why: str) -> None:
    site.put(HF, "secret.csv", "x\n")
    site.put(GBM, "out/table.csv")
    req = make_request(site, files=[])
    with pytest.raises(PathRefused, match=why):
        site.service.add_file(
            req.id, "alice", path, description="d", context="c", controls=CONTROLS
        )
    assert site.service.get(req.id, "alice").files == ()


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A /data-like folder outside the workspace, with a file that must never leave."""
    data = tmp_path / "data" / "clinical-records" / "1"
    data.mkdir(parents=True)
    (data / "patients.csv").write_text("pseudonym,dob\nP-1,1950-01-01\n")
    return data


@pytest.mark.security
@pytest.mark.parametrize(
    "plant",
    [
        "file-link",  # out/table.csv -> /data/.../patients.csv
        "dir-link",  # out -> /data/...
        "deep-dir-link",  # a/b -> /data/..., asked for a/b/patients.csv
        "relative-link",  # out/t.csv -> ../../../data/.../patients.csv
        "link-to-workspace-file",  # even a link inside the workspace is not followed
    ],
)
def test_symlinks_anywhere_in_the_path_are_refused(site: Site, outside: Path, plant: str) -> None:
    ws = site.workspace(GBM)
    req = make_request(site, files=[])
    target = outside / "patients.csv"
    if plant == "file-link":
        (ws / "out").mkdir()
        (ws / "out" / "table.csv").symlink_to(target)
        path = "out/table.csv"
    elif plant == "dir-link":
        (ws / "out").symlink_to(outside, target_is_directory=True)
        path = "out/patients.csv"
    elif plant == "deep-dir-link":
        (ws / "a").mkdir()
        (ws / "a" / "b").symlink_to(outside, target_is_directory=True)
        path = "a/b/patients.csv"
    elif plant == "relative-link":
        (ws / "out").mkdir()
        (ws / "out" / "t.csv").symlink_to(os.path.relpath(target, ws / "out"))
        path = "out/t.csv"
    else:
        (ws / "real.csv").write_text("a\n1\n")
        (ws / "t.csv").symlink_to("real.csv")
        path = "t.csv"
    with pytest.raises(PathRefused, match="symbolic link"):
        site.service.add_file(
            req.id, "alice", path, description="d", context="c", controls=CONTROLS
        )
    assert site.service.get(req.id, "alice").files == ()
    assert not any(p.is_file() for p in site.settings.releases_dir.rglob("*") if p.name != ".lock")


@pytest.mark.security
def test_the_project_folder_itself_may_not_be_a_link(site: Site, outside: Path) -> None:
    req = make_request(site, files=[])
    site.settings.workspaces_dir.mkdir(parents=True, exist_ok=True)
    site.settings.workspaces_dir.joinpath(GBM).symlink_to(outside, target_is_directory=True)
    with pytest.raises(PathRefused, match="symbolic link"):
        site.service.add_file(
            req.id, "alice", "patients.csv", description="d", context="c", controls=CONTROLS
        )


@pytest.mark.security
def test_hard_links_fifos_and_large_files_are_refused(site: Site, outside: Path) -> None:
    ws = site.workspace(GBM)
    req = make_request(site, files=[])
    os.link(site.put(GBM, "mine.csv"), ws / "linked.csv")
    os.mkfifo(ws / "pipe.csv")
    site.put(GBM, "big.csv", b"x" * 2048)
    site.service.max_file_bytes = 1024
    for path, why in [
        ("linked.csv", "hard links"),
        ("pipe.csv", "not a regular file"),
        ("big.csv", "over the limit"),
    ]:
        with pytest.raises(PathRefused, match=why):
            site.service.add_file(
                req.id, "alice", path, description="d", context="c", controls=CONTROLS
            )


# -- the stored copy ------------------------------------------------------------------------


@pytest.mark.security
def test_a_tampered_stored_copy_stops_submission_and_release(site: Site) -> None:
    req = make_request(site)
    copy = req.file("table.csv").stored_path  # type: ignore[union-attr]
    copy.chmod(0o644)
    copy.write_bytes(b"a,b\n1,2\n")
    with pytest.raises(TamperedFile, match=r"table\.csv"):
        site.service.submit(req.id, "alice")

    req = make_request(site, state=RequestState.approved, files=["other.csv"])
    copy = req.file("other.csv").stored_path  # type: ignore[union-attr]
    copy.unlink()
    copy.write_bytes(b"a,b\n1,2\n")
    with pytest.raises(TamperedFile, match=r"other\.csv"):
        site.service.release(req.id, "alice")
    assert site.service.get(req.id, "alice").state is RequestState.approved


def test_changing_the_workspace_file_later_changes_nothing_stored(site: Site) -> None:
    req = make_request(site, state=RequestState.released)
    site.put(GBM, "out/table.csv", "a,b\n1,2\n")
    assert site.service.download(req.id, "table.csv", "alice") == b"a,b\n12,15\n"


@pytest.mark.security
def test_two_checkers_approving_at_once_approve_once(site: Site, demo_policy: Policy) -> None:
    req = make_request(site, state=RequestState.under_review)
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def approve(checker: str) -> None:
        mine = ReviewService(site.settings, lambda: demo_policy, FakeChecker(), site.clock)
        try:
            barrier.wait()
            mine.approve(req.id, checker)
        except BaseException as exc:
            errors.append(exc)
        finally:
            mine.close()

    threads = [threading.Thread(target=approve, args=(c,)) for c in ("olivia", "oscar") * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    done = site.service.get(req.id, "alice")
    assert done.state is RequestState.approved
    assert [h.step.action for h in done.history].count(Action.approve) == 1
    assert sorted(r.checker for r in done.reviews) == ["olivia", "oscar"]


# -- queues ---------------------------------------------------------------------------------


def test_checker_queue_filters(site: Site) -> None:
    draft = make_request(site)
    gbm = make_request(site, state=RequestState.submitted)
    site.clock.now += timedelta(days=3)
    hf = make_request(site, project=HF, author="carla", state=RequestState.under_review)
    ids = lambda rs: [r.id for r in rs]  # noqa: E731
    assert ids(site.service.list_for("oscar", "checker")) == [gbm.id, hf.id]
    assert draft.id not in ids(site.service.list_for("oscar", "checker"))
    assert ids(site.service.list_for("oscar", "checker", project=HF)) == [hf.id]
    assert ids(site.service.list_for("oscar", "checker", state=RequestState.submitted)) == [gbm.id]
    assert ids(site.service.list_for("oscar", "checker", older_than=timedelta(days=2))) == [gbm.id]
    assert ids(site.service.list_for("olivia", "checker", my_turn=True)) == [gbm.id, hf.id]
    assert ids(site.service.list_for("bob", "checker")) == []
    assert ids(site.service.list_for("alice", "author", my_turn=True)) == [draft.id]


# -- the real checks ------------------------------------------------------------------------


def test_the_real_checks_run_on_the_stored_copy(tmp_path: Path, demo_policy: Policy) -> None:
    settings = Settings(policy_dir=tmp_path, var_dir=tmp_path / "var")
    svc = ReviewService(
        settings, lambda: demo_policy, clock=Clock(datetime(2026, 11, 23, 9, tzinfo=UTC))
    )
    folder = settings.workspaces_dir / GBM
    folder.mkdir(parents=True)
    (folder / "t.csv").write_text("group,n\na,3\nb,40\n")
    req = svc.create_request("alice", GBM, "t", "")
    req = svc.add_file(req.id, "alice", "t.csv", description="d", context="c", controls=CONTROLS)
    f = req.file("t.csv")
    assert f is not None and f.kind == "table"
    assert f.checks is not None and f.verdict in set(Verdict)
    assert f.verdict is not Verdict.passed  # a cell of 3 is under every threshold


def test_a_real_block_names_the_identifier_finding(tmp_path: Path, demo_policy: Policy) -> None:
    settings = Settings(policy_dir=tmp_path, var_dir=tmp_path / "var")
    svc = ReviewService(
        settings, lambda: demo_policy, clock=Clock(datetime(2026, 11, 23, 9, tzinfo=UTC))
    )
    folder = settings.workspaces_dir / GBM
    folder.mkdir(parents=True)
    (folder / "dob.csv").write_text("date_of_birth,n\n1961-04-02,12\n1958-11-30,15\n")
    req = svc.create_request("alice", GBM, "t", "")
    req = svc.add_file(req.id, "alice", "dob.csv", description="d", context="c", controls=CONTROLS)
    reason = req.blocked_files()["dob.csv"]
    assert "birth" in reason.lower(), reason
    svc.close()
    svc.close()
