"""The Lab extension in a real workspace: downloads closed, every execution audited.

Against a real spawned container of the real image, the real hub, proxy, OIDC
provider and the hub-side audit service: every download path answers 403 (404
where the handler is not even installed) to alice's browser session and to the
server's own Hub token read from inside the container; executions over the v1
and the legacy websocket protocol are in the audit log exactly once, in order,
with the identity the hub vouches for; a stopped or hung audit service stops
execution (the code never runs); saves and uploads are recorded with their
hash; a config file or `.pth` the researcher plants does not remove the
extension after a restart.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.hubclient import LEGACY, V1, HubUser
from tests.e2e.isolation import PNG, download_bait
from tests.e2e.sites import PROJECT, Site, running_site
from tre.audit import open_store

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(1800)]


def records(site: Site, **match: Any) -> list[Any]:
    """Records of the project's chain whose detail contains every `match` item."""
    found = []
    for record in sorted(open_store(site.settings).show(project=PROJECT), key=lambda r: r.seq):
        if all(record.detail.get(k) == v for k, v in match.items()):
            found.append(record)
    return found


def code_records(site: Site, marker: str) -> list[Any]:
    return [
        r
        for r in sorted(open_store(site.settings).show(project=PROJECT), key=lambda r: r.seq)
        if r.kind == "execute" and marker in str(r.detail.get("code", ""))
    ]


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory, demo_silos: Path, workspace_image: str
) -> Iterator[Site]:
    with running_site(tmp_path_factory.mktemp("lab-ext"), demo_silos, workspace_image) as s:
        yield s


@pytest.fixture(scope="module")
def alice(site: Site) -> HubUser:
    user = site.user("alice")
    user.spawn(PROJECT)
    user.wait_ready(PROJECT)
    return user


@pytest.fixture(scope="module")
def planted(alice: HubUser) -> dict[str, str]:
    """Files in the workspace to try to take out, and the server's own Hub token."""
    out = alice.execute(PROJECT, download_bait("/home/researcher/work"))
    facts: dict[str, str] = json.loads(out)
    return facts


def denied_requests(inside: str) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        ("GET", "/files/table.csv", {}),
        ("GET", "/files/table.csv?download=1", {}),
        ("GET", f"/files/data-link/{inside}", {}),
        ("GET", "/files/plot.png?download=1", {}),
        ("GET", "/view/page.html", {}),
        ("GET", "/nbconvert/html/notebook.ipynb", {}),
        ("GET", "/nbconvert/html/notebook.ipynb?download=true", {}),
        ("GET", "/nbconvert/script/notebook.ipynb", {}),
        ("GET", "/api/nbconvert", {}),
        ("GET", f"/api/contents/data-link/{inside}?content=1", {}),
        ("GET", f"/api/contents/data-link/{inside}?content=1&format=base64", {}),
        ("GET", "/api/contents/big.bin?content=1", {}),
        ("GET", "/api/contents/table.csv?content=1&format=base64", {}),
        ("POST", "/api/contents", {"json": {"copy_from": f"data-link/{inside}"}}),
    ]


TERMINALS = [
    ("GET", "/api/terminals", {}),
    ("POST", "/api/terminals", {}),
    ("GET", "/terminals/websocket/1", {}),
]


def server_url(site: Site, path: str) -> str:
    return f"{site.url}/user/alice/{PROJECT}{path}"


def with_session(alice: HubUser, site: Site, method: str, path: str, **kw: Any) -> int:
    prefix = f"/user/alice/{PROJECT}/"
    headers = {"X-XSRFToken": alice.xsrf(prefix)}
    response = alice.session.request(
        method, server_url(site, path), headers=headers, allow_redirects=False, timeout=60, **kw
    )
    return response.status_code


def with_token(token: str, site: Site, method: str, path: str, **kw: Any) -> int:
    session = requests.Session()
    session.trust_env = False
    response = session.request(
        method,
        server_url(site, path),
        headers={"Authorization": f"token {token}"},
        allow_redirects=False,
        timeout=60,
        **kw,
    )
    return response.status_code


def test_the_paths_exist_so_that_a_refusal_means_something(
    site: Site, alice: HubUser, planted: dict[str, str]
) -> None:
    """Controls: the same server serves what is allowed, to both credentials."""
    for call in (with_session, with_token):
        cred: Any = alice if call is with_session else planted["token"]
        assert call(cred, site, "GET", "/api/contents/table.csv?content=1") == 200
        assert call(cred, site, "GET", "/api/contents/data-link") == 200  # names, no content
        assert call(cred, site, "GET", "/api/contents/plot.png?content=1&format=base64") == 200
    image = alice.session.get(server_url(site, "/files/plot.png"), timeout=60)
    assert image.status_code == 200
    assert image.content == PNG
    assert image.headers["Content-Type"] == "image/png"
    assert "attachment" not in image.headers.get("Content-Disposition", "")
    assert image.headers.get("X-Content-Type-Options") == "nosniff"


