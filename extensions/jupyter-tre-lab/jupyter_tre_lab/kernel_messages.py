"""Kernel websocket frames, decoded once: what is audited is exactly what is forwarded.

A frame either decodes completely (channel, header with `msg_type` and `msg_id`, content) or
is `MalformedFrame`; it is never forwarded undecoded. v1 frames
(`v1.kernel.websocket.jupyter.org`) keep their original packed parts for forwarding; legacy
JSON (or legacy binary) frames keep the parsed message.
"""

# jupyter_server 2.21.1 leaves most of its API unannotated.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import hashlib
import itertools
import json
import struct
from dataclasses import dataclass, field
from typing import Any, Literal

from jupyter_client.jsonutil import json_default
from jupyter_client.session import Session
from jupyter_server.services.kernels.connection.base import (
    deserialize_binary_message,
    deserialize_msg_from_ws_v1,
    serialize_msg_to_ws_v1,
)

V1_PROTOCOL = "v1.kernel.websocket.jupyter.org"
AUDITED_TYPES = frozenset({"execute_request", "comm_msg", "input_reply", "debug_request"})
"""`debug_request` is audited too: its `evaluate` command runs code in the kernel."""

Protocol = Literal["v1", "legacy"]


class MalformedFrame(ValueError):
    """A websocket frame that does not decode to a kernel message."""


@dataclass
class KernelMessage:
    protocol: Protocol
    channel: str
    header: dict[str, Any]
    content: dict[str, Any]
    buffers: list[bytes]
    parts: list[bytes] = field(default_factory=list)
    """v1: [header, parent_header, metadata, content, *buffers] exactly as received."""
    legacy: dict[str, Any] = field(default_factory=dict)
    """legacy: the parsed message, as jupyter_server would send it."""

    @property
    def msg_type(self) -> str:
        return str(self.header["msg_type"])

    @property
    def msg_id(self) -> str:
        return str(self.header["msg_id"])


def decode_frame(frame: str | bytes, subprotocol: str | None) -> KernelMessage:
    """Decode one incoming websocket frame in the connection's protocol."""
    if subprotocol == V1_PROTOCOL:
        return _decode_v1(frame)
    return _decode_legacy(frame)


def _decode_v1(frame: str | bytes) -> KernelMessage:
    if not isinstance(frame, bytes):
        raise MalformedFrame("a text frame on the v1 protocol (v1 frames are binary)")
    count = int.from_bytes(frame[:8], "little") if len(frame) >= 8 else 0
    # channel + header, parent_header, metadata, content + the end offset
    if count < 6 or 8 * (count + 1) > len(frame):
        raise MalformedFrame(f"v1 frame of {len(frame)} bytes announces {count} offsets")
    offsets = [int.from_bytes(frame[8 * (i + 1) : 8 * (i + 2)], "little") for i in range(count)]
    if offsets[0] != 8 * (count + 1) or offsets[-1] != len(frame):
        raise MalformedFrame("v1 frame offsets do not span the frame")
    if any(b < a for a, b in itertools.pairwise(offsets)):
        raise MalformedFrame("v1 frame offsets are not in order")
    try:
        channel, parts = deserialize_msg_from_ws_v1(frame)
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedFrame(f"v1 frame does not decode: {exc}") from None
    # With the checks above, the channel and the parts cover the whole frame: no byte is
    # forwarded that was not decoded here.
    kept = [bytes(p) for p in parts]  # one copy of each part: decoded, then forwarded as is
    header = _json_object(kept[0], "header")
    content = _json_object(kept[3], "content")
    _json_object(kept[1], "parent_header")
    _json_object(kept[2], "metadata")
    _check_header(header)
    return KernelMessage(
        protocol="v1",
        channel=channel,
        header=header,
        content=content,
        buffers=kept[4:],
        parts=kept,
    )


def _decode_legacy(frame: str | bytes) -> KernelMessage:
    msg = _parse_legacy(frame)
    channel = msg.pop("channel", None)
    if channel is None:
        channel = "shell"  # as jupyter_server assumes
    if not isinstance(channel, str):
        raise MalformedFrame("channel is not a string")
    header = msg.get("header")
    if not isinstance(header, dict):
        raise MalformedFrame("missing header")
    _check_header(header)
    content = msg.get("content", {})
    for key, value in (
        ("content", content),
        *((k, msg.get(k, {})) for k in ("parent_header", "metadata")),
    ):
        if not isinstance(value, dict):
            raise MalformedFrame(f"{key} is not an object")
    buffers = msg.get("buffers") or []
    if not isinstance(buffers, list) or not all(isinstance(b, bytes) for b in buffers):
        # JSON frames cannot carry binary buffers; only the binary legacy form can.
        raise MalformedFrame("buffers in a JSON frame")
    return KernelMessage(
        protocol="legacy",
        channel=channel,
        header=header,
        content=content,
        buffers=list(buffers),
        legacy=msg,
    )


