"""What the attack suite shares: the parties of one running site and the ways they call it.

Invariant: every call goes to this machine (the site's loopback ports, the project
network's gateway), with a credential a real party holds — a browser session after the
OIDC login, or a workspace server's Hub token read from inside its container.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.hubclient import HubUser
from tests.e2e.sites import PROJECT, Site
from tre.audit import open_store
from tre.audit.records import AuditRecord

SUITE_MARKS = [
    pytest.mark.security,
    pytest.mark.docker,
    pytest.mark.slow,
    pytest.mark.timeout(900),
]
"""Every attack module's `pytestmark` (with `browser` added where Chromium clicks)."""

OTHER_PROJECT = "hf-outcomes"
"""carla's project (clinical-records only); alice and her gbm-linkage workspace never see it."""

OTHER_SECRET = "CARLA-HF-SECRET-ROW"
"""A line in hf-outcomes' workspace folder that nothing of gbm-linkage may reach."""
REVIEW = "/services/tre-review"
SUMMARIES = "/services/tre-summaries"
PASSING = "grade,patients\nII,28\nIII,71\nIV,218\n"
CONTROLS = {"population": "GBM cohort 2015-2024", "suppression": "none: counts over 10"}
XSRF_FIELD = re.compile(r'name="(?:_xsrf" value|xsrf-token" content)="([^"]+)"')
"""The review pages' XSRF token: in each form, and in every page's head (403 pages too)."""

PROBE_PRELUDE = r"""
import ctypes, errno, json, os
libc = ctypes.CDLL(None, use_errno=True)
def attempt(fn):
    try:
        return "ok: " + repr(fn())[:300]
    except OSError as e:
        return "refused: " + errno.errorcode.get(e.errno, str(e.errno))
def check(ret):
    if ret != 0:
        e = ctypes.get_errno(); raise OSError(e, os.strerror(e))
    return ret
def write(path, mode="w"):
    with open(path, mode) as f:
        f.write("x")
"""
"""What the probes run in a workspace start with: `attempt(fn)` gives "ok: <value>" or
"refused: <errno name>", `check(ret)` turns a libc failure into OSError, `write(path)`."""


def plain_session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # never a proxy: everything is on this machine
    return session


def workspace_folder_file(site: Site, project: str, name: str, text: str) -> Path:
    """A file in a project's workspace folder, owned by the researcher as if written inside."""
    folder = site.settings.workspaces_dir / project
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    os.chown(path, 1000, 100)
    return path


@dataclass
class Workspace:
    """A running workspace: who runs it, for which project, its token and address."""

    user: HubUser
    project: str
    token: str
    """The server's own Hub token (JUPYTERHUB_API_TOKEN), read from inside the container:
    the one credential a researcher can take from a workspace (minting tokens is refused)."""
    address: str
    """The container's address on its project network."""

    def run(self, code: str, timeout: float = 120) -> str:
        return self.user.execute(self.project, code, timeout=timeout)

    def run_json(self, code: str, timeout: float = 120) -> Any:
        return json.loads(self.run(code, timeout).strip().splitlines()[-1])


@dataclass
class Parties:
    """Everyone at the site, logged in once: browser sessions by name, running workspaces."""

    site: Site
    people: dict[str, HubUser]
    alice: Workspace
    carla: Workspace
    review_api_base: str = field(init=False)

    def __post_init__(self) -> None:
        self.review_api_base = f"http://127.0.0.1:{self.site.settings.review.port}/api"

    def __getitem__(self, name: str) -> HubUser:
        return self.people[name]

    # -- the review service ------------------------------------------------------------------

    def review_api(
        self, token: str | None, method: str, path: str, body: object = None
    ) -> requests.Response:
        """The review API as a workspace calls it (its gateway port), with a server token."""
        headers = {"Authorization": f"token {token}"} if token else {}
        return plain_session().request(
            method, self.review_api_base + path, json=body, headers=headers, timeout=60
        )

    def review_page(self, who: str, path: str, **kwargs: Any) -> requests.Response:
        """A review-service page through the proxy, in `who`'s browser session (HubOAuth)."""
        kwargs.setdefault("allow_redirects", True)
        return self.people[who].get(REVIEW + path, **kwargs)

    def review_form(
        self, who: str, path: str, data: dict[str, str], *, xsrf: bool = True
    ) -> requests.Response:
        """POST a review page's form as `who`, with the _xsrf token a page of theirs carries."""
        if xsrf:
            page = self.review_page(who, "/mine")  # a checker's is a 403 page, with the token
            token = XSRF_FIELD.search(page.text)
            assert token is not None, (page.status_code, page.url, page.text[:300])
            data = {**data, "_xsrf": token.group(1)}
        user = self.people[who]
        return user.session.post(user.url(REVIEW + path), data=data, timeout=60)

    def new_request(self, title: str, files: tuple[str, ...] = ("ok.csv",)) -> str:
        """A request of alice's workspace with `files` added and submitted; its id."""
        made = self.review_api(self.alice.token, "POST", "/requests", {"title": title})
        assert made.status_code == 201, made.text
        rid: str = made.json()["id"]
        for path in files:
            body = {"path": path, "description": "counts", "context": "Table 1"}
            added = self.review_api(
                self.alice.token, "POST", f"/requests/{rid}/files", {**body, "controls": CONTROLS}
            )
            assert added.status_code == 201, added.text
        submitted = self.review_api(self.alice.token, "POST", f"/requests/{rid}/submit")
        assert submitted.status_code == 200, submitted.text
        return rid

    def approve(self, rid: str, checker: str) -> None:
        answer = self.review_form(checker, f"/requests/{rid}/decide", {"decision": "approve"})
        assert answer.status_code == 200, (checker, answer.status_code, answer.text[:500])

    def state(self, rid: str) -> dict[str, Any]:
        answer = self.review_api(self.alice.token, "GET", f"/requests/{rid}")
        assert answer.status_code == 200, answer.text
        found: dict[str, Any] = answer.json()
        return found

    # -- the audit service -------------------------------------------------------------------

    def audit_post(self, token: str | None, body: object) -> requests.Response:
        """`POST /records` of the audit service, as a workspace's extension sends it."""
        headers = {"Authorization": f"token {token}"} if token else {}
        url = f"http://127.0.0.1:{self.site.settings.audit.port}/records"
        return plain_session().post(url, json=body, headers=headers, timeout=60)

    def records(self, project: str = PROJECT) -> list[AuditRecord]:
        found = open_store(self.site.settings).show(project=project)
        return sorted(found, key=lambda r: r.seq)

    def records_mentioning(self, marker: str, project: str = PROJECT) -> list[AuditRecord]:
        return [r for r in self.records(project) if marker in json.dumps(r.detail)]


@dataclass(frozen=True)
class Attempt:
    """One parametrized attack: what is tried (the test id) and how."""

    id: str
    method: str
    path: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.id


def ids(attempts: list[Attempt]) -> list[str]:
    return [a.id for a in attempts]
