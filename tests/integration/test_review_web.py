"""The review service's web layer under a real JupyterHub: who acts comes from the hub only.

The hub runs the site's own configuration (`tre.hub.configure`), so `tre-review` is the
managed service, custom scopes and roles it defines; only the spawner and authenticator
are swapped for ones that need no Docker and no OIDC provider, and the OIDC groups are
loaded with `load_groups`. Workspaces call the API with their server's Hub token (as the
Lab extension does); people log in through the dummy authenticator's form and reach the
pages through the proxy, with a HubOAuth session cookie and XSRF tokens, as a browser does.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.integration.standin_hub import HubPlan, StandinHub, free_port, site_settings, standin_hub
from tre.audit import EventKind, open_store
from tre.settings import ReviewSettings, Settings

pytestmark = [pytest.mark.slow, pytest.mark.security]

ADMIN_TOKEN = "test-admin-" + "1" * 32
GBM = "gbm-linkage"  # alice (author), bob (member); two reviews; checkers olivia, oscar
HF = "hf-outcomes"  # carla, a member who is also an output checker in this site
FAILING = "grade,mgmt_methylated,mgmt_unmethylated\nII,25,3\nIII,40,31\nIV,120,98\n"
PASSING = "grade,patients\nII,28\nIII,71\nIV,218\n"
CONTROLS = {"population": "GBM cohort 2015-2024", "suppression": "none yet"}

XSRF = re.compile(r'name="(?:_xsrf" value|xsrf-token" content)="([^"]+)"')


@dataclass
class Site:
    hub: StandinHub
    review_api: str
    sessions: dict[str, requests.Session] = field(default_factory=dict)

    @property
    def settings(self) -> Settings:
        return self.hub.settings

    @property
    def public(self) -> str:
        return self.hub.public

    @property
    def pages(self) -> str:
        return f"{self.public}/services/tre-review"

    def admin(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.hub.admin(method, path, **kwargs)

    def spawn(self, user: str, server: str, project: str) -> str:
        return self.hub.spawn(user, server, project)

    def api(
        self, token: str | None, method: str, path: str, body: object = None
    ) -> requests.Response:
        """The API as a workspace calls it: directly on the service's port, with a token."""
        headers = {"Authorization": f"token {token}"} if token else {}
        return requests.request(
            method, f"{self.review_api}/api{path}", json=body, headers=headers, timeout=120
        )

    def browser(self, user: str) -> requests.Session:
        """A logged-in browser of `user`: the service's page, the hub's login form, OAuth."""
        if user in self.sessions:
            return self.sessions[user]
        session = requests.Session()
        first = session.get(f"{self.pages}/mine", timeout=30)
        assert first.url.startswith(f"{self.public}/hub/login"), first.url
        xsrf = XSRF.search(first.text)
        assert xsrf is not None, first.text
        answer = session.post(
            first.url,
            data={"username": user, "password": "any", "_xsrf": xsrf.group(1)},
            timeout=60,
        )
        # A person without access to the service is stopped by the hub (403) after login.
        assert answer.status_code in {200, 403}, (answer.status_code, answer.url, answer.text)
        self.sessions[user] = session
        return session

    def form(
        self, user: str, path: str, data: dict[str, str], *, xsrf: bool = True
    ) -> requests.Response:
        """POST a page's form as `user`'s browser (with the page's _xsrf token)."""
        session = self.browser(user)
        if xsrf:
            page = session.get(f"{self.pages}/mine", timeout=30)
            token = XSRF.search(page.text)
            assert token is not None, page.text
            data = {**data, "_xsrf": token.group(1)}
        return session.post(f"{self.pages}{path}", data=data, timeout=120)


PLAN = HubPlan(
    keep_services=frozenset({"tre-review"}),
    groups={
        "tre-researchers": {"users": ["alice", "bob", "carla"]},
        # carla is a researcher (hf-outcomes) and, here, an output checker too.
        "tre-output-checkers": {"users": ["olivia", "oscar", "carla"]},
        "tre-admins": {"users": ["adam"]},
        "tre-patient-reps": {"users": ["pat"]},
    },
)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("review-site")
    settings = site_settings(root, review=ReviewSettings(port=free_port()))
    people = settings.policy_dir / "people.yaml"  # carla checks outputs too (not her project's)
    carla = "organisation: Department of Cardiology\n    roles: [researcher]"
    assert carla in people.read_text()
    people.write_text(
        people.read_text().replace(
            carla, carla.replace("[researcher]", "[researcher, output_checker]")
        )
    )
    with standin_hub(root, settings, PLAN, ADMIN_TOKEN) as hub:
        review_api = f"http://127.0.0.1:{settings.review.port}"
        hub.wait_for(f"{review_api}/health")
        hub.wait_for(f"{hub.public}/services/tre-review/health", ok=300)
        yield Site(hub, review_api)


