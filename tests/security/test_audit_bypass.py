"""Boundary: the audit. A researcher cannot turn the record off, write it in someone else's
name, or run code the log does not reveal (controls: the Lab extension audits each execute
request and each saved file before forwarding it, fail closed —
`jupyter_tre_lab.audited_channels`, `.saves`; the audit service takes who, which project
and which permit from the server's Hub token, never from the body —
`tre.audit.service.parse_record`, `tre.audit.identity.WorkspaceIdentifier`; the spawner's
`disable_user_config`, `PYTHONNOUSERSITE` and a read-only image).

Code can reach a kernel without the websocket (ZMQ from another kernel, IPython start-up
files in /tmp): those attempts succeed in running code, and the test shows that the code
is still in the log, in the execute or saved-file record that brought it in.
bob's own gbm-linkage workspace is killed and restarted here, so alice's stays up.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

import docker
import pytest
from websockets.exceptions import ConnectionClosed

from tests.e2e.hubclient import HubUser
from tests.e2e.sites import PROJECT
from tests.security.support import OTHER_PROJECT, SUITE_MARKS, Parties, plain_session

pytestmark = SUITE_MARKS

WORK = "/home/researcher/work"


def marker() -> str:
    return f"m{time.monotonic_ns()}"


# -- identity ----------------------------------------------------------------------------------


def test_the_record_body_cannot_name_the_actor(parties: Parties) -> None:
    body = {"kind": "execute", "detail": {"code": "1"}, "actor": "bob", "project": OTHER_PROJECT}
    answer = parties.audit_post(parties.alice.token, body)
    assert answer.status_code == 400, answer.text
    assert "unknown field" in answer.text


def test_a_detail_claiming_another_person_is_recorded_as_its_sender(parties: Parties) -> None:
    m = marker()
    detail = {"code": m, "actor": "bob", "user": "bob", "project": OTHER_PROJECT}
    answer = parties.audit_post(parties.alice.token, {"kind": "execute", "detail": detail})
    assert answer.status_code == 201, answer.text
    [record] = parties.records_mentioning(m)
    assert (record.actor, record.project, record.server) == ("alice", PROJECT, PROJECT)


def test_the_kernel_message_header_cannot_name_the_user(parties: Parties) -> None:
    m = marker()
    with parties["alice"].kernel(PROJECT) as kernel:
        message = kernel.execute_request(f"print('{m}')")
        message["header"]["username"] = "bob"
        kernel.send(message)
        assert kernel.collect(message["header"]["msg_id"]).raise_for_error() == f"{m}\n"
    [record] = [r for r in parties.records_mentioning(m) if r.kind == "execute"]
    assert record.actor == "alice"


@pytest.mark.parametrize(
    "token", [None, "not-a-token", "0" * 32], ids=["no-token", "made-up", "zeros"]
)
def test_a_record_without_a_server_token_is_refused(parties: Parties, token: str | None) -> None:
    m = marker()
    answer = parties.audit_post(token, {"kind": "execute", "detail": {"code": m}})
    assert answer.status_code in (401, 403), answer.text
    assert parties.records_mentioning(m) == []


def test_the_browser_session_is_not_a_workspace(parties: Parties) -> None:
    """alice's login cookie (her hub session) cannot write records as a workspace."""
    m = marker()
    cookies = {c.name: c.value for c in parties["alice"].session.cookies}
    sent = plain_session().post(
        f"http://127.0.0.1:{parties.site.settings.audit.port}/records",
        json={"kind": "execute", "detail": {"code": m}},
        cookies=cookies,
        timeout=60,
    )
    assert sent.status_code in (401, 403), sent.text
    assert parties.records_mentioning(m) == []


def test_another_projects_token_cannot_write_into_this_projects_log(parties: Parties) -> None:
    m = marker()
    answer = parties.audit_post(parties.carla.token, {"kind": "execute", "detail": {"code": m}})
    assert answer.status_code == 201, answer.text  # it is carla's own record...
    assert parties.records_mentioning(m, PROJECT) == []  # ...never in gbm-linkage's chain
    [record] = parties.records_mentioning(m, OTHER_PROJECT)
    assert record.actor == "carla"


def test_a_workspace_cannot_write_a_hub_side_kind(parties: Parties) -> None:
    for kind in ("review_released", "permit_ended_stop", "server_started"):
        answer = parties.audit_post(parties.alice.token, {"kind": kind, "detail": {}})
        assert answer.status_code == 400, (kind, answer.text)
        assert "is not one a workspace sends" in answer.text


# -- code the websocket never saw ----------------------------------------------------------------

