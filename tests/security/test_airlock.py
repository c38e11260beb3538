"""Boundary: the airlock, the only way out. Nothing is released without the approvals the
permit asks for (gbm-linkage: two), nobody approves their own request, only the author
downloads, only from a browser, only the copy the checkers saw (controls:
`tre.review.states` transitions table and parties, `tre.review.service.release`/`download`,
`tre.review.web.visibility`, `ReleasedFile.browser_only`).

Requests are made through the real API with alice's workspace token and decided through
the review pages in olivia's and oscar's browser sessions.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.security.support import (
    CONTROLS,
    PASSING,
    REVIEW,
    SUITE_MARKS,
    Parties,
    plain_session,
    workspace_folder_file,
)

pytestmark = SUITE_MARKS

SWAPPED = "grade,patients\nII,3\nIII,1\nIV,2\n"


@dataclass(frozen=True)
class Requests:
    submitted: str
    one_approval: str
    approved: str
    released: str


@pytest.fixture(scope="module")
def reqs(parties: Parties) -> Requests:
    site = parties.site
    submitted = parties.new_request("airlock: submitted only")
    one = parties.new_request("airlock: one approval of two")
    parties.approve(one, "olivia")
    approved = parties.new_request("airlock: approved, not released")
    parties.approve(approved, "olivia")
    parties.approve(approved, "oscar")
    swap = workspace_folder_file(site, "gbm-linkage", "swap.csv", PASSING)
    released = parties.new_request("airlock: released", ("swap.csv",))
    parties.approve(released, "olivia")
    parties.approve(released, "oscar")
    # After the approvals, the researcher changes the file in the workspace.
    swap.write_text(SWAPPED, encoding="utf-8")
    answer = parties.review_api(parties.alice.token, "POST", f"/requests/{released}/release")
    assert answer.status_code == 200, answer.text
    return Requests(submitted, one, approved, released)


def test_the_states_are_what_the_attacks_assume(parties: Parties, reqs: Requests) -> None:
    """Control: each request is where the attacks below start from."""
    assert parties.state(reqs.submitted)["state"] == "submitted"
    one = parties.state(reqs.one_approval)
    assert one["state"] == "under_review" and one["missing_approvals"] == {"ok.csv": 1}
    assert parties.state(reqs.approved)["state"] == "approved"
    assert parties.state(reqs.released)["state"] == "released"


def test_release_without_any_approval_is_refused(parties: Parties, reqs: Requests) -> None:
    answer = parties.review_api(parties.alice.token, "POST", f"/requests/{reqs.submitted}/release")
    assert answer.status_code == 409, answer.text
    assert parties.state(reqs.submitted)["state"] == "submitted"


def test_release_with_one_approval_where_two_are_required_is_refused(
    parties: Parties, reqs: Requests
) -> None:
    rid = reqs.one_approval
    answer = parties.review_api(parties.alice.token, "POST", f"/requests/{rid}/release")
    assert answer.status_code == 409, answer.text
    by_page = parties.review_form("alice", f"/requests/{rid}/release", {})
    assert by_page.status_code == 409, by_page.text[:300]
    assert parties.state(rid)["state"] == "under_review"


def test_the_same_checker_approving_twice_is_not_two_reviews(
    parties: Parties, reqs: Requests
) -> None:
    rid = reqs.one_approval
    again = parties.review_form("olivia", f"/requests/{rid}/decide", {"decision": "approve"})
    assert again.status_code in (200, 409), again.text[:300]  # a double click: counted once
    after = parties.state(rid)
    assert after["state"] == "under_review"
    assert after["files"][0]["approvers"] == ["olivia"]


def test_the_author_cannot_approve_with_the_workspace_token(
    parties: Parties, reqs: Requests
) -> None:
    rid = reqs.one_approval
    answer = parties.review_api(parties.alice.token, "POST", f"/requests/{rid}/approve", {})
    assert answer.status_code == 403, answer.text
    assert "custom:review:check" in answer.json()["message"]
    assert parties.state(rid)["files"][0]["approvers"] == ["olivia"]


def test_the_author_cannot_approve_through_the_review_pages(
    parties: Parties, reqs: Requests
) -> None:
    rid = reqs.one_approval
    by_form = parties.review_form("alice", f"/requests/{rid}/decide", {"decision": "approve"})
    assert by_form.status_code == 403, by_form.text[:300]
    alice = parties["alice"]
    page = parties.review_page("alice", f"/requests/{rid}")
    xsrf = alice.xsrf(REVIEW + "/")
    by_api = alice.session.post(
        alice.url(f"{REVIEW}/api/requests/{rid}/approve"),
        json={},
        headers={"X-XSRFToken": xsrf},
        timeout=60,
    )
    assert page.status_code == 200
    assert by_api.status_code == 403, by_api.text
    assert parties.state(rid)["files"][0]["approvers"] == ["olivia"]


def test_a_project_member_cannot_release_the_authors_request(
    parties: Parties, reqs: Requests
) -> None:
    answer = parties.review_form("bob", f"/requests/{reqs.approved}/release", {})
    assert answer.status_code in (403, 409), answer.text[:300]
    assert parties.state(reqs.approved)["state"] == "approved"


def test_a_file_added_after_approval_is_not_released_unreviewed(parties: Parties) -> None:
    """Adding a file to an approved request is allowed, and reopens the review: the new file
    needs its own approvals before anything is released."""
    rid = parties.new_request("airlock: a file slipped in after approval")
    parties.approve(rid, "olivia")
    parties.approve(rid, "oscar")
    assert parties.state(rid)["state"] == "approved"
    body = {"path": "swap.csv", "description": "d", "context": "c", "controls": CONTROLS}
    added = parties.review_api(parties.alice.token, "POST", f"/requests/{rid}/files", body)
    assert added.status_code in (201, 409), added.text
    released = parties.review_api(parties.alice.token, "POST", f"/requests/{rid}/release")
    if added.status_code == 201:
        assert released.status_code == 409, released.text
        after = parties.state(rid)
        assert after["state"] == "under_review"
        assert after["missing_approvals"] == {"swap.csv": 2}
    else:
        assert released.status_code == 200, released.text
        assert [f["name"] for f in parties.state(rid)["files"]] == ["ok.csv"]


def test_nothing_downloads_before_release(parties: Parties, reqs: Requests) -> None:
    for rid in (reqs.submitted, reqs.one_approval, reqs.approved):
        answer = parties.review_page("alice", f"/released/{rid}/ok.csv")
        assert answer.status_code == 403, (rid, answer.status_code)
        assert "II,28" not in answer.text
        stored = parties.review_page("alice", f"/requests/{rid}/files/ok.csv")
        assert stored.status_code == 403, (rid, stored.status_code)  # the copy, in a browser


def test_the_author_downloads_the_copy_the_checkers_approved(
    parties: Parties, reqs: Requests
) -> None:
    """Control (the path exists) and an attack: the file was changed after approval."""
    answer = parties.review_page("alice", f"/released/{reqs.released}/swap.csv")
    assert answer.status_code == 200, answer.text[:300]
    assert answer.text == PASSING  # not SWAPPED: the service's own copy
    assert answer.headers["Content-Disposition"].startswith("attachment")


@pytest.mark.parametrize("who", ["bob", "olivia", "oscar", "carla", "adam", "pat"])
def test_nobody_but_the_author_downloads_a_release(
    parties: Parties, reqs: Requests, who: str
) -> None:
    answer = parties.review_page(who, f"/released/{reqs.released}/swap.csv")
    assert answer.status_code in (401, 403), (answer.status_code, answer.text[:300])
    assert "II,28" not in answer.text


def test_a_release_does_not_download_into_a_workspace(parties: Parties, reqs: Requests) -> None:
    """The author's workspace token on the service's gateway port: browser only."""
    base = parties.review_api_base.removesuffix("/api")
    answer = plain_session().get(
        f"{base}{REVIEW}/released/{reqs.released}/swap.csv",
        headers={"Authorization": f"token {parties.alice.token}"},
        timeout=60,
    )
    assert answer.status_code == 403, answer.text[:300]
    assert "II,28" not in answer.text
