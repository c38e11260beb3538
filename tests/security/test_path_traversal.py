"""Boundary: every input that names a file. No name reaches outside the folder it is meant
for — the project folder for release requests (`tre.review.workspace.open_in_workspace`:
no absolute paths, no `..`, no symbolic link followed, no hard-linked file, and
`jupyter_tre_lab.release.check_release_path` in the workspace), the request's stored files
for the review pages (looked up by name, never joined to a path), the server root for the
contents API (jupyter_server's root checks).
"""

from __future__ import annotations

import json

import pytest

from tests.e2e.sites import PROJECT
from tests.security.support import CONTROLS, OTHER_PROJECT, OTHER_SECRET, SUITE_MARKS, Parties

pytestmark = SUITE_MARKS

PLANT = r"""
import json, os
work = "/home/researcher/work"
def fresh_symlink(target, name):
    if os.path.lexists(f"{work}/{name}"):
        os.unlink(f"{work}/{name}")
    os.symlink(target, f"{work}/{name}")
fresh_symlink(OTHER_WORK, "pt-abs-link.csv")
fresh_symlink(f"../{OTHER_PROJECT}/carla-secret.csv", "pt-rel-link.csv")
fresh_symlink(f"../{OTHER_PROJECT}", "pt-dir-link")
fresh_symlink(DATASET_FILE, "pt-data-link.csv")
fresh_symlink(os.path.dirname(DATASET_FILE), "pt-data-dir")
# A separate source: a second link to ok.csv would make ok.csv itself unsubmittable.
open(f"{work}/pt-hardsrc.csv", "w").write("a,b\n1,2\n")
if not os.path.exists(f"{work}/pt-hard.csv"):
    os.link(f"{work}/pt-hardsrc.csv", f"{work}/pt-hard.csv")
open(f"{work}/pt-rename.csv", "w").write("a,b\n1,2\n")
print(json.dumps(sorted(n for n in os.listdir(work) if n.startswith("pt-"))))
"""

SERVICE_PATHS = {
    "dotdot-to-other-project": f"../{OTHER_PROJECT}/carla-secret.csv",
    "dotdot-inside-a-folder": f"dl/../../{OTHER_PROJECT}/carla-secret.csv",
    "absolute-system-file": "/etc/passwd",
    "absolute-host-path-of-other-project": "{other_work}",
    "absolute-dataset-path": "{dataset_file}",
    "url-encoded-dotdot": f"%2e%2e/{OTHER_PROJECT}/carla-secret.csv",
    "nul-byte": "ok.csv\x00.png",
    "empty-name": "",
    "the-folder-itself": ".",
    "absolute-symlink-to-other-project": "pt-abs-link.csv",
    "relative-symlink-to-other-project": "pt-rel-link.csv",
    "symlinked-folder-to-other-project": "pt-dir-link/carla-secret.csv",
    "symlink-to-a-dataset-file": "pt-data-link.csv",
    "hard-linked-file": "pt-hard.csv",
}


@pytest.fixture(scope="module")
def planted(parties: Parties) -> dict[str, str]:
    settings = parties.site.settings
    other_work = str(settings.workspaces_dir / OTHER_PROJECT / "carla-secret.csv")
    dataset_file = parties.alice.run(
        "import os; print(next(os.path.join(r, f) for r, _, fs in "
        "sorted(os.walk('/data/clinical-records')) for f in sorted(fs)))"
    ).strip()
    code = (
        f"OTHER_WORK = {other_work!r}; OTHER_PROJECT = {OTHER_PROJECT!r}; "
        f"DATASET_FILE = {dataset_file!r}\n" + PLANT
    )
    names = parties.alice.run_json(code)
    assert len(names) == 8, names
    return {"other_work": other_work, "dataset_file": dataset_file}


@pytest.fixture(scope="module")
def draft(parties: Parties) -> str:
    made = parties.review_api(parties.alice.token, "POST", "/requests", {"title": "traversal"})
    assert made.status_code == 201, made.text
    rid: str = made.json()["id"]
    return rid


def file_body(path: str) -> dict[str, object]:
    return {"path": path, "description": "d", "context": "c", "controls": CONTROLS}


def test_a_plain_name_is_accepted(parties: Parties, draft: str) -> None:
    """Control: the same call with a file of the project folder works."""
    answer = parties.review_api(
        parties.alice.token, "POST", f"/requests/{draft}/files", file_body("ok.csv")
    )
    assert answer.status_code == 201, answer.text


@pytest.mark.parametrize("name", sorted(SERVICE_PATHS))
def test_the_review_service_refuses_the_path(
    parties: Parties, planted: dict[str, str], draft: str, name: str
) -> None:
    path = SERVICE_PATHS[name].format(**planted)
    answer = parties.review_api(
        parties.alice.token, "POST", f"/requests/{draft}/files", file_body(path)
    )
    assert answer.status_code == 400, (answer.status_code, answer.text)
    assert answer.json()["message"]
    assert OTHER_SECRET not in answer.text
    files = [f["name"] for f in parties.state(draft)["files"]]
    assert files == ["ok.csv"], files