@pytest.fixture(scope="module")
def workspace(site: Site) -> Path:
    folder = site.settings.workspaces_dir / GBM
    (folder / "out").mkdir(parents=True)
    (folder / "out" / "table.csv").write_text(FAILING)
    (folder / "out" / "ok.csv").write_text(PASSING)
    secret = site.settings.var_dir / "outside" / "patients.csv"
    secret.parent.mkdir(parents=True)
    secret.write_text("pseudonym,dob\nP-1,1950-01-01\n")
    (folder / "out" / "leak.csv").symlink_to(secret)
    return folder


@pytest.fixture(scope="module")
def alice(site: Site, workspace: Path) -> str:
    return site.spawn("alice", GBM, GBM)


@pytest.fixture(scope="module")
def carla(site: Site) -> str:
    folder = site.settings.workspaces_dir / HF
    (folder / "out").mkdir(parents=True)
    (folder / "out" / "ok.csv").write_text(PASSING)
    return site.spawn("carla", HF, HF)


def add(site: Site, token: str, req_id: str, path: str) -> requests.Response:
    body = {"path": path, "description": "counts", "context": "Table 2", "controls": CONTROLS}
    return site.api(token, "POST", f"/requests/{req_id}/files", body)


def submitted(site: Site, token: str, title: str, files: tuple[str, ...]) -> dict[str, Any]:
    made = site.api(token, "POST", "/requests", {"title": title, "description": "for the paper"})
    assert made.status_code == 201, made.text
    req_id = made.json()["id"]
    for path in files:
        added = add(site, token, req_id, path)
        assert added.status_code == 201, added.text
    answer = site.api(token, "POST", f"/requests/{req_id}/submit")
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


# -- workspaces: the API with the server's token ----------------------------------------------


def test_a_workspace_creates_adds_from_its_folder_and_submits(site: Site, alice: str) -> None:
    made = site.api(alice, "POST", "/requests", {"title": "MGMT by grade", "description": "x"})
    assert made.status_code == 201, made.text
    req = made.json()
    assert (req["author"], req["project"], req["permit"], req["state"]) == (
        "alice", GBM, "gbm-linkage-2026", "draft",
    )  # fmt: skip
    assert req["reviews_required"] == 2

    # A symlink planted in the project folder is refused, and nothing is added.
    leak = add(site, alice, req["id"], "out/leak.csv")
    assert leak.status_code == 400
    assert "symbolic link" in leak.json()["message"]
    assert add(site, alice, req["id"], "../hf-outcomes/x.csv").status_code == 400

    added = add(site, alice, req["id"], "out/table.csv")
    assert added.status_code == 201, added.text
    [f] = added.json()["files"]
    assert (f["name"], f["verdict"], f["workspace_path"]) == ("table.csv", "fail", "out/table.csv")
    assert "stored_path" not in f
    threshold = [x for x in f["findings"] if x["check"] == "minimum-threshold"]
    assert threshold and threshold[0]["cells"] == [["II", "mgmt_unmethylated"]]

    answer = site.api(alice, "POST", f"/requests/{req['id']}/submit")
    assert answer.status_code == 200, answer.text
    assert answer.json()["state"] == "submitted"
    mine = site.api(alice, "GET", "/requests").json()["requests"]
    assert [(r["id"], r["state"]) for r in mine if r["id"] == req["id"]] == [
        (req["id"], "submitted")
    ]
    assert [x["summary"] for x in mine[-1]["files"]] == [f["summary"]]


def test_the_body_cannot_say_who_or_which_project(site: Site, alice: str) -> None:
    for claims in ({"project": "hf-outcomes"}, {"author": "bob"}):
        answer = site.api(alice, "POST", "/requests", {"title": "t", **claims})
        assert answer.status_code == 400
        assert "unknown field" in answer.json()["message"]


@pytest.mark.parametrize("token", [None, "not-a-token", "0" * 32])
def test_no_token_or_an_unknown_one_is_refused(site: Site, token: str | None) -> None:
    answer = site.api(token, "GET", "/requests")
    assert answer.status_code == 401
    assert answer.json()["message"]


def test_a_workspace_token_cannot_check_or_download(site: Site, alice: str) -> None:
    req = submitted(site, alice, "Own table", ("out/ok.csv",))
    assert site.api(alice, "GET", "/queue").status_code == 403
    refused = site.api(alice, "POST", f"/requests/{req['id']}/approve", {})
    assert refused.status_code == 403
    assert "custom:review:check" in refused.json()["message"]
    assert site.api(alice, "GET", f"/requests/{req['id']}").json()["state"] == "submitted"