ZMQ_SCRIPT = """
import os
from jupyter_client import BlockingKernelClient
runtime = os.environ["JUPYTER_RUNTIME_DIR"]
client = BlockingKernelClient(connection_file=f"{{runtime}}/kernel-{target}.json")
client.load_connection_file()
client.start_channels()
client.execute({hidden!r})
reply = client.get_shell_msg(timeout=60)
client.stop_channels()
print(reply["content"]["status"])
"""

STARTUP = "/tmp/ipython/profile_default/startup"  # IPYTHONDIR is on the /tmp tmpfs


def hidden_code(m: str) -> str:
    return f"open('{WORK}/ran-{m}', 'w').write('ran')"


def zmq_from_saved_file(alice: HubUser, m: str) -> None:
    target = alice.server_api(PROJECT, "POST", "/kernels", json={"name": "python3"}).json()["id"]
    try:
        script = ZMQ_SCRIPT.format(target=target, hidden=hidden_code(m))
        saved = alice.server_api(
            PROJECT,
            "PUT",
            f"/contents/zmq-{m}.py",
            json={"type": "file", "format": "text", "content": script},
        )
        assert saved.status_code in (200, 201), saved.text
        out = alice.execute(PROJECT, f"exec(open('{WORK}/zmq-{m}.py').read())")
        assert out.strip() == "ok", out
    finally:
        alice.server_api(PROJECT, "DELETE", f"/kernels/{target}")


def zmq_from_a_cell(alice: HubUser, m: str) -> None:
    target = alice.server_api(PROJECT, "POST", "/kernels", json={"name": "python3"}).json()["id"]
    try:
        script = ZMQ_SCRIPT.format(target=target, hidden=hidden_code(m))
        encoded = script.encode().hex()  # obfuscated: still in the record, decodable
        out = alice.execute(PROJECT, f"exec(bytes.fromhex('{encoded}').decode())")
        assert out.strip() == "ok", out
    finally:
        alice.server_api(PROJECT, "DELETE", f"/kernels/{target}")


def ipython_startup_file(alice: HubUser, m: str) -> None:
    encoded = hidden_code(m).encode().hex()  # the planting cell does not spell it out
    plant = (
        "import os\n"
        f"os.makedirs({STARTUP!r}, exist_ok=True)\n"
        f"open({STARTUP!r} + '/00-{m}.py', 'w').write(bytes.fromhex('{encoded}').decode())\n"
    )
    alice.execute(PROJECT, plant)
    try:
        alice.execute(PROJECT, "print('a new kernel ran the start-up file')")
    finally:
        alice.execute(PROJECT, f"import os; os.unlink({STARTUP!r} + '/00-{m}.py')")


HIDDEN_PATHS = {
    "zmq-to-another-kernel-from-a-saved-file": zmq_from_saved_file,
    "zmq-to-another-kernel-from-a-hex-encoded-cell": zmq_from_a_cell,
    "ipython-startup-file-in-tmp": ipython_startup_file,
}


def revealed(record_detail: dict[str, Any], code: str) -> bool:
    """`code` is in the record, as text or hex-encoded inside executed code."""
    text = json.dumps(record_detail)
    if code in text or json.dumps(code)[1:-1] in text:
        return True
    executed = str(record_detail.get("code", ""))
    if "bytes.fromhex('" in executed:
        encoded = executed.split("bytes.fromhex('", 1)[1].split("'", 1)[0]
        return code in bytes.fromhex(encoded).decode()
    return False


@pytest.mark.parametrize("path", sorted(HIDDEN_PATHS))
def test_code_run_around_the_websocket_is_still_in_the_log(parties: Parties, path: str) -> None:
    m = marker()
    HIDDEN_PATHS[path](parties["alice"], m)
    ran = parties.alice.run(f"import os; print(os.path.exists('{WORK}/ran-{m}'))").strip()
    assert ran == "True", "the hidden code did not run: the attempt proves nothing"
    code = hidden_code(m)
    records = parties.records()
    executed = [r for r in records if r.kind == "execute" and code in str(r.detail.get("code"))]
    assert executed == [], "the websocket saw the hidden code itself"
    revealing = [r for r in records if revealed(r.detail, code)]
    assert revealing, f"no audit record reveals {code!r}"
    assert all(r.actor == "alice" and r.project == PROJECT for r in revealing)


# -- turning the audit off ---------------------------------------------------------------------

