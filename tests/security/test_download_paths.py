"""Boundary: the workspace's web server. No file leaves through a download path of
Jupyter (REFERENCE "Ways data leave a Jupyter server"), whichever credential asks:
alice's browser session (cookie + XSRF) or a Hub token she takes from the workspace
(`JUPYTERHUB_API_TOKEN`; she cannot mint one: see test_hub_api). Controls: the Lab
extension's server-side denials (`jupyter_tre_lab.files_handler`, `.contents`,
`.authorizer`), terminals off (`ServerApp.terminals_enabled`), no jupyter-server-proxy.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from tests.e2e.isolation import download_bait
from tests.e2e.sites import PROJECT
from tests.security.support import SUITE_MARKS, Attempt, Parties, ids, plain_session

pytestmark = SUITE_MARKS


@pytest.fixture(scope="module")
def inside(parties: Parties) -> str:
    """Files to try to take out under `dl/`; the path of a dataset file under dl/data-link."""
    facts = parties.alice.run_json(download_bait("/home/researcher/work/dl"))
    return str(facts["inside"])


def download_paths() -> list[Attempt]:
    """Every way out of REFERENCE.md's list; `{inside}` is a dataset file's path."""
    link = "dl/data-link/{inside}"
    return [
        Attempt("files-workspace-csv", "GET", "/files/dl/table.csv"),
        Attempt("files-download-flag", "GET", "/files/dl/table.csv?download=1"),
        Attempt("files-image-as-download", "GET", "/files/dl/plot.png?download=1"),
        Attempt("files-dataset-via-symlink", "GET", f"/files/{link}"),
        Attempt("view-html", "GET", "/view/dl/page.html"),
        Attempt("nbconvert-html", "GET", "/nbconvert/html/dl/notebook.ipynb"),
        Attempt(
            "nbconvert-html-download", "GET", "/nbconvert/html/dl/notebook.ipynb?download=true"
        ),
        Attempt("nbconvert-script", "GET", "/nbconvert/script/dl/notebook.ipynb"),
        Attempt("api-nbconvert", "GET", "/api/nbconvert"),
        Attempt("contents-dataset-text", "GET", f"/api/contents/{link}?content=1"),
        Attempt("contents-dataset-base64", "GET", f"/api/contents/{link}?content=1&format=base64"),
        Attempt("contents-over-the-size-limit", "GET", "/api/contents/dl/big.bin?content=1"),
        Attempt(
            "contents-csv-as-base64", "GET", "/api/contents/dl/table.csv?content=1&format=base64"
        ),
        Attempt(
            "contents-copy-dataset-into-workspace",
            "POST",
            "/api/contents/dl",
            {"json": {"copy_from": link}},
        ),
    ]


CLOSED = [
    Attempt("terminals-list", "GET", "/api/terminals"),
    Attempt("terminals-create", "POST", "/api/terminals"),
    Attempt("terminals-websocket", "GET", "/terminals/websocket/1"),
    Attempt("server-proxy-to-a-port", "GET", "/proxy/8888/"),
    Attempt("server-proxy-absolute", "GET", "/proxy/absolute/8888/"),
]
"""Handlers that must not even be installed (terminals off, no jupyter-server-proxy)."""


def call(
    parties: Parties, credential: str, attempt: Attempt, inside: str, *, follow: bool = False
) -> requests.Response:
    alice = parties["alice"]
    prefix = f"/user/alice/{PROJECT}"
    url = alice.url(prefix + attempt.path.format(inside=inside))
    kwargs: dict[str, Any] = json.loads(json.dumps(attempt.kwargs).replace("{inside}", inside))
    if credential == "browser-session":
        headers = {"X-XSRFToken": alice.xsrf(prefix + "/")}
        session = alice.session
    else:
        headers = {"Authorization": f"token {parties.alice.token}"}
        session = plain_session()
    return session.request(
        attempt.method, url, headers=headers, allow_redirects=follow, timeout=60, **kwargs
    )


@pytest.mark.parametrize("credential", ["browser-session", "server-token"])
def test_the_same_server_serves_what_is_allowed(
    parties: Parties, inside: str, credential: str
) -> None:
    """Control: both credentials reach the server, so each refusal below is the control."""
    allowed = [
        Attempt("csv-as-text", "GET", "/api/contents/dl/table.csv?content=1"),
        Attempt("dataset-names", "GET", "/api/contents/dl/data-link"),
        Attempt("image-inline", "GET", "/api/contents/dl/plot.png?content=1&format=base64"),
    ]
    for attempt in allowed:
        answer = call(parties, credential, attempt, inside)
        assert answer.status_code == 200, (attempt.id, answer.status_code, answer.text[:200])
    assert call(parties, credential, allowed[0], inside).json()["content"] == "a,b\n1,2\n"


@pytest.mark.parametrize("credential", ["browser-session", "server-token"])
@pytest.mark.parametrize("attempt", download_paths(), ids=ids(download_paths()))
def test_a_download_path_is_refused(
    parties: Parties, inside: str, credential: str, attempt: Attempt
) -> None:
    answer = call(parties, credential, attempt, inside)
    assert answer.status_code == 403, (answer.status_code, answer.text[:300])
    assert "a,b\n1,2" not in answer.text
    assert answer.headers.get("Content-Disposition") is None


@pytest.mark.parametrize("credential", ["browser-session", "server-token"])
@pytest.mark.parametrize("attempt", CLOSED, ids=ids(CLOSED))
def test_a_handler_that_would_open_a_way_out_is_absent(
    parties: Parties, inside: str, credential: str, attempt: Attempt
) -> None:
    # Followed: jupyter_server answers a trailing slash with a redirect to the bare path.
    answer = call(parties, credential, attempt, inside, follow=True)
    assert answer.status_code in (403, 404), (answer.status_code, answer.url, answer.text[:300])


def test_the_copy_attempt_left_no_dataset_file_in_the_workspace(
    parties: Parties, inside: str
) -> None:
    listing = parties.alice.run_json(
        "import json, os; print(json.dumps(sorted(os.listdir('/home/researcher/work/dl'))))"
    )
    assert listing == [
        "big.bin",
        "data-link",
        "notebook.ipynb",
        "page.html",
        "plot.png",
        "table.csv",
    ]
