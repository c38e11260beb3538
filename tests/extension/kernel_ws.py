"""A minimal kernel websocket client speaking either protocol, for the extension's tests."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from jupyter_client.jsonutil import json_default
from jupyter_client.session import Session
from jupyter_server.services.kernels.connection.base import (
    deserialize_msg_from_ws_v1,
    serialize_msg_to_ws_v1,
)
from tornado.websocket import WebSocketClientConnection

V1 = "v1.kernel.websocket.jupyter.org"


@dataclass
class KernelClient:
    ws: WebSocketClientConnection
    protocol: str  # "v1" or "legacy"
    session: Session = field(default_factory=Session)
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def message(self, msg_type: str, content: dict[str, Any]) -> dict[str, Any]:
        return self.session.msg(msg_type, content)

    async def send(
        self, msg: dict[str, Any], channel: str = "shell", buffers: list[bytes] | None = None
    ) -> str:
        if self.protocol == "v1":
            parts = [
                self.session.pack(msg["header"]),
                self.session.pack(msg["parent_header"]),
                self.session.pack(msg["metadata"]),
                self.session.pack(msg["content"]),
                *(buffers or []),
            ]
            await self.ws.write_message(serialize_msg_to_ws_v1(parts, channel), binary=True)
        else:
            assert not buffers, "use send_legacy_binary for buffers"
            await self.ws.write_message(
                json.dumps({**msg, "channel": channel}, default=json_default)
            )
        return str(msg["header"]["msg_id"])

    async def execute(self, code: str) -> str:
        return await self.send(self.message("execute_request", {"code": code, "silent": False}))

    async def ready(self, attempts: int = 20) -> None:
        """Until the kernel's iopub channel carries messages to us: outputs of code sent
        before the subscription is live are lost (a race of every fresh kernel)."""
        for _ in range(attempts):
            msg_id = await self.send(self.message("kernel_info_request", {}))
            iopub = False
            while True:
                channel, msg = await self.next()
                if msg["parent_header"].get("msg_id") != msg_id:
                    continue
                iopub = iopub or channel == "iopub"
                if msg["msg_type"] == "kernel_info_reply":
                    break
            if iopub:
                return
            await asyncio.sleep(0.2)
        raise AssertionError(f"no iopub message from the kernel after {attempts} requests")

    async def next(self, timeout: float = 20) -> tuple[str, dict[str, Any]]:
        raw = await asyncio.wait_for(self.ws.read_message(), timeout)
        assert raw is not None, "websocket closed"
        if isinstance(raw, bytes) and self.protocol == "v1":
            channel, parts = deserialize_msg_from_ws_v1(raw)
            msg = {
                "header": json.loads(parts[0]),
                "parent_header": json.loads(parts[1]),
                "content": json.loads(parts[3]),
            }
        else:
            msg = json.loads(raw)
            channel = msg.pop("channel")
        msg["msg_type"] = msg["header"]["msg_type"]
        self.received.append((channel, msg))
        return channel, msg

    async def until_done(
        self, msg_id: str, reply_type: str = "execute_reply"
    ) -> list[tuple[str, dict[str, Any]]]:
        """Messages for `msg_id` until both its reply and the iopub idle status have come."""
        seen: list[tuple[str, dict[str, Any]]] = []
        got_reply = got_idle = False
        while not (got_reply and got_idle):
            channel, msg = await self.next()
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            seen.append((channel, msg))
            if msg["msg_type"] == reply_type:
                got_reply = True
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                got_idle = True
        return seen


def of_type(msgs: list[tuple[str, dict[str, Any]]], msg_type: str) -> list[dict[str, Any]]:
    return [m for _, m in msgs if m["msg_type"] == msg_type]