# -- browsers: HubOAuth through the proxy -----------------------------------------------------


def test_a_checker_sees_the_queue_and_the_failing_cell(site: Site, alice: str) -> None:
    req = submitted(site, alice, "Failing cells", ("out/table.csv",))
    olivia = site.browser("olivia")
    queue = olivia.get(f"{site.pages}/queue", params={"project": GBM}, timeout=30)
    assert queue.status_code == 200, queue.text
    assert "Failing cells" in queue.text and req["id"] in queue.text
    page = olivia.get(f"{site.pages}/requests/{req['id']}", timeout=60)
    assert page.status_code == 200, page.text
    flagged = re.findall(r'<td class="flagged"[^>]*><mark>([^<]*)</mark>', page.text)
    assert flagged == ["3"]  # II x mgmt_unmethylated, and no other cell
    assert "minimum-threshold" in page.text
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    stored = olivia.get(f"{site.pages}/requests/{req['id']}/files/table.csv", timeout=30)
    assert stored.status_code == 200 and stored.text == FAILING
    assert stored.headers["Content-Disposition"].startswith("inline")
    assert stored.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("user", ["pat", "adam", "alice"])
def test_people_who_are_not_checkers_get_403_on_the_queue(
    site: Site, alice: str, user: str
) -> None:
    answer = site.browser(user).get(f"{site.pages}/queue", timeout=30)
    assert answer.status_code == 403
    api = site.browser(user).get(f"{site.pages}/api/queue", timeout=30)
    # pat never got a session from the hub (it refused the service to her): 401.
    assert api.status_code == (401 if user == "pat" else 403)


def test_a_browser_post_without_xsrf_is_refused(site: Site, alice: str) -> None:
    req = submitted(site, alice, "XSRF", ("out/ok.csv",))
    refused = site.form(
        "olivia", f"/requests/{req['id']}/decide", {"decision": "approve"}, xsrf=False
    )
    assert refused.status_code == 403
    assert "_xsrf" in refused.text
    api = site.browser("olivia").post(f"{site.pages}/api/requests/{req['id']}/approve", json={})
    assert api.status_code == 403
    assert site.api(alice, "GET", f"/requests/{req['id']}").json()["reviews_required"] == 2
    assert site.api(alice, "GET", f"/requests/{req['id']}").json()["files"][0]["approvers"] == []


def test_a_checker_cannot_review_their_own_request(site: Site, carla: str) -> None:
    req = submitted(site, carla, "My own table", ("out/ok.csv",))
    rid = req["id"]
    # carla is a checker: the queue opens for her, but her own request is not in it...
    queue = site.browser("carla").get(f"{site.pages}/queue", timeout=30)
    assert queue.status_code == 200 and rid not in queue.text
    # ...and the request's page does not let her decide on it, whatever she posts.
    for decision in ("approve", "reject", "return"):
        own = site.form("carla", f"/requests/{rid}/decide", {"decision": decision, "reason": "x"})
        assert own.status_code == 409, (decision, own.text)
        assert "&#39;carla&#39; wrote this request and may not" in own.text, own.text
    after = site.api(carla, "GET", f"/requests/{rid}").json()
    assert after["state"] == "submitted"
    assert after["files"][0]["approvers"] == []
    # olivia, who is not the author, may (hf-outcomes needs one review).
    olivia = site.form("olivia", f"/requests/{rid}/decide", {"decision": "approve"})
    assert olivia.status_code == 200, olivia.text
    after = site.api(carla, "GET", f"/requests/{rid}").json()
    assert (after["state"], after["files"][0]["approvers"]) == ("approved", ["olivia"])


def test_a_return_needs_a_reason(site: Site, alice: str) -> None:
    req = submitted(site, alice, "No reason", ("out/ok.csv",))
    refused = site.form("olivia", f"/requests/{req['id']}/decide", {"decision": "return"})
    assert refused.status_code == 400
    assert "a reason is needed" in refused.text
    assert site.api(alice, "GET", f"/requests/{req['id']}").json()["state"] == "submitted"


