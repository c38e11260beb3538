"""Boundary: JupyterHub's REST API. A researcher's credentials reach their own identity and
servers, never the administration of the hub (control: `tre.hub.roles.load_roles`, which
redefines the default `user` role and gives researchers no `admin:*`, `tokens` or `shares`).

Each attempt is made twice: with alice's browser session (the login cookie and its XSRF
header) and with the Hub token of her running server, read from inside her workspace.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.e2e.sites import PROJECT
from tests.security.support import SUITE_MARKS, Attempt, Parties, ids, plain_session

pytestmark = SUITE_MARKS

ADMIN_CALLS = [
    Attempt("list-all-users", "GET", "/users"),
    Attempt("read-another-user", "GET", "/users/bob"),
    Attempt("create-a-user", "POST", "/users/mallory"),
    Attempt("make-self-admin", "PATCH", "/users/alice", {"json": {"admin": True}}),
    Attempt("rename-self", "PATCH", "/users/alice", {"json": {"name": "adam"}}),
    Attempt("mint-a-token", "POST", "/users/alice/tokens", {"json": {"note": "take-out"}}),
    Attempt("mint-a-token-for-another", "POST", "/users/bob/tokens", {"json": {}}),
    Attempt("list-own-tokens", "GET", "/users/alice/tokens"),
    Attempt(
        "join-the-checkers-group",
        "POST",
        "/groups/tre-output-checkers/users",
        {"json": {"users": ["alice"]}},
    ),
    Attempt("create-a-group", "POST", "/groups/mallory-group"),
    Attempt("stop-another-users-server", "DELETE", f"/users/carla/servers/{PROJECT}"),
    Attempt("start-a-server-for-another", "POST", f"/users/bob/servers/{PROJECT}"),
    Attempt("share-own-server", "POST", f"/shares/alice/{PROJECT}", {"json": {"user": "bob"}}),
    Attempt("read-the-proxy-table", "GET", "/proxy"),
    Attempt("shut-the-hub-down", "POST", "/shutdown"),
    Attempt("list-services", "GET", "/services"),
]


def hub_call(parties: Parties, credential: str, attempt: Attempt) -> requests.Response:
    alice = parties["alice"]
    kwargs: dict[str, Any] = dict(attempt.kwargs)
    if credential == "browser-session":
        return alice.api(attempt.method, attempt.path, **kwargs)
    headers = {"Authorization": f"token {parties.alice.token}"}
    url = alice.url(f"/hub/api{attempt.path}")
    return plain_session().request(attempt.method, url, headers=headers, timeout=60, **kwargs)


@pytest.mark.parametrize("credential", ["browser-session", "server-token"])
def test_the_credentials_work_for_what_is_allowed(parties: Parties, credential: str) -> None:
    """Control: both credentials are valid, so a refusal below is the role, not a bad login."""
    me = hub_call(parties, credential, Attempt("read-self", "GET", "/users/alice"))
    assert me.status_code == 200, me.text
    assert me.json()["name"] == "alice"
    # adam, a data manager, may list users: the endpoint exists.
    assert parties["adam"].api("GET", "/users").status_code == 200


@pytest.mark.parametrize("credential", ["browser-session", "server-token"])
@pytest.mark.parametrize("attempt", ADMIN_CALLS, ids=ids(ADMIN_CALLS))
def test_a_researcher_cannot_use_the_admin_api(
    parties: Parties, credential: str, attempt: Attempt
) -> None:
    answer = hub_call(parties, credential, attempt)
    # 403: not permitted; 404: the hub does not even say whether the target exists.
    assert answer.status_code in (403, 404), (answer.status_code, answer.text[:300])
    after = parties["adam"].api("GET", "/users/alice").json()
    assert after["admin"] is False
    assert after["groups"] == ["tre-researchers"]


def test_no_token_was_minted_and_no_user_created(parties: Parties) -> None:
    adam = parties["adam"]
    names = {u["name"] for u in adam.api("GET", "/users").json()}
    assert "mallory" not in names
    groups = {g["name"] for g in adam.api("GET", "/groups").json()}
    assert "mallory-group" not in groups
    tokens = adam.api("GET", "/users/alice/tokens")
    assert tokens.status_code == 403  # not even the data manager reads tokens


def test_an_administrator_cannot_enter_a_researchers_server(parties: Parties) -> None:
    adam = parties["adam"]
    page = adam.get(f"/user/alice/{PROJECT}/api/contents", allow_redirects=True)
    assert page.status_code in (403, 404) or "/hub/" in page.url, page.status_code
    assert "ok.csv" not in page.text
    token = adam.api("POST", "/users/adam/tokens", json={"note": "into alice"})
    assert token.status_code == 403, token.text
