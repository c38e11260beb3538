"""A real, recording audit service for the extension's tests: a small tornado app on a
loopback port that speaks the service's websocket protocol (`GET /records/ws`, each
`{"id", "kind", "detail"}` answered by `{"id", "status": 201, "project", "seq", "hash"}`),
and can be told to refuse, be slow, hang, drop the connection mid-record, answer garbage,
or be stopped."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import socket
from dataclasses import dataclass, field
from typing import Any

from tornado import httpserver, web, websocket
from tornado.testing import bind_unused_port

TOKEN = "test-server-token"

MODES = ("ok", "refuse", "slow", "hang", "drop", "garbage", "malformed", "wrong_id")
"""ok; refuse (403 reply); slow (`delay` then ok); hang (never reply); drop (close the
connection after reading the record); garbage (201 without a confirmation); malformed (a
reply that is not JSON); wrong_id (a valid confirmation of another record)."""


@dataclass
class Record:
    kind: str
    detail: dict[str, Any]
    authorization: str | None
    connection: int
    """Which websocket brought it (1 for the first the service accepted, and so on)."""


@dataclass
class AuditService:
    """The service's state; tests flip `mode` (see MODES)."""

    mode: str = "ok"
    delay: float = 0.0
    refuse_message: str = "no usable permit for project demo today"
    records: list[Record] = field(default_factory=list)
    connections: int = 0
    upgrade_status: int | None = None
    """Refuse the websocket upgrade itself with this status."""
    server: httpserver.HTTPServer | None = None
    port: int = 0
    sockets: set[_RecordsSocket] = field(default_factory=set)
    released: asyncio.Event = field(default_factory=asyncio.Event)
    """Set on stop(): records held by "hang" are let go (unanswered)."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def of_kind(self, kind: str) -> list[Record]:
        return [r for r in self.records if r.kind == kind]

    def start(self) -> None:
        assert self.mode in MODES
        sock, self.port = bind_unused_port()
        self.server = httpserver.HTTPServer(
            web.Application([(r"/records/ws", _RecordsSocket, {"service": self})])
        )
        self.server.add_sockets([sock])

    async def drop_connections(self) -> None:
        """Close every open websocket (as a restart of the service would)."""
        for ws in list(self.sockets):
            ws.close(1001, "the audit service is restarting")
        await asyncio.sleep(0.05)  # let the closing handshakes finish

    async def stop(self) -> None:
        """Stop listening and close open websockets: further records meet a refused
        connection."""
        if self.server is not None:
            server, self.server = self.server, None
            server.stop()
            self.released.set()
            await self.drop_connections()
            await server.close_all_connections()


class _RecordsSocket(websocket.WebSocketHandler):
    def initialize(self, service: AuditService) -> None:
        self.service = service
        self.number = 0

    async def get(self, *args: Any, **kwargs: Any) -> None:
        if self.service.upgrade_status is not None:
            self.set_status(self.service.upgrade_status)
            self.finish({"message": self.service.refuse_message})
            return
        await super().get(*args, **kwargs)

    def open(self, *args: str, **kwargs: str) -> None:
        self.service.connections += 1
        self.number = self.service.connections
        self.service.sockets.add(self)

    def on_close(self) -> None:
        self.service.sockets.discard(self)

    async def on_message(self, message: str | bytes) -> None:
        service = self.service
        payload = json.loads(message)
        msg_id = payload.pop("id")
        if service.mode == "slow":
            await asyncio.sleep(service.delay)
        if service.mode == "hang":
            await service.released.wait()
            return
        if service.mode == "refuse":
            self._reply({"id": msg_id, "status": 403, "message": service.refuse_message})
            return
        authorization = self.request.headers.get("Authorization")
        record = Record(payload["kind"], payload["detail"], authorization, self.number)
        service.records.append(record)
        if service.mode == "drop":
            self.close(1011, "dropped mid-record")
        elif service.mode == "garbage":
            self._reply({"id": msg_id, "status": 201, "unexpected": True})
        elif service.mode == "malformed":
            self._reply_raw("201 not json {")
        else:
            raw = message.encode() if isinstance(message, str) else message
            digest = hashlib.sha256(raw).hexdigest()
            answer = {"status": 201, "project": "demo", "seq": len(service.records)}
            answer_id = msg_id + 1 if service.mode == "wrong_id" else msg_id
            self._reply({"id": answer_id, **answer, "hash": digest})

    def _reply(self, answer: dict[str, Any]) -> None:
        self._reply_raw(json.dumps(answer))

    def _reply_raw(self, text: str) -> None:
        # The workspace may have given up on this record (timeout) and closed.
        with contextlib.suppress(websocket.WebSocketClosedError):
            self.write_message(text)


def free_port() -> int:
    """A loopback port nobody listens on (for "connection refused")."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