@pytest.mark.parametrize("credential", ["browser session", "server token"])
def test_every_download_path_is_refused(
    site: Site, alice: HubUser, planted: dict[str, str], credential: str
) -> None:
    answers: dict[str, int] = {}
    for method, path, kw in denied_requests(planted["inside"]):
        if credential == "browser session":
            answers[f"{method} {path}"] = with_session(alice, site, method, path, **kw)
        else:
            answers[f"{method} {path}"] = with_token(planted["token"], site, method, path, **kw)
    assert all(code == 403 for code in answers.values()), answers
    for method, path, kw in TERMINALS:
        code = (
            with_session(alice, site, method, path, **kw)
            if credential == "browser session"
            else with_token(planted["token"], site, method, path, **kw)
        )
        assert code in (403, 404), (method, path, code)


@pytest.mark.parametrize("protocol", [V1, LEGACY])
def test_each_execution_is_recorded_once_in_order_with_the_hubs_identity(
    site: Site, alice: HubUser, protocol: str
) -> None:
    marker = f"exactly-once-{protocol[:2]}-{time.monotonic_ns()}"
    sent: list[str] = []
    with alice.kernel(PROJECT, protocol=protocol) as kernel:
        for n in range(3):
            message = kernel.execute_request(f"print('{marker}', {n})")
            sent.append(message["header"]["msg_id"])
            kernel.send(message)
            assert kernel.collect(sent[-1]).raise_for_error() == f"{marker} {n}\n"
        # A cell that asks for input: the reply is an execution too.
        ask = kernel.execute_request(f"print('{marker}', input('value? '))")
        ask["content"]["allow_stdin"] = True
        kernel.send(ask)
        request = kernel.receive(60)
        while request["header"]["msg_type"] != "input_request":
            request = kernel.receive(60)
        reply = kernel.message("input_reply", {"value": "é-ünïcode"}, "stdin")
        reply["parent_header"] = request["header"]
        kernel.send(reply)
        assert kernel.collect(ask["header"]["msg_id"]).raise_for_error() == (
            f"{marker} é-ünïcode\n"
        )
    found = code_records(site, marker)
    assert [r.detail["msg_id"] for r in found] == [*sent, ask["header"]["msg_id"]]
    assert {(r.actor, r.project, r.server) for r in found} == {("alice", PROJECT, PROJECT)}
    assert all(
        r.permit and r.detail["protocol"] == ("v1" if protocol == V1 else "legacy") for r in found
    )
    seqs = [r.seq for r in found]
    assert seqs == sorted(seqs)
    replies = records(site, msg_type="input_reply")
    assert any("é-ünïcode" in json.dumps(r.detail, ensure_ascii=False) for r in replies)


def test_the_identity_comes_from_the_token_not_from_the_message(site: Site, alice: HubUser) -> None:
    marker = f"claims-to-be-bob-{time.monotonic_ns()}"
    with alice.kernel(PROJECT) as kernel:
        message = kernel.execute_request(f"print('{marker}')")
        message["header"]["username"] = "bob"
        kernel.send(message)
        kernel.collect(message["header"]["msg_id"]).raise_for_error()
    [record] = code_records(site, marker)
    assert record.actor == "alice"


def test_garbage_frames_are_dropped_and_a_huge_cell_is_refused(site: Site, alice: HubUser) -> None:
    marker = f"after-garbage-{time.monotonic_ns()}"
    with alice.kernel(PROJECT, protocol=V1) as kernel:
        kernel.send_raw(b"\x03\x00\x00")  # not a v1 frame
        kernel.send_raw(os.urandom(64))
        kernel.send_raw("{not json")
        huge = kernel.execute_request(
            f"open('/home/researcher/work/{marker}-huge', 'w')\n#" + "x" * (2 << 20)
        )
        kernel.send(huge)
        refused = kernel.collect(huge["header"]["msg_id"], timeout=60)
        assert refused.error is not None and "large" in refused.error.evalue.lower()
        assert kernel.run(f"print('{marker}')").raise_for_error() == f"{marker}\n"
    assert not (site.settings.workspaces_dir / PROJECT / f"{marker}-huge").exists()
    assert len(code_records(site, marker)) == 1  # the good cell; nothing for the garbage


def audit_service_pid(site: Site) -> int:
    settings_file = str(site.settings.hub_dir / "settings.json")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"tre.audit.service" in cmdline and f"TRE_SETTINGS={settings_file}".encode() in environ:
            return int(entry.name)
    raise AssertionError("the audit service of this site is not running")


