"""A real, recording audit service for the extension's tests: a small tornado app on a
loopback port that answers like `src/tre/audit` (201 + confirmation), and can be told to
refuse, to be slow, or be stopped."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
from dataclasses import dataclass, field
from typing import Any

from tornado import httpserver, web
from tornado.testing import bind_unused_port

TOKEN = "test-server-token"


@dataclass
class Record:
    kind: str
    detail: dict[str, Any]
    authorization: str | None


@dataclass
class AuditService:
    """The service's state; tests flip `mode` between "ok", "refuse", "slow" and "garbage"."""

    mode: str = "ok"
    delay: float = 0.0
    refuse_message: str = "no usable permit for project demo today"
    records: list[Record] = field(default_factory=list)
    server: httpserver.HTTPServer | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def of_kind(self, kind: str) -> list[Record]:
        return [r for r in self.records if r.kind == kind]

    def start(self) -> None:
        sock, self.port = bind_unused_port()
        self.server = httpserver.HTTPServer(
            web.Application([(r"/records", _RecordsHandler, {"service": self})])
        )
        self.server.add_sockets([sock])

    async def stop(self) -> None:
        """Stop listening and drop kept-alive connections: further records meet a refused
        connection."""
        if self.server is not None:
            server, self.server = self.server, None
            server.stop()
            await server.close_all_connections()


class _RecordsHandler(web.RequestHandler):
    def initialize(self, service: AuditService) -> None:
        self.service = service

    async def post(self) -> None:
        service = self.service
        if service.mode == "slow":
            await asyncio.sleep(service.delay)
        if service.mode == "refuse":
            self.set_status(403)
            self.finish({"message": service.refuse_message})
            return
        body = json.loads(self.request.body)
        record = Record(body["kind"], body["detail"], self.request.headers.get("Authorization"))
        service.records.append(record)
        if service.mode == "garbage":
            self.set_status(201)
            self.finish({"unexpected": True})
            return
        digest = hashlib.sha256(self.request.body).hexdigest()
        self.set_status(201)
        self.finish({"project": "demo", "seq": len(service.records), "hash": digest})


def free_port() -> int:
    """A loopback port nobody listens on (for "connection refused")."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
