"""Boundary: between projects. carla, a researcher of hf-outcomes with her own workspace
running, reaches nothing of gbm-linkage: not alice's server, its folder, its requests or
releases, its container (controls: JupyterHub's `access:servers!user` only for one's own
servers, `tre.hub.plan.check_spawn`, one internal network per project plus the host
firewall, `tre.review.parties`/`visibility` and `WorkspaceIdentifier` tying a token to
its server's project).
"""

from __future__ import annotations

import pytest

from tests.e2e.sites import PROJECT
from tests.security.support import (
    CONTROLS,
    OTHER_PROJECT,
    OTHER_SECRET,
    SUITE_MARKS,
    Attempt,
    Parties,
    ids,
    plain_session,
)

pytestmark = SUITE_MARKS


@pytest.fixture(scope="module")
def gbm_request(parties: Parties) -> str:
    return parties.new_request("cross-project: gbm only")


def test_carla_works_in_her_own_project(parties: Parties) -> None:
    """Control: her workspace runs, sees its own folder, and her token works on her server."""
    listing = parties.carla.run_json(
        "import json, os; print(json.dumps(sorted(os.listdir('/home/researcher/work'))))"
    )
    assert "carla-secret.csv" in listing and "ok.csv" not in listing
    own = plain_session().get(
        parties["carla"].url(f"/user/carla/{OTHER_PROJECT}/api/contents"),
        headers={"Authorization": f"token {parties.carla.token}"},
        timeout=60,
    )
    assert own.status_code == 200, own.text[:200]


@pytest.mark.parametrize("credential", ["browser-session", "server-token"])
def test_carla_cannot_open_alices_server(parties: Parties, credential: str) -> None:
    url = parties["carla"].url(f"/user/alice/{PROJECT}/api/contents/ok.csv?content=1")
    if credential == "browser-session":
        answer = parties["carla"].session.get(url, timeout=60, allow_redirects=True)
    else:
        headers = {"Authorization": f"token {parties.carla.token}"}
        answer = plain_session().get(url, headers=headers, timeout=60, allow_redirects=False)
    assert "II,28" not in answer.text
    assert answer.status_code in (302, 403, 404) or "/hub/" in answer.url, answer.status_code


def test_alices_folder_is_not_in_carlas_workspace(parties: Parties) -> None:
    host_path = parties.site.settings.workspaces_dir / PROJECT / "ok.csv"
    assert host_path.is_file()
    outcome = parties.carla.run(
        "import errno\n"
        "try:\n"
        f"    print('read', open({str(host_path)!r}).read()[:20])\n"
        "except OSError as e:\n"
        "    print('refused', errno.errorcode[e.errno])\n"
    )
    assert outcome.strip() == "refused ENOENT"


def test_carla_cannot_start_a_gbm_linkage_workspace(parties: Parties) -> None:
    carla = parties["carla"]
    answer = carla.api("POST", "/users/carla/servers/gbm", json={"project": PROJECT})
    assert answer.status_code >= 400, answer.text
    server = carla.server("gbm")
    assert server is None or not server.get("ready")


REVIEW_CALLS = [
    Attempt("read-the-request", "GET", "/requests/{rid}"),
    Attempt(
        "add-a-file-to-it",
        "POST",
        "/requests/{rid}/files",
        {"path": "carla-secret.csv", "description": "d", "context": "c", "controls": CONTROLS},
    ),
    Attempt("withdraw-it", "POST", "/requests/{rid}/withdraw"),
    Attempt("comment-on-it", "POST", "/requests/{rid}/comments", {"file": "ok.csv", "text": "x"}),
]


@pytest.mark.parametrize("attempt", REVIEW_CALLS, ids=ids(REVIEW_CALLS))
def test_carlas_workspace_cannot_touch_gbm_requests(
    parties: Parties, gbm_request: str, attempt: Attempt
) -> None:
    body = attempt.kwargs or None
    answer = parties.review_api(
        parties.carla.token, attempt.method, attempt.path.format(rid=gbm_request), body
    )
    assert answer.status_code in (403, 404, 409), (answer.status_code, answer.text[:300])
    assert "II,28" not in answer.text
    after = parties.state(gbm_request)
    assert after["state"] == "submitted" and [f["name"] for f in after["files"]] == ["ok.csv"]
    assert "carla" not in str(after.get("history", "")) + str(after["files"])


def test_carlas_list_of_requests_holds_no_gbm_request(parties: Parties, gbm_request: str) -> None:
    answer = parties.review_api(parties.carla.token, "GET", "/requests")
    assert answer.status_code == 200, answer.text
    assert gbm_request not in answer.text
    assert all(r["project"] == OTHER_PROJECT for r in answer.json()["requests"])


@pytest.mark.parametrize(
    "page", ["/requests/{rid}", "/requests/{rid}/files/ok.csv", "/api/requests/{rid}"]
)
def test_carlas_browser_cannot_read_gbm_requests(
    parties: Parties, gbm_request: str, page: str
) -> None:
    answer = parties.review_page("carla", page.format(rid=gbm_request))
    assert answer.status_code in (403, 404), (answer.status_code, answer.text[:300])
    assert "II,28" not in answer.text


def test_alices_workspace_cannot_submit_carlas_folder(parties: Parties) -> None:
    """The path is taken in the token's project folder: hf-outcomes' file is not there."""
    made = parties.review_api(parties.alice.token, "POST", "/requests", {"title": "x"})
    rid = made.json()["id"]
    for path in ("carla-secret.csv", f"../{OTHER_PROJECT}/carla-secret.csv"):
        body = {"path": path, "description": "d", "context": "c", "controls": CONTROLS}
        answer = parties.review_api(parties.alice.token, "POST", f"/requests/{rid}/files", body)
        assert answer.status_code == 400, answer.text
        assert OTHER_SECRET not in answer.text