def test_a_hung_or_dead_audit_service_stops_execution(site: Site, alice: HubUser) -> None:
    work = site.settings.workspaces_dir / PROJECT
    with alice.kernel(PROJECT) as kernel:
        assert kernel.run("print('warm')").raise_for_error() == "warm\n"
        pid = audit_service_pid(site)
        os.kill(pid, signal.SIGSTOP)  # hung: accepts nothing, answers nothing
        try:
            hung = kernel.run("open('/home/researcher/work/ran-while-hung', 'w')", timeout=60)
        finally:
            os.kill(pid, signal.SIGCONT)
        assert hung.error is not None, "the cell ran without an audit record"
        assert hung.error.ename.startswith("Audit"), hung.error
        assert not (work / "ran-while-hung").exists()

        os.kill(pid, signal.SIGKILL)  # dead: the connection is refused
        dead = kernel.run("open('/home/researcher/work/ran-while-dead', 'w')", timeout=60)
        assert dead.error is not None and dead.error.ename.startswith("Audit"), dead
        assert not (work / "ran-while-dead").exists()

        # JupyterHub restarts its managed service; executions resume, audited.
        deadline = time.monotonic() + 60
        while True:
            again = kernel.run("print('resumed')", timeout=60)
            if again.error is None or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert again.raise_for_error() == "resumed\n"
    assert audit_service_pid(site) != pid


def test_saves_and_chunked_uploads_are_recorded_once_with_their_hash(
    site: Site, alice: HubUser
) -> None:
    code = "import pandas as pd  # analysis\nprint('é')\n"
    saved = alice.server_api(
        PROJECT,
        "PUT",
        "/contents/analysis.py",
        json={"type": "file", "format": "text", "content": code},
    )
    assert saved.status_code in (200, 201), saved.text
    [record] = records(site, path="analysis.py")
    assert record.kind == "file_saved" and record.actor == "alice"
    assert record.detail["sha256"] == hashlib.sha256(code.encode()).hexdigest()
    assert record.detail["content"] == code

    blob = os.urandom(300_000)
    halves = [blob[:150_000], blob[150_000:]]
    for chunk, part in ((1, halves[0]), (-1, halves[1])):
        uploaded = alice.server_api(
            PROJECT,
            "PUT",
            "/contents/upload.bin",
            json={
                "type": "file",
                "format": "base64",
                "chunk": chunk,
                "content": base64.b64encode(part).decode(),
            },
        )
        assert uploaded.status_code in (200, 201), uploaded.text
    [upload] = records(site, path="upload.bin")
    assert upload.detail["sha256"] == hashlib.sha256(blob).hexdigest()
    assert upload.detail["size"] == len(blob)
    assert "content" not in upload.detail or upload.detail["content"] is None


def test_kernel_starts_and_shutdowns_are_recorded(site: Site, alice: HubUser) -> None:
    created = alice.server_api(PROJECT, "POST", "/kernels", json={"name": "python3"})
    kernel_id = created.json()["id"]
    alice.server_api(PROJECT, "DELETE", f"/kernels/{kernel_id}")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        actions = [r.detail["action"] for r in records(site, kernel_id=kernel_id)]
        if "shutdown" in actions:
            break
        time.sleep(0.2)
    assert actions[0] == "start" and "shutdown" in actions, actions


def test_planted_config_and_pth_files_do_not_remove_the_extension(
    site: Site, alice: HubUser, planted: dict[str, str]
) -> None:
    override = (
        "c.ServerApp.authorizer_class = 'jupyter_server.auth.authorizer.AllowAllAuthorizer'\n"
        "c.ServerApp.jpserver_extensions = {'jupyter_tre_lab': False}\n"
        "c.ServerApp.kernel_websocket_connection_class = "
        "'jupyter_server.services.kernels.connection.channels.ZMQChannelsWebsocketConnection'\n"
    )
    disable = "import sys; sys.modules['jupyter_tre_lab'] = None\n"
    plant = (
        "import os\n"
        "work = '/home/researcher/work'\n"
        "for d in (work, work + '/.jupyter', '/tmp/jupyter/config'):\n"
        "    os.makedirs(d, exist_ok=True)\n"
        f"    open(d + '/jupyter_server_config.py', 'w').write({override!r})\n"
        f"open(work + '/zz-disable.pth', 'w').write({disable!r})\n"
        f"open(work + '/sitecustomize.py', 'w').write({disable!r})\n"
        "print('planted')"
    )
    assert alice.execute(PROJECT, plant) == "planted\n"
    alice.stop(PROJECT)
    alice.spawn(PROJECT)
    alice.wait_ready(PROJECT)
    assert with_session(alice, site, "GET", "/files/table.csv") == 403
    marker = f"after-planting-{time.monotonic_ns()}"
    assert alice.execute(PROJECT, f"print('{marker}')") == f"{marker}\n"
    assert len(code_records(site, marker)) == 1
