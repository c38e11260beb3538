"""Boundary: the public side. pat, a patients' representative, reads the published summaries
and nothing that was not released: no workspace, no review page or file, no release that
is approved but not released, no hub administration (controls: `tre.hub.roles` — the
`tre-patient-rep` role holds `access:services!service=tre-summaries` only — and
`tre.publish.build`, which builds the summaries from released outputs alone).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.sites import PROJECT
from tests.security.support import (
    REVIEW,
    SUITE_MARKS,
    SUMMARIES,
    Attempt,
    Parties,
    ids,
    workspace_folder_file,
)
from tre.publish.build import current_build

pytestmark = SUITE_MARKS

PUBLISHED = "grade,patients\nPUBLISHEDROW,28\nIII,71\n"
UNRELEASED = "grade,patients\nUNRELEASEDROW,33\nIII,40\n"


@dataclass(frozen=True)
class Outputs:
    released: str
    approved: str
    submitted: str


@pytest.fixture(scope="module")
def outputs(parties: Parties) -> Outputs:
    site = parties.site
    workspace_folder_file(site, PROJECT, "pub.csv", PUBLISHED)
    workspace_folder_file(site, PROJECT, "unpub.csv", UNRELEASED)
    released = parties.new_request("patients: released", ("pub.csv",))
    approved = parties.new_request("patients: approved only", ("unpub.csv",))
    submitted = parties.new_request("patients: submitted only", ("unpub.csv",))
    for rid in (released, approved):
        parties.approve(rid, "olivia")
        parties.approve(rid, "oscar")
    answer = parties.review_api(parties.alice.token, "POST", f"/requests/{released}/release")
    assert answer.status_code == 200, answer.text
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:  # the summaries service rebuilds every 5 s here
        build = current_build(site.settings)
        if build is not None and "PUBLISHEDROW" in published_text(build):
            return Outputs(released, approved, submitted)
        time.sleep(1)
    raise AssertionError("the release was not published within 90 s")


def published_text(build: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in sorted(build.rglob("*")) if p.is_file())


def test_the_published_summaries_hold_released_outputs_only(
    parties: Parties, outputs: Outputs
) -> None:
    build = current_build(parties.site.settings)
    assert build is not None
    text = published_text(build)
    assert "PUBLISHEDROW" in text  # control: the release is there
    assert "UNRELEASEDROW" not in text
    assert outputs.approved not in text and outputs.submitted not in text


def test_pat_reads_the_summaries(parties: Parties, outputs: Outputs) -> None:
    """Control: pat's login works and reaches what she may read."""
    page = parties["pat"].get(f"{SUMMARIES}/voila/render/{PROJECT}.ipynb", allow_redirects=True)
    assert page.status_code == 200, page.text[:300]
    assert "UNRELEASEDROW" not in page.text


def attempts(out: Outputs) -> list[Attempt]:
    return [
        Attempt("spawn-form", "GET", f"/hub/spawn/pat/{PROJECT}"),
        Attempt("start-a-server-by-api", "POST", "/hub/api/users/pat/servers/x"),
        Attempt("alices-workspace", "GET", f"/user/alice/{PROJECT}/api/contents/unpub.csv"),
        Attempt("review-home", "GET", f"{REVIEW}/"),
        Attempt("review-queue", "GET", f"{REVIEW}/queue"),
        Attempt("approved-request-page", "GET", f"{REVIEW}/requests/{out.approved}"),
        Attempt("approved-request-api", "GET", f"{REVIEW}/api/requests/{out.approved}"),
        Attempt("approved-stored-file", "GET", f"{REVIEW}/requests/{out.approved}/files/unpub.csv"),
        Attempt(
            "submitted-stored-file", "GET", f"{REVIEW}/requests/{out.submitted}/files/unpub.csv"
        ),
        Attempt("approved-as-a-release", "GET", f"{REVIEW}/released/{out.approved}/unpub.csv"),
        Attempt("released-file-not-hers", "GET", f"{REVIEW}/released/{out.released}/pub.csv"),
        Attempt("hub-user-list", "GET", "/hub/api/users"),
        Attempt("hub-admin-page", "GET", "/hub/admin"),
        Attempt("mint-a-token", "POST", "/hub/api/users/pat/tokens"),
    ]


ATTEMPT_IDS = ids(attempts(Outputs("r", "a", "s")))


@pytest.mark.parametrize("index", range(len(ATTEMPT_IDS)), ids=ATTEMPT_IDS)
def test_pat_reaches_nothing_unreleased(parties: Parties, outputs: Outputs, index: int) -> None:
    attempt = attempts(outputs)[index]
    pat = parties["pat"]
    headers = {"X-XSRFToken": pat.xsrf("/hub/")}
    answer = pat.session.request(
        attempt.method, pat.url(attempt.path), headers=headers, timeout=60, allow_redirects=True
    )
    body = answer.text
    assert answer.status_code in (401, 403, 404) or "/hub/login" in answer.url, (
        answer.status_code,
        answer.url,
        body[:300],
    )
    for never in ("UNRELEASEDROW", "PUBLISHEDROW", "alice@"):
        assert never not in body, never
    assert pat.server("x") is None
