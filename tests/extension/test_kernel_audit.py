"""Executions reach the kernel only after the audit service has recorded them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jupyter_server.services.kernels.connection.base import serialize_binary_message

from tests.extension.audit_service import TOKEN, free_port
from tests.extension.kernel_ws import V1, KernelClient, of_type

pytestmark = pytest.mark.security


async def open_kernel(jp_fetch: Any, jp_ws_fetch: Any, protocol: str) -> tuple[str, KernelClient]:
    r = await jp_fetch("api", "kernels", method="POST", body=json.dumps({"name": "python3"}))
    kernel_id = json.loads(r.body)["id"]
    client = KernelClient(ws=None, protocol=protocol)  # type: ignore[arg-type]
    kwargs = {"subprotocols": [V1]} if protocol == "v1" else {}
    client.ws = await jp_ws_fetch(
        "api",
        "kernels",
        kernel_id,
        "channels",
        params={"session_id": client.session.session},
        **kwargs,
    )
    assert (client.ws.selected_subprotocol == V1) == (protocol == "v1")
    await client.ready()
    return kernel_id, client


@pytest.fixture(params=["v1", "legacy"])
def protocol(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def touch(path: Path) -> str:
    return f"open({str(path)!r}, 'a').write('x')"


async def test_execute_is_recorded_once_then_run(
    jp_fetch, jp_ws_fetch, audit_service, protocol, tmp_path
):
    kernel_id, kc = await open_kernel(jp_fetch, jp_ws_fetch, protocol)
    marker = tmp_path / "ran"
    msg_id = await kc.execute(touch(marker))
    replies = await kc.until_done(msg_id)
    assert of_type(replies, "execute_reply")[0]["content"]["status"] == "ok"
    assert marker.read_text() == "x"
    [record] = audit_service.of_kind("execute")
    assert record.authorization == f"token {TOKEN}"
    assert record.detail == {
        "kernel_id": kernel_id, "session": kc.session.session, "msg_id": msg_id,
        "msg_type": "execute_request", "channel": "shell", "protocol": protocol,
        "code": touch(marker), "size": len(touch(marker).encode()),
    }  # fmt: skip


async def test_order_is_kept_behind_a_slow_audit(
    jp_fetch, jp_ws_fetch, audit_service, protocol, tmp_path
):
    _, kc = await open_kernel(jp_fetch, jp_ws_fetch, protocol)
    audit_service.mode, audit_service.delay = "slow", 0.3
    log = tmp_path / "log"
    first = await kc.execute(f"open({str(log)!r}, 'a').write('a')")
    info = await kc.send(kc.message("kernel_info_request", {}))
    second = await kc.execute(f"open({str(log)!r}, 'a').write('b')")
    await kc.until_done(second)
    assert log.read_text() == "ab"
    assert [r.detail["msg_id"] for r in audit_service.of_kind("execute")] == [first, second]
    replies = [m["parent_header"]["msg_id"] for ch, m in kc.received if ch == "shell"]
    assert replies.index(first) < replies.index(info) < replies.index(second)


REFUSED = {"refuse", "upgrade_refused"}
"""Failures the service states (AuditRefused); every other one is AuditUnavailable."""


@pytest.mark.parametrize(
    "failure",
    [
        "refuse",  # a 403 reply to the record
        "upgrade_refused",  # the websocket itself refused (403 at the upgrade)
        "stopped",  # nothing listening
        "timeout",  # the reply comes after TRE_AUDIT_TIMEOUT
        "hang",  # no reply at all
        "drop",  # the connection closes after the record was read, before its reply
        "garbage",  # 201 without a confirmation
        "malformed",  # a reply that is not JSON
        "wrong_id",  # a valid confirmation, but of another record
    ],
)
async def test_unconfirmed_code_never_reaches_the_kernel(
    jp_fetch, jp_ws_fetch, audit_service, protocol, tmp_path, failure
):
    _, kc = await open_kernel(jp_fetch, jp_ws_fetch, protocol)
    if failure == "stopped":
        await audit_service.stop()
    elif failure == "timeout":
        audit_service.mode, audit_service.delay = "slow", 3.0  # TRE_AUDIT_TIMEOUT is 2 s
    elif failure == "upgrade_refused":
        audit_service.upgrade_status = 403
        await audit_service.drop_connections()  # the kernel's start record opened one
    else:
        audit_service.mode = failure
    marker = tmp_path / "ran"
    msg_id = await kc.execute(touch(marker))
    replies = await kc.until_done(msg_id)
    [error] = of_type(replies, "error")
    [reply] = of_type(replies, "execute_reply")
    assert reply["content"]["status"] == "error"
    if failure in REFUSED:
        assert error["content"]["ename"] == "AuditRefused"
        assert audit_service.refuse_message in error["content"]["evalue"]
    else:
        assert error["content"]["ename"] == "AuditUnavailable"
    assert error["content"]["traceback"], "JupyterLab shows the traceback lines"
    assert not marker.exists()
    if failure != "stopped":
        # The kernel is alive and would have run the refused request before this one; a
        # connection that failed is replaced by a new one for the next record.
        audit_service.mode, audit_service.upgrade_status = "ok", None
        later = await kc.execute("1 + 1")
        replies = await kc.until_done(later)
        assert of_type(replies, "execute_reply")[0]["content"]["status"] == "ok"
        assert not marker.exists()
        reconnected = failure not in {"refuse", "garbage"}  # answers to that very record
        assert audit_service.records[-1].connection == (2 if reconnected else 1)


async def test_order_is_kept_across_a_dropped_connection(
    jp_fetch, jp_ws_fetch, audit_service, protocol, tmp_path
):
    _, kc = await open_kernel(jp_fetch, jp_ws_fetch, protocol)
    log = tmp_path / "log"

    def append(letter: str) -> str:
        return f"open({str(log)!r}, 'a').write({letter!r})"

    first = await kc.execute(append("a"))
    await kc.until_done(first)
    audit_service.mode = "drop"
    dropped = await kc.execute(append("b"))
    [error] = of_type(await kc.until_done(dropped), "error")
    assert error["content"]["ename"] == "AuditUnavailable"
    assert "connection to the audit service was lost" in error["content"]["evalue"]
    audit_service.mode = "ok"
    # Sent back to back: queued behind each other on the new connection, run in order.
    later = [await kc.execute(append(letter)) for letter in "cde"]
    await kc.until_done(later[-1])
    assert log.read_text() == "acde"
    records = audit_service.of_kind("execute")
    assert [r.detail["msg_id"] for r in records] == [first, dropped, *later]
    assert [r.connection for r in records] == [1, 1, 2, 2, 2]


async def test_records_carry_the_token_only_in_the_upgrade(
    jp_fetch, jp_ws_fetch, audit_service, protocol
):
    _, kc = await open_kernel(jp_fetch, jp_ws_fetch, protocol)
    await kc.until_done(await kc.execute("1"))
    [record] = audit_service.of_kind("execute")
    assert record.authorization == f"token {TOKEN}"
    assert TOKEN not in json.dumps(record.detail)
    assert set(record.detail) >= {"kernel_id", "msg_id", "code"}


@pytest.mark.parametrize("extra_env", [{"TRE_AUDIT_URL": ""}])
async def test_no_audit_url_refuses_every_execution(jp_fetch, jp_ws_fetch, protocol, tmp_path):
    _, kc = await open_kernel(jp_fetch, jp_ws_fetch, protocol)
    marker = tmp_path / "ran"
    replies = await kc.until_done(await kc.execute(touch(marker)))
    [error] = of_type(replies, "error")
    assert error["content"]["ename"] == "AuditUnavailable"
    assert "TRE_AUDIT_URL" in error["content"]["evalue"]
    assert not marker.exists()


async def test_huge_cell_is_refused_without_a_record(
    jp_fetch, jp_ws_fetch, audit_service, protocol, tmp_path
):
    _, kc = await open_kernel(jp_fetch, jp_ws_fetch, protocol)
    marker = tmp_path / "ran"
    code = touch(marker) + "\n#" + "x" * 40_000  # TRE_MAX_RECORD_BYTES is 32 KiB in these tests
    replies = await kc.until_done(await kc.execute(code))
    [error] = of_type(replies, "error")
    assert error["content"]["ename"] == "AuditRefused"
    assert "TRE_MAX_RECORD_BYTES" in error["content"]["evalue"]
    assert audit_service.of_kind("execute") == []
    assert not marker.exists()


@pytest.mark.parametrize(
    ("protocol", "frame"),
    [
        ("v1", b"\x00\x01garbage"),
        ("v1", (2**40).to_bytes(8, "little") + b"x" * 16),  # absurd offset count
        ("v1", "a text frame on the binary protocol"),
        ("legacy", "{not json"),
        ("legacy", json.dumps({"channel": "shell", "content": {"code": "1"}})),  # no header
        ("legacy", json.dumps({"channel": "shell", "header": {"msg_id": "1"}, "content": {}})),
        ("legacy", b"\x7f\xff\xff\xffbinary"),  # legacy binary frame announcing 2**31 buffers
    ],
)
async def test_malformed_frames_are_dropped(jp_fetch, jp_ws_fetch, audit_service, protocol, frame):
    _, kc = await open_kernel(jp_fetch, jp_ws_fetch, protocol)
    await kc.ws.write_message(frame, binary=isinstance(frame, bytes))
    msg_id = await kc.execute("1 + 1")
    await kc.until_done(msg_id)
    assert [r.detail["msg_id"] for r in audit_service.of_kind("execute")] == [msg_id]


async def test_unicode_code_is_recorded_exactly(jp_fetch, jp_ws_fetch, audit_service, protocol):
    _, kc = await open_kernel(jp_fetch, jp_ws_fetch, protocol)
    code = "print('Pseudonymisé 🧬 中文')"
    replies = await kc.until_done(await kc.execute(code))
    assert of_type(replies, "stream")[0]["content"]["text"] == "Pseudonymisé 🧬 中文\n"
    [record] = audit_service.of_kind("execute")
    assert record.detail["code"] == code
    assert record.detail["size"] == len(code.encode("utf-8"))


async def test_comm_msg_buffers_are_recorded_by_hash(
    jp_fetch, jp_ws_fetch, audit_service, protocol
):
    _, kc = await open_kernel(jp_fetch, jp_ws_fetch, protocol)
    buffers = [b"\x00\x01\x02", b"pixels" * 100]
    comm = kc.message("comm_msg", {"comm_id": "c-1", "data": {"method": "update", "value": 3}})
    if protocol == "v1":
        await kc.send(comm, buffers=buffers)
    else:
        await kc.ws.write_message(
            serialize_binary_message({**comm, "channel": "shell", "buffers": buffers}), binary=True
        )
    done = await kc.execute("1")
    await kc.until_done(done)
    comm_record, exec_record = audit_service.of_kind("execute")
    assert comm_record.detail["msg_type"] == "comm_msg"
    assert comm_record.detail["content"] == {"method": "update", "value": 3}
    assert comm_record.detail["comm_id"] == "c-1"
    import hashlib

    assert comm_record.detail["buffers"] == [
        {"sha256": hashlib.sha256(b).hexdigest(), "size": len(b)} for b in buffers
    ]
    assert exec_record.detail["msg_id"] == done


async def test_input_reply_is_recorded_before_the_kernel_sees_it(
    jp_fetch, jp_ws_fetch, audit_service, protocol
):
    _, kc = await open_kernel(jp_fetch, jp_ws_fetch, protocol)
    request = kc.message(
        "execute_request", {"code": "x = input('id? ')\nprint(x[::-1])", "allow_stdin": True}
    )
    msg_id = await kc.send(request)
    while True:
        channel, msg = await kc.next()
        if channel == "stdin" and msg["msg_type"] == "input_request":
            break
    reply = kc.session.msg("input_reply", {"value": "P0042"}, parent=msg["header"])
    await kc.send(reply, channel="stdin")
    replies = await kc.until_done(msg_id)
    assert of_type(replies, "stream")[0]["content"]["text"] == "2400P\n"
    kinds = [
        (r.detail["msg_type"], r.detail.get("content")) for r in audit_service.of_kind("execute")
    ]
    assert kinds == [("execute_request", None), ("input_reply", "P0042")]
    assert audit_service.of_kind("execute")[1].detail["channel"] == "stdin"


async def test_other_messages_are_forwarded_without_a_record(
    jp_fetch, jp_ws_fetch, audit_service, protocol
):
    _, kc = await open_kernel(jp_fetch, jp_ws_fetch, protocol)
    msg_id = await kc.send(kc.message("complete_request", {"code": "impo", "cursor_pos": 4}))
    replies = await kc.until_done(msg_id, reply_type="complete_reply")
    assert "import" in of_type(replies, "complete_reply")[0]["content"]["matches"]
    assert audit_service.of_kind("execute") == []


async def test_kernel_lifecycle_is_recorded(jp_fetch, audit_service):
    import asyncio

    r = await jp_fetch("api", "kernels", method="POST", body=json.dumps({"name": "python3"}))
    kernel_id = json.loads(r.body)["id"]
    await jp_fetch("api", "kernels", kernel_id, "interrupt", method="POST", body="")
    await jp_fetch("api", "kernels", kernel_id, "restart", method="POST", body="")
    await jp_fetch("api", "kernels", kernel_id, method="DELETE")
    for _ in range(50):
        actions = [r.detail["action"] for r in audit_service.of_kind("kernel_event")]
        if "shutdown" in actions and "restart" in actions:
            break
        await asyncio.sleep(0.1)
    events = audit_service.of_kind("kernel_event")
    assert {e.detail["kernel_id"] for e in events} == {kernel_id}
    assert {e.detail["kernel_name"] for e in events} == {"python3"}
    actions = [e.detail["action"] for e in events]
    assert actions[0] == "start"
    assert {"start", "interrupt", "restart", "shutdown"} <= set(actions)
    assert actions[-1] == "shutdown"


def test_free_port_is_closed() -> None:
    import socket

    with socket.socket() as s, pytest.raises(ConnectionRefusedError):
        s.connect(("127.0.0.1", free_port()))
