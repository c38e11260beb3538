"""The audit service under a real JupyterHub: identity from the server's Hub token only.

The hub runs the site's own configuration (`tre.hub.configure`), so `tre-audit` is the
managed service and role it defines; only the spawner and authenticator are swapped for
ones that need no Docker and no OIDC provider. A named server alice/gbm-linkage is spawned
through the hub's API with user_options {"project": "gbm-linkage"}; its stand-in process
hands the test the JUPYTERHUB_API_TOKEN the hub gave it, which is what a workspace sends.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.integration.standin_hub import HubPlan, StandinHub, free_port, site_settings, standin_hub
from tre.audit import EventKind, open_store
from tre.settings import AuditSettings, Settings

pytestmark = [pytest.mark.slow, pytest.mark.security]

ADMIN_TOKEN = "test-admin-" + "0" * 32
MAX_RECORD = 4096


@dataclass
class Site:
    hub: StandinHub
    audit_url: str

    @property
    def settings(self) -> Settings:
        return self.hub.settings

    @property
    def policy_dir(self) -> Path:
        return self.hub.settings.policy_dir

    def admin(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.hub.admin(method, path, **kwargs)

    def spawn(self, user: str, server: str, project: str) -> str:
        return self.hub.spawn(user, server, project)

    def ws(self, token: str | None) -> ClientConnection:
        """The records websocket, as a workspace opens it (the token in the upgrade only)."""
        headers = {"Authorization": f"token {token}"} if token else {}
        return connect(
            self.audit_url.replace("http://", "ws://", 1) + "/records/ws",
            additional_headers=headers,
            compression=None,
            proxy=None,
            open_timeout=10,
        )

    def post(self, token: str | None, body: object | bytes) -> requests.Response:
        headers = {"Authorization": f"token {token}"} if token else {}
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return requests.post(f"{self.audit_url}/records", data=data, headers=headers, timeout=10)


PLAN = HubPlan(
    keep_services=frozenset({"tre-audit"}),
    groups={"tre-researchers": {"users": ["alice", "bob"]}},  # the OIDC provider's groups
    admin_scopes=("admin:users", "admin:servers", "tokens", "list:users"),
)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("audit-site")
    settings = site_settings(
        root, audit=AuditSettings(port=free_port(), max_record_bytes=MAX_RECORD)
    )
    with standin_hub(root, settings, PLAN, ADMIN_TOKEN) as hub:
        audit_url = f"http://127.0.0.1:{settings.audit.port}"
        hub.wait_for(f"{audit_url}/health")
        yield Site(hub, audit_url)


@pytest.fixture(scope="module")
def alice(site: Site) -> str:
    return site.spawn("alice", "gbm-linkage", "gbm-linkage")


EXECUTE = {"kind": "execute", "detail": {"msg_id": "m1", "code": "df.head()", "size": 9}}


def test_health_needs_no_token(site: Site) -> None:
    answer = requests.get(f"{site.audit_url}/health", timeout=5)
    assert (answer.status_code, answer.json()) == (200, {"ok": True})


def test_a_server_token_records_who_where_and_under_which_permit(site: Site, alice: str) -> None:
    answer = site.post(alice, EXECUTE)
    assert answer.status_code == 201, answer.text
    confirmed = answer.json()
    assert confirmed["project"] == "gbm-linkage"
    [record] = [
        r
        for r in open_store(site.settings).show(project="gbm-linkage")
        if r.seq == confirmed["seq"]
    ]
    assert record.hash == confirmed["hash"]
    assert (record.actor, record.server, record.project, record.permit, record.kind) == (
        "alice", "gbm-linkage", "gbm-linkage", "gbm-linkage-2026", EventKind.execute,
    )  # fmt: skip
    assert record.detail == EXECUTE["detail"]
    assert open_store(site.settings).verify().ok


def test_the_body_cannot_say_who_it_is_about(site: Site, alice: str) -> None:
    claims = {"actor": "bob", "project": "hf-outcomes", "permit": "hf-outcomes-2026"}
    assert site.post(alice, {**EXECUTE, **claims}).status_code == 400
    answer = site.post(alice, {"kind": "execute", "detail": {"code": "1", **claims}})
    assert answer.status_code == 201, answer.text
    record = open_store(site.settings).show(project="gbm-linkage")[-1]
    assert (record.actor, record.project, record.permit) == (
        "alice", "gbm-linkage", "gbm-linkage-2026",
    )  # fmt: skip
    assert not open_store(site.settings).show(project="hf-outcomes")


@pytest.mark.parametrize("token", [None, "not-a-token", "0" * 32])
def test_no_token_or_an_unknown_one_is_refused(site: Site, token: str | None) -> None:
    answer = site.post(token, EXECUTE)
    assert answer.status_code == 401
    assert answer.json()["message"]


def test_a_persons_own_token_is_refused(site: Site, alice: str) -> None:
    made = site.admin("POST", "/users/alice/tokens", json={"note": "alice's own"})
    assert made.status_code == 201, made.text
    answer = site.post(made.json()["token"], EXECUTE)
    assert answer.status_code == 403
    assert "not a workspace server's token" in answer.json()["message"]


def test_a_service_token_is_refused(site: Site) -> None:
    assert site.post(ADMIN_TOKEN, EXECUTE).status_code == 403


@pytest.fixture(scope="module")
def bob(site: Site) -> str:
    return site.spawn("bob", "hf-outcomes", "hf-outcomes")


@contextmanager
def permit_ended(site: Site) -> Iterator[None]:
    """bob's permit for hf-outcomes ends yesterday's year, for the duration."""
    permits = site.policy_dir / "permits.yaml"
    original = permits.read_text()
    ended = original.replace("    expiry: 2027-04-30\n", "    expiry: 2026-04-30\n")
    assert ended != original
    permits.write_text(ended)
    try:
        yield
    finally:
        permits.write_text(original)


def test_an_ended_permit_is_refused(site: Site, bob: str) -> None:
    assert site.post(bob, EXECUTE).status_code == 201
    with permit_ended(site):
        answer = site.post(bob, EXECUTE)
        assert answer.status_code == 403
        assert "no permit lets you work on project 'hf-outcomes' today" in answer.json()["message"]
    assert site.post(bob, EXECUTE).status_code == 201


def test_a_record_larger_than_the_limit_is_refused(site: Site, alice: str) -> None:
    big = {"kind": "execute", "detail": {"code": "x" * MAX_RECORD}}
    answer = site.post(alice, big)
    assert answer.status_code == 413
    assert f"larger than {MAX_RECORD} bytes" in answer.json()["message"]


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[1, 2]",
        json.dumps({"kind": "spawn_requested", "detail": {}}).encode(),
        json.dumps({"kind": "execute", "detail": "code"}).encode(),
    ],
)
def test_malformed_records_are_refused(site: Site, alice: str, body: bytes) -> None:
    answer = site.post(alice, body)
    assert answer.status_code == 400
    assert answer.json()["message"]


def test_one_connection_carries_many_records(site: Site, alice: str) -> None:
    before = len(open_store(site.settings).show(project="gbm-linkage"))
    with requests.Session() as session:
        for n in range(20):
            answer = session.post(
                f"{site.audit_url}/records",
                json={"kind": "kernel_event", "detail": {"action": "start", "n": n}},
                headers={"Authorization": f"token {alice}"},
                timeout=10,
            )
            assert answer.status_code == 201
    assert len(open_store(site.settings).show(project="gbm-linkage")) == before + 20
    assert open_store(site.settings).verify().ok


# -- the websocket: GET /records/ws ------------------------------------------------------------


def exchange(ws: ClientConnection, message: object | bytes) -> dict[str, object]:
    ws.send(message if isinstance(message, bytes) else json.dumps(message).encode())
    reply: dict[str, object] = json.loads(ws.recv(timeout=10))
    return reply


@pytest.mark.parametrize(("token", "status"), [(None, 401), ("not-a-token", 401), ("0" * 32, 401)])
def test_the_websocket_needs_a_known_token(site: Site, token: str | None, status: int) -> None:
    with pytest.raises(InvalidStatus) as refused:
        site.ws(token)
    assert refused.value.response.status_code == status
    assert json.loads(refused.value.response.body)["message"]


def test_the_websocket_refuses_a_persons_own_token_at_the_upgrade(site: Site, alice: str) -> None:
    made = site.admin("POST", "/users/alice/tokens", json={"note": "alice's own, for ws"})
    assert made.status_code == 201, made.text
    with pytest.raises(InvalidStatus) as refused:
        site.ws(made.json()["token"])
    assert refused.value.response.status_code == 403
    assert "not a workspace server's token" in json.loads(refused.value.response.body)["message"]
    with pytest.raises(InvalidStatus) as refused:
        site.ws(ADMIN_TOKEN)
    assert refused.value.response.status_code == 403


def test_the_websocket_records_who_from_the_token_only(site: Site, alice: str) -> None:
    claims = {"actor": "bob", "project": "hf-outcomes", "permit": "hf-outcomes-2026"}
    with site.ws(alice) as ws:
        reply = exchange(ws, {"id": 7, **EXECUTE})
        assert reply["id"] == 7 and reply["status"] == 201, reply
        assert reply["project"] == "gbm-linkage"
        # Claims in the message are refused, and the connection stays usable.
        refused = exchange(ws, {"id": 8, **EXECUTE, **claims})
        assert (refused["id"], refused["status"]) == (8, 400)
        assert "unknown field" in str(refused["message"])
        inside = exchange(ws, {"id": 9, "kind": "execute", "detail": {"code": "1", **claims}})
        assert inside["status"] == 201, inside
    records = {r.seq: r for r in open_store(site.settings).show(project="gbm-linkage")}
    for confirmed in (reply, inside):
        record = records[confirmed["seq"]]  # type: ignore[index]
        assert record.hash == confirmed["hash"]
        assert (record.actor, record.server, record.project, record.permit) == (
            "alice", "gbm-linkage", "gbm-linkage", "gbm-linkage-2026",
        )  # fmt: skip
    assert records[reply["seq"]].detail == EXECUTE["detail"]  # type: ignore[index]
    other = open_store(site.settings).show(project="hf-outcomes")  # bob's own records only
    assert {r.actor for r in other} <= {"bob"}
    assert open_store(site.settings).verify().ok


def test_the_websocket_checks_the_permit_for_every_record(site: Site, bob: str) -> None:
    with site.ws(bob) as ws:
        assert exchange(ws, {"id": 1, **EXECUTE})["status"] == 201
        with permit_ended(site):
            refused = exchange(ws, {"id": 2, **EXECUTE})
            assert (refused["id"], refused["status"]) == (2, 403)
            assert "no permit lets you work on project 'hf-outcomes' today" in str(
                refused["message"]
            )
        assert exchange(ws, {"id": 3, **EXECUTE})["status"] == 201


def test_the_websocket_refuses_an_oversized_record_and_stays_open(site: Site, alice: str) -> None:
    with site.ws(alice) as ws:
        big = {"id": 1, "kind": "execute", "detail": {"code": "x" * MAX_RECORD}}
        refused = exchange(ws, big)
        assert (refused["id"], refused["status"]) == (1, 413)
        assert f"larger than {MAX_RECORD} bytes" in str(refused["message"])
        assert exchange(ws, {"id": 2, **EXECUTE})["status"] == 201


def test_the_websocket_closes_on_a_message_far_over_the_limit(site: Site, alice: str) -> None:
    with site.ws(alice) as ws:
        ws.send(b'{"id": 1, "kind": "execute", "detail": {"code": "' + b"x" * 10 * MAX_RECORD)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


@pytest.mark.parametrize(
    "message",
    [
        {"id": 1, "kind": "spawn_requested", "detail": {}},
        {"id": 1, "kind": "execute", "detail": "code"},
        {"id": 1, "kind": "execute", "detail": {}, "token": "x"},
    ],
)
def test_the_websocket_answers_a_bad_record_and_stays_open(
    site: Site, alice: str, message: dict[str, object]
) -> None:
    with site.ws(alice) as ws:
        refused = exchange(ws, message)
        assert (refused["id"], refused["status"]) == (1, 400)
        assert refused["message"]
        assert exchange(ws, {"id": 2, **EXECUTE})["status"] == 201


@pytest.mark.parametrize(
    "message", [b"{not json", b"[1, 2]", json.dumps({"kind": "execute", "detail": {}}).encode()]
)
def test_the_websocket_closes_when_a_reply_could_not_be_matched(
    site: Site, alice: str, message: bytes
) -> None:
    """No id, no reply to match: answered with id null, then closed with a reason (1008)."""
    with site.ws(alice) as ws:
        refused = exchange(ws, message)
        assert (refused["id"], refused["status"]) == (None, 400)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        assert closed.value.rcvd.reason


def test_the_websocket_answers_in_order(site: Site, alice: str) -> None:
    before = len(open_store(site.settings).show(project="gbm-linkage"))
    with site.ws(alice) as ws:
        for n in range(20):  # all sent before any reply is read
            ws.send(json.dumps({"id": n, "kind": "kernel_event", "detail": {"n": n}}).encode())
        replies = [json.loads(ws.recv(timeout=10)) for _ in range(20)]
    assert [r["id"] for r in replies] == list(range(20))
    assert {r["status"] for r in replies} == {201}
    seqs = [r["seq"] for r in replies]
    assert seqs == sorted(seqs) and len(set(seqs)) == 20
    records = open_store(site.settings).show(project="gbm-linkage")
    assert len(records) == before + 20
    assert [r.detail["n"] for r in records[-20:]] == list(range(20))
    assert open_store(site.settings).verify().ok
