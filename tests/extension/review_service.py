"""A real, recording stand-in for the hub-side review service's researcher API: a small
tornado app on a loopback port that keeps requests in memory, records every call it gets
(with its Authorization header) and can be told to refuse or be stopped."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from tornado import httpserver, web
from tornado.testing import bind_unused_port

from tre.review.models import Controls
from tre.review.web.api import FILE_FIELDS

FILE_BODY_FIELDS = set(FILE_FIELDS)


@dataclass
class Call:
    method: str
    path: str
    body: Any
    authorization: str | None


@dataclass
class ReviewService:
    """The service's state; tests set `refuse` to a message to get 403s."""

    refuse: str | None = None
    calls: list[Call] = field(default_factory=list)
    requests: dict[str, dict[str, Any]] = field(default_factory=dict)
    server: httpserver.HTTPServer | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        sock, self.port = bind_unused_port()
        args = {"service": self}
        self.server = httpserver.HTTPServer(
            web.Application(
                [
                    (r"/api/requests", _Requests, args),
                    (r"/api/requests/([^/]+)", _Request, args),
                    (r"/api/requests/([^/]+)/files", _Files, args),
                    (r"/api/requests/([^/]+)/submit", _Submit, args),
                ]
            )
        )
        self.server.add_sockets([sock])

    async def stop(self) -> None:
        if self.server is not None:
            server, self.server = self.server, None
            server.stop()
            await server.close_all_connections()


class _Handler(web.RequestHandler):
    def initialize(self, service: ReviewService) -> None:
        self.service = service

    def prepare(self) -> None:
        body = json.loads(self.request.body) if self.request.body else None
        self.service.calls.append(
            Call(
                self.request.method or "",
                self.request.path,
                body,
                self.request.headers.get("Authorization"),
            )
        )
        if self.service.refuse is not None:
            self.set_status(403)
            self.finish({"message": self.service.refuse})

    def body(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.request.body)
        return data

    def find(self, request_id: str) -> dict[str, Any]:
        request = self.service.requests.get(request_id)
        if request is None:
            self.set_status(404)
            self.finish({"message": f"no request {request_id}"})
            raise web.Finish
        return request

    def reply(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data))


class _Requests(_Handler):
    def get(self) -> None:
        self.reply({"requests": list(self.service.requests.values())})

    def post(self) -> None:
        body = self.body()
        request_id = str(len(self.service.requests) + 1)
        request = {
            "id": request_id, "title": body["title"], "state": "draft", "files": [],
            "updated": "2026-11-23T12:00:00Z",
        }  # fmt: skip
        self.service.requests[request_id] = request
        self.reply(request, 201)


class _Request(_Handler):
    def get(self, request_id: str) -> None:
        self.reply(self.find(request_id))


class _Files(_Handler):
    def post(self, request_id: str) -> None:
        request = self.find(request_id)
        body = self.body()
        # The real service's contract (tre.review.web.api.FilesHandler), checked as strictly.
        if set(body) != FILE_BODY_FIELDS:
            self.set_status(400)
            self.finish({"message": f"fields {sorted(body)}, expected {sorted(FILE_BODY_FIELDS)}"})
            return
        try:
            Controls.model_validate(body["controls"])
        except ValidationError as exc:
            self.set_status(400)
            self.finish({"message": f"'controls': {exc}"})
            return
        path = body["path"]
        request["files"].append({"name": path, "verdict": "pending", "summary": ""})
        self.reply(request, 201)


class _Submit(_Handler):
    def post(self, request_id: str) -> None:
        request = self.find(request_id)
        request["state"] = "submitted"
        for f in request["files"]:
            f["verdict"], f["summary"] = "pass", "no cell below 10"
        self.reply(request)