EXTENSION_PATHS = {
    "dotdot-to-other-project": f"../{OTHER_PROJECT}/carla-secret.csv",
    "absolute-dataset-path": "{dataset_file}",
    "symlink-to-a-dataset-file": "pt-data-link.csv",
    "symlink-into-the-dataset-mount": "pt-data-dir/{dataset_name}",
}


@pytest.mark.parametrize("name", sorted(EXTENSION_PATHS))
def test_the_workspace_release_handler_refuses_the_path(
    parties: Parties, planted: dict[str, str], draft: str, name: str
) -> None:
    """The Lab extension's `/tre/release/.../files`, as the "Request release" dialog calls it."""
    dataset_name = planted["dataset_file"].rsplit("/", 1)[1]
    path = EXTENSION_PATHS[name].format(**planted, dataset_name=dataset_name)
    body = {**file_body(path), **CONTROLS}
    body.pop("controls")
    alice = parties["alice"]
    prefix = f"/user/alice/{PROJECT}/"
    answer = alice.session.post(
        alice.url(f"{prefix}tre/release/requests/{draft}/files"),
        json=body,
        headers={"X-XSRFToken": alice.xsrf(prefix)},
        timeout=60,
    )
    assert answer.status_code in (400, 403), (answer.status_code, answer.text[:300])
    files = [f["name"] for f in parties.state(draft)["files"]]
    assert files == ["ok.csv"], files


REVIEW_PAGES = {
    "stored-file-dotdot": "/requests/{rid}/files/..%2F..%2Fhub%2Fsettings.json",
    "stored-file-encoded-dotdot": "/requests/{rid}/files/%2e%2e%2fok.csv",
    "released-file-dotdot": "/released/{rid}/..%2F..%2Fsettings.json",
    "request-id-dotdot": "/requests/..%2F..%2F..%2Fhub%2Fapi%2Fusers",
}


@pytest.fixture(scope="module")
def submitted(parties: Parties) -> str:
    """A request olivia, a checker, may read: its stored file opens for her (the control)."""
    rid = parties.new_request("traversal: pages")
    stored = parties.review_page("olivia", f"/requests/{rid}/files/ok.csv")
    assert stored.status_code == 200, stored.text[:300]
    return rid


@pytest.mark.parametrize("name", sorted(REVIEW_PAGES))
def test_the_review_pages_refuse_the_name(parties: Parties, submitted: str, name: str) -> None:
    answer = parties.review_page("olivia", REVIEW_PAGES[name].format(rid=submitted))
    assert answer.status_code in (403, 404), (answer.status_code, answer.text[:300])
    assert "cookie_secret" not in answer.text and '"hub"' not in answer.text


CONTENTS = {
    "get-dotdot": ("GET", "/api/contents/..%2F..%2F..%2Fetc%2Fpasswd", None),
    "get-encoded-dotdot": ("GET", "/api/contents/%2e%2e/%2e%2e/etc/passwd", None),
    "files-dotdot": ("GET", "/files/..%2F..%2F..%2Fetc%2Fpasswd", None),
    "save-outside-root": (
        "PUT",
        "/api/contents/..%2Fescaped.txt",
        {"type": "file", "format": "text", "content": "x"},
    ),
    "rename-outside-root": (
        "PATCH",
        "/api/contents/pt-rename.csv",
        {"path": "../../tmp/moved.csv"},
    ),
    "copy-from-absolute": ("POST", "/api/contents", {"copy_from": "/etc/passwd"}),
}


@pytest.mark.parametrize("name", sorted(CONTENTS))
def test_the_contents_api_stays_in_the_workspace(parties: Parties, name: str) -> None:
    method, path, body = CONTENTS[name]
    if path.startswith("/files"):
        answer = parties["alice"].get(f"/user/alice/{PROJECT}{path}", allow_redirects=False)
    else:
        answer = parties["alice"].server_api(PROJECT, method, path.removeprefix("/api"), json=body)
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text[:300])
    assert "root:x:0:0" not in answer.text
    left = parties.alice.run_json(
        "import json, os; print(json.dumps([os.path.exists('/home/researcher/escaped.txt'), "
        "os.path.exists('/tmp/moved.csv'), os.path.exists('/home/researcher/work/pt-rename.csv')]))"
    )
    assert left == [False, False, True]


@pytest.mark.parametrize(
    "server",
    ["..%2F..%2Fadam", "gbm%2F..%2F..%2Fusers%2Fbob", "%2e%2e"],
    ids=["dotdot", "nested", "dots"],
)
def test_a_server_name_cannot_walk_the_hub_api(parties: Parties, server: str) -> None:
    alice = parties["alice"]
    answer = alice.api("POST", f"/users/alice/servers/{server}", json={"project": PROJECT})
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text[:300])
    names = set(json.loads(alice.api("GET", "/users/alice").text)["servers"])
    assert names <= {PROJECT}, names