def test_two_checkers_approve_the_author_releases_and_only_the_author_downloads(
    site: Site, alice: str
) -> None:
    req = submitted(site, alice, "Release me", ("out/table.csv",))
    rid = req["id"]
    # The author cannot approve their own request, from the browser either.
    own = site.form("alice", f"/requests/{rid}/decide", {"decision": "approve"})
    assert own.status_code == 403

    first = site.form("olivia", f"/requests/{rid}/decide", {"decision": "approve"})
    assert first.status_code == 200, first.text  # redirected back to the request's page
    after_one = site.api(alice, "GET", f"/requests/{rid}").json()
    assert after_one["state"] == "under_review"  # gbm-linkage needs two reviews
    assert after_one["missing_approvals"] == {"table.csv": 1}
    assert site.browser("alice").get(f"{site.pages}/released/{rid}/table.csv").status_code == 403

    comment = site.form("oscar", f"/requests/{rid}/comments", {"file": "table.csv", "text": "ok"})
    assert comment.status_code == 200, comment.text
    second = site.form("oscar", f"/requests/{rid}/decide", {"decision": "approve"})
    assert second.status_code == 200, second.text
    assert site.api(alice, "GET", f"/requests/{rid}").json()["state"] == "approved"

    released = site.api(alice, "POST", f"/requests/{rid}/release")
    assert released.status_code == 200, released.text
    assert released.json()["state"] == "released"

    download = site.browser("alice").get(f"{site.pages}/released/{rid}/table.csv", timeout=30)
    assert download.status_code == 200, download.text
    assert download.content == FAILING.encode()
    assert download.headers["Content-Disposition"].startswith("attachment")
    assert download.headers["X-Content-Type-Options"] == "nosniff"
    records = [
        r
        for r in open_store(site.settings).show(project=GBM)
        if r.kind is EventKind.review_downloaded
    ]
    assert [(r.actor, r.detail["request"], r.detail["file"]) for r in records] == [
        ("alice", rid, "table.csv")
    ]

    for user in ("olivia", "bob", "pat"):
        other = site.browser(user).get(f"{site.pages}/released/{rid}/table.csv", timeout=30)
        assert other.status_code == 403, (user, other.text)
    # Not from a workspace either: the only way out is the author's browser.
    workspace = requests.get(
        f"{site.review_api}/services/tre-review/released/{rid}/table.csv",
        headers={"Authorization": f"token {alice}"},
        timeout=30,
    )
    assert workspace.status_code == 403
    assert (
        len(
            [
                r
                for r in open_store(site.settings).show(project=GBM)
                if r.kind is EventKind.review_downloaded
            ]
        )
        == 1
    )
    assert open_store(site.settings).verify().ok


# -- outside the workspace, only checkers see what it wrote -----------------------------------

SECRET_CSV = "grade,patients\nII,28\nIII,71\nIV,218\nZQX-SECRET-ROW,55\n"
SECRET_TEXT = "ZQX-SECRET-TEXT"


@pytest.mark.parametrize("user", ["alice", "bob"])
def test_the_author_and_members_do_not_see_contents_outside_before_release(
    site: Site, alice: str, workspace: Path, user: str
) -> None:
    """Submitting a file and reading it back in one's own browser would be a way out."""
    (workspace / "out" / "secret.csv").write_text(SECRET_CSV)
    made = site.api(alice, "POST", "/requests", {"title": "S", "description": SECRET_TEXT})
    rid = made.json()["id"]
    body = {
        "path": "out/secret.csv",
        "description": SECRET_TEXT,
        "context": SECRET_TEXT,
        "controls": {"population": SECRET_TEXT, "suppression": SECRET_TEXT},
    }
    assert site.api(alice, "POST", f"/requests/{rid}/files", body).status_code == 201
    assert site.api(alice, "POST", f"/requests/{rid}/submit").status_code == 200
    assert site.api(alice, "POST", f"/requests/{rid}/comments", {
        "file": "secret.csv", "text": SECRET_TEXT,
    }).status_code == 201  # fmt: skip

    # Inside the workspace the author sees everything (it came from there).
    inside = site.api(alice, "GET", f"/requests/{rid}")
    assert SECRET_TEXT in inside.text

    browser = site.browser(user)
    page = browser.get(f"{site.pages}/requests/{rid}", timeout=30)
    api = browser.get(f"{site.pages}/api/requests/{rid}", timeout=30)
    mine = browser.get(f"{site.pages}/api/requests", timeout=30)
    stored = browser.get(f"{site.pages}/requests/{rid}/files/secret.csv", timeout=30)
    if user == "alice":
        assert page.status_code == 200 and api.status_code == 200, (page.text, api.text)
        assert 'class="withheld"' in page.text
        assert api.json()["files"][0]["verdict"]  # the verdict is shown, not the content
    for answer in (page, api, mine, stored):
        assert "ZQX-SECRET" not in answer.text, (user, answer.url)
    assert stored.status_code in {403, 404}

    # An output checker sees it all.
    olivia = site.browser("olivia")
    checker_page = olivia.get(f"{site.pages}/requests/{rid}", timeout=30)
    assert "ZQX-SECRET-ROW" in checker_page.text and SECRET_TEXT in checker_page.text
    assert olivia.get(f"{site.pages}/requests/{rid}/files/secret.csv").text == SECRET_CSV