PLANT = r"""
import errno, json, os
def attempt(path, text):
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        return "ok"
    except OSError as e:
        return "refused: " + errno.errorcode[e.errno]
override = (
    "c.ServerApp.jpserver_extensions = {'jupyter_tre_lab': False}\n"
    "c.ServerApp.kernel_websocket_connection_class = "
    "'jupyter_server.services.kernels.connection.channels.ZMQChannelsWebsocketConnection'\n"
)
disable = "import sys; sys.modules['jupyter_tre_lab'] = None\n"
home = os.path.expanduser("~")
print(json.dumps({
    "home-jupyter-config": attempt(f"{home}/.jupyter/jupyter_server_config.py", override),
    "user-site-pth": attempt(f"{home}/.local/lib/python3.11/site-packages/zz.pth", disable),
    "work-jupyter-config": attempt(f"{WORK}/jupyter_server_config.py", override),
    "work-jupyter-config-json": attempt(
        f"{WORK}/jupyter_server_config.json",
        json.dumps({"ServerApp": {"jpserver_extensions": {"jupyter_tre_lab": False}}})),
    "work-pth": attempt(f"{WORK}/zz-disable.pth", disable),
    "work-sitecustomize": attempt(f"{WORK}/sitecustomize.py", disable),
    "tmp-jupyter-config": attempt("/tmp/jupyter/jupyter_server_config.py", override),
}))
"""

PLANTED_IN_WORK = [
    "jupyter_server_config.py",
    "jupyter_server_config.json",
    "zz-disable.pth",
    "sitecustomize.py",
]


def bobs_container() -> Any:
    found = [
        c
        for c in docker.from_env().containers.list(
            all=True, filters={"label": f"org.jupyter-tre.project={PROJECT}"}
        )
        if c.name.startswith("tre-bob-")
    ]
    return found[0] if found else None


def test_planted_config_and_a_killed_server_do_not_turn_the_audit_off(parties: Parties) -> None:
    site = parties.site
    bob = parties["bob"]
    assert bob.spawn(PROJECT).status_code in (200, 302)
    bob.wait_ready(PROJECT)
    try:
        planted = json.loads(bob.execute(PROJECT, f"WORK = {WORK!r}\n" + PLANT))
        assert planted["home-jupyter-config"] == "refused: EROFS"
        assert planted["user-site-pth"] == "refused: EROFS"
        assert planted["work-pth"] == "ok"  # the folder is writable; loading it is the attack

        # Kill the server under the kernel: the container ends, and nothing runs unaudited.
        m = marker()
        created = bob.server_api(PROJECT, "POST", "/kernels", json={"name": "python3"})
        assert created.status_code == 201, created.text
        # No shutdown afterwards: the server it would ask is gone.
        with (
            contextlib.suppress(ConnectionClosed),
            bob.channel(PROJECT, created.json()["id"]) as kernel,
        ):
            message = kernel.execute_request(f"import os, signal  # {m}\nos.kill(os.getppid(), 9)")
            kernel.send(message)
            time.sleep(3)
        deadline = time.monotonic() + 60
        while (c := bobs_container()) is not None and c.status == "running":
            assert time.monotonic() < deadline, "bob's container survived its server"
            time.sleep(1)
        killing = [r for r in parties.records_mentioning(m) if r.kind == "execute"]
        assert [r.actor for r in killing] == ["bob"], "the killing cell itself was not recorded"

        # Restarted with everything planted in the folder: the extension is still there.
        deadline = time.monotonic() + 90
        while bob.server(PROJECT) is not None and time.monotonic() < deadline:
            bob.api("DELETE", f"/users/bob/servers/{PROJECT}")
            time.sleep(2)
        assert bob.spawn(PROJECT).status_code in (200, 302)
        bob.wait_ready(PROJECT)
        download = bob.get(f"/user/bob/{PROJECT}/files/ok.csv", allow_redirects=False)
        assert download.status_code == 403, download.status_code
        after = marker()
        assert bob.execute(PROJECT, f"print('{after}')") == f"{after}\n"
        [record] = [r for r in parties.records_mentioning(after) if r.kind == "execute"]
        assert record.actor == "bob"
    finally:
        for name in PLANTED_IN_WORK:
            (site.settings.workspaces_dir / PROJECT / name).unlink(missing_ok=True)
        if bob.server(PROJECT) is not None:
            bob.stop(PROJECT)


def test_the_audit_log_is_not_in_the_workspace(parties: Parties) -> None:
    """The container mounts the project's datasets, its folder and resources, and nothing of
    the site's state (audit log, databases, keys)."""
    settings = parties.site.settings
    [container] = [
        c
        for c in docker.from_env().containers.list(
            filters={"label": f"org.jupyter-tre.project={PROJECT}"}
        )
        if c.name.startswith("tre-alice-")
    ]
    sources = {m["Source"] for m in container.attrs["Mounts"]}
    allowed_roots = (
        settings.datasets_dir / PROJECT,
        settings.workspaces_dir / PROJECT,
    )
    unexpected = [
        s
        for s in sources
        if not any(Path(s).is_relative_to(root) for root in allowed_roots) and "resources" not in s
    ]
    assert unexpected == [], unexpected
    for state in (settings.db_dir, settings.logs_dir, settings.keys_dir):
        assert not any(Path(s).is_relative_to(state) for s in sources), state