def _parse_legacy(frame: str | bytes) -> dict[str, Any]:
    """A legacy frame as a dict: JSON text, or jupyter_server's binary form with buffers."""
    if isinstance(frame, bytes):
        if len(frame) < 4:
            raise MalformedFrame("legacy binary frame shorter than its header")
        (count,) = struct.unpack("!i", frame[:4])
        if count < 1 or 4 * (count + 1) > len(frame):
            raise MalformedFrame(f"legacy binary frame announces {count} buffers")
        try:
            msg = deserialize_binary_message(frame)
        except (UnicodeDecodeError, ValueError, KeyError, TypeError, struct.error) as exc:
            raise MalformedFrame(f"legacy binary frame does not decode: {exc}") from None
    else:
        try:
            msg = json.loads(frame)
        except ValueError as exc:
            raise MalformedFrame(f"invalid JSON: {exc}") from None
    if not isinstance(msg, dict):
        raise MalformedFrame("the message is not a JSON object")
    return msg


def _json_object(part: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(part.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedFrame(f"{what} is not UTF-8 JSON: {exc}") from None
    if not isinstance(value, dict):
        raise MalformedFrame(f"{what} is not a JSON object")
    return value


def _check_header(header: dict[str, Any]) -> None:
    for key in ("msg_type", "msg_id"):
        if not isinstance(header.get(key), str) or not header[key]:
            raise MalformedFrame(f"header has no {key}")


def execute_detail(msg: KernelMessage, kernel_id: str) -> dict[str, Any]:
    """The `detail` of the `execute` record for an audited message (see audit-records.md)."""
    detail: dict[str, Any] = {
        "kernel_id": kernel_id,
        "session": msg.header.get("session"),
        "msg_id": msg.msg_id,
        "msg_type": msg.msg_type,
        "channel": msg.channel,
        "protocol": msg.protocol,
    }
    content = msg.content
    if msg.msg_type == "execute_request":
        code = content.get("code")
        if not isinstance(code, str):
            raise MalformedFrame("execute_request without a code string")
        detail["code"] = code
        detail["size"] = len(code.encode("utf-8", "surrogatepass"))
    else:
        recorded: Any
        if msg.msg_type == "comm_msg":
            recorded = content.get("data")
            detail["comm_id"] = content.get("comm_id")
        elif msg.msg_type == "input_reply":
            recorded = content.get("value")
        else:
            recorded = content
        detail["content"] = recorded
        detail["size"] = len(
            json.dumps(recorded, ensure_ascii=False).encode("utf-8", "surrogatepass")
        )
    if msg.buffers:
        detail["buffers"] = [
            {"sha256": hashlib.sha256(b).hexdigest(), "size": len(b)} for b in msg.buffers
        ]
    return detail


def refusal_frames(
    session: Session, msg: KernelMessage, ename: str, evalue: str
) -> list[str | bytes]:
    """What the person sees under the cell: an iopub `error`, the shell reply (for
    `execute_request`) with status error, and iopub status idle, all parented to `msg`."""
    parent = msg.header
    traceback = [f"{ename}: {evalue}"]
    error: dict[str, Any] = {"ename": ename, "evalue": evalue, "traceback": traceback}
    replies: list[tuple[str, dict[str, Any]]] = [("iopub", session.msg("error", error, parent))]
    if msg.msg_type == "execute_request":
        reply = {**error, "status": "error", "execution_count": None}
        replies.append(("shell", session.msg("execute_reply", reply, parent)))
    elif msg.msg_type == "debug_request":
        reply = {
            "type": "response",
            "success": False,
            "message": evalue,
            "command": msg.content.get("command"),
            "request_seq": msg.content.get("seq"),
            "seq": 0,
        }
        replies.append(("control", session.msg("debug_reply", reply, parent)))
    replies.append(("iopub", session.msg("status", {"execution_state": "idle"}, parent)))
    frames: list[str | bytes] = []
    for channel, reply_msg in replies:
        if msg.protocol == "v1":
            frames.append(serialize_msg_to_ws_v1(reply_msg, channel, session.pack))
        else:
            frames.append(
                json.dumps({**reply_msg, "channel": channel, "buffers": []}, default=json_default)
            )
    return frames
