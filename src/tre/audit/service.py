"""The audit service: workspaces write their records here before they act (`tre-audit`).

A record is confirmed (201, over `POST /records` or as a reply on the `GET /records/ws`
websocket) only once it is in both copies of the project's chain; any other answer means
*not recorded*, and the workspace refuses the action. Both paths go through
`AuditService.accept`: who the record is about comes from the request's Hub token, the hub
and the policy (`identity`), never from the body. Run by JupyterHub as a managed service:
`python -m tre.audit.service`, settings from `$TRE_SETTINGS`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from jupyterhub.services.auth import HubAuth
from tornado import httpserver, httputil, web, websocket

from tre.lifeline import end_with_parent
from tre.settings import Settings, load_settings

from .events import WORKSPACE_KINDS, AuditEvent, EventKind
from .identity import Refused, Workspace, WorkspaceIdentifier
from .records import AuditRecord, AuditStoreError
from .store import AuditStore, open_store

log = logging.getLogger("tre.audit.service")

TOKEN_HEADER = re.compile(r"^(?:token|bearer)\s+(\S+)\s*$", re.IGNORECASE)
TOKEN_CACHE_SECONDS = 30
"""How long the hub's answer about a token is reused (a stopped server's token dies with it)."""


class AuditService:
    """What the handlers share: settings, the store, the hub and the policy."""

    def __init__(self, settings: Settings, store: AuditStore, hub_auth: HubAuth) -> None:
        self.settings = settings
        self.store = store
        self.hub_auth = hub_auth
        self.identifier = WorkspaceIdentifier(hub_auth, settings.policy_dir)

    async def identify(self, token: str) -> Workspace:
        """The workspace (user, server, project, permit) a server token speaks for."""
        return await self.identifier.identify(token)

    async def accept(
        self, token: str, body: bytes | dict[str, Any], *, too_large: bool = False
    ) -> AuditRecord:
        """Identify the writer, check the record and append it: the one path of every
        workspace record (`POST /records` and each websocket message). Refused says why not.

        Identity (and the permit) are resolved for every record, so a revocation or an
        ended permit counts from the next record on, whichever path it comes by."""
        workspace = await self.identify(token)
        if too_large:
            limit = self.settings.audit.max_record_bytes
            raise Refused(413, f"the record is larger than {limit} bytes; not recorded")
        kind, detail = parse_record(body)
        event = AuditEvent(
            kind=kind,
            actor=workspace.user,
            project=workspace.project,
            permit=workspace.permit,
            server=workspace.server,
            detail=detail,
        )
        try:
            # On the event loop, not in a thread: appends to a chain are serial anyway, and
            # a thread hop costs a quarter of the time of a whole record.
            return self.store.append(event)
        except AuditStoreError as exc:
            log.error("not recorded for %s/%s: %s", workspace.user, workspace.server, exc)
            raise Refused(500, "the audit log cannot record this; nothing was run") from exc


def token_of(headers: httputil.HTTPHeaders) -> str:
    """The Hub token of the `Authorization` header, or Refused(401)."""
    match = TOKEN_HEADER.match(headers.get("Authorization", ""))
    if match is None:
        raise Refused(401, "no token: send the server's Hub token (Authorization: token …)")
    return match.group(1)


def confirmation(record: AuditRecord) -> dict[str, Any]:
    """What a 201 carries: the record's place in its chain."""
    return {"project": record.project, "seq": record.seq, "hash": record.hash}


def parse_record(body: bytes | dict[str, Any]) -> tuple[EventKind, dict[str, Any]]:
    """(kind, detail) of a request body (or of a websocket message already parsed, its `id`
    taken out), or Refused(400) naming what is wrong."""
    if isinstance(body, dict):
        payload: object = body
    else:
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise Refused(400, f"the body is not JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise Refused(400, 'the body must be a JSON object {"kind": ..., "detail": {...}}')
    unknown = set(payload) - {"kind", "detail"}
    if unknown:
        raise Refused(
            400, f"unknown field(s) {sorted(unknown)}: the service decides who, where and when"
        )
    kind = payload.get("kind")
    allowed = sorted(str(k) for k in WORKSPACE_KINDS)
    if kind not in allowed:
        raise Refused(400, f"kind {kind!r} is not one a workspace sends (allowed: {allowed})")
    detail = payload.get("detail", {})
    if not isinstance(detail, dict):
        raise Refused(400, "detail must be a JSON object")
    return EventKind(kind), detail


class BaseHandler(web.RequestHandler):
    def initialize(self, service: AuditService) -> None:
        self.service = service

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")

    def refuse(self, refused: Refused) -> None:
        self.set_status(refused.status)
        self.finish({"message": refused.message})

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = exc.log_message if isinstance(exc, web.HTTPError) and exc.log_message else None
        self.finish({"message": message or self._reason})


class HealthHandler(BaseHandler):
    def get(self) -> None:
        self.finish({"ok": True})


@web.stream_request_body
class RecordsHandler(BaseHandler):
    """POST /records: one record from a workspace, confirmed once durable."""

    def prepare(self) -> None:
        self._chunks: list[bytes] = []
        self._size = 0
        self._too_large = False
        limit = self.service.settings.audit.max_record_bytes
        length = self.request.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > limit:
            # Refused before the body is read; tornado then closes the connection.
            self.refuse(Refused(413, f"the record is larger than {limit} bytes; not recorded"))

    def data_received(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > self.service.settings.audit.max_record_bytes:
            self._too_large, self._chunks = True, []
        elif not self._too_large:
            self._chunks.append(chunk)

    async def post(self) -> None:
        try:
            record = await self.service.accept(
                token_of(self.request.headers), b"".join(self._chunks), too_large=self._too_large
            )
        except Refused as refused:
            self.refuse(refused)
            return
        self.set_status(201)
        self.finish(confirmation(record))


WS_ID_ALLOWANCE = 32
"""Bytes a websocket message may carry beyond `max_record_bytes`: its `"id": n,`."""


class RecordsSocket(websocket.WebSocketHandler):
    """GET /records/ws: a workspace's records over one websocket, each confirmed by a reply.

    The token is checked at the upgrade (a refused upgrade is an HTTP error with the same
    status and message as `POST /records` would get) and again, with the permit, for every
    record through `AuditService.accept`. Messages are handled one at a time in the order
    they arrive (tornado reads the next frame only when `on_message` has returned), so the
    replies come in the order of the records. A message that cannot be answered by its id
    (not JSON, not an object, no integer `id`) is answered with `"id": null` and the
    connection is closed (1008), since the writer can no longer match replies to records;
    any other refusal is a reply and the connection stays open.
    """

    def initialize(self, service: AuditService) -> None:
        self.service = service
        self.token = ""

    @property
    def max_message_size(self) -> int:
        # Up to 8x the limit is read and answered 413; anything larger closes (1009).
        return 8 * (self.service.settings.audit.max_record_bytes + WS_ID_ALLOWANCE)

    def check_origin(self, origin: str) -> bool:
        return False  # workspaces' servers send no Origin; a browser never writes records

    async def get(self, *args: Any, **kwargs: Any) -> None:
        try:
            self.token = token_of(self.request.headers)
            await self.service.identify(self.token)
        except Refused as refused:
            self.set_status(refused.status)
            self.set_header("Content-Type", "application/json")
            self.set_header("Cache-Control", "no-store")
            self.finish({"message": refused.message})
            return
        await super().get(*args, **kwargs)

    def open(self, *args: str, **kwargs: str) -> None:
        self.set_nodelay(True)  # each reply is one small frame that a cell is waiting for

    async def on_message(self, message: str | bytes) -> None:
        try:
            payload = json.loads(message)
        except (ValueError, RecursionError) as exc:
            self._unusable(f"the message is not JSON: {exc}")
            return
        msg_id = payload.get("id") if isinstance(payload, dict) else None
        if not isinstance(msg_id, int) or isinstance(msg_id, bool):
            self._unusable(
                'each message must be a JSON object {"id": n, "kind": ..., "detail": ...}'
            )
            return
        del payload["id"]
        size = len(message) if isinstance(message, bytes) else len(message.encode("utf-8"))
        limit = self.service.settings.audit.max_record_bytes + WS_ID_ALLOWANCE
        try:
            record = await self.service.accept(self.token, payload, too_large=size > limit)
        except Refused as refused:
            self._reply({"id": msg_id, "status": refused.status, "message": refused.message})
            return
        self._reply({"id": msg_id, "status": 201, **confirmation(record)})

    def _reply(self, answer: dict[str, Any]) -> None:
        try:
            self.write_message(json.dumps(answer, separators=(",", ":")))
        except websocket.WebSocketClosedError:
            log.warning("the workspace closed its audit websocket before reply %s", answer["id"])

    def _unusable(self, message: str) -> None:
        self._reply({"id": None, "status": 400, "message": message})
        self.close(1008, "malformed message; records cannot be matched to replies")


def _log_request(handler: web.RequestHandler) -> None:
    status = handler.get_status()
    if status >= 400:
        log.warning(
            "%d %s %s %.1fms",
            status,
            handler.request.method,
            handler.request.uri,
            1000 * handler.request.request_time(),
        )


def make_app(service: AuditService) -> web.Application:
    return web.Application(
        [
            (r"/health", HealthHandler, {"service": service}),
            (r"/records", RecordsHandler, {"service": service}),
            (r"/records/ws", RecordsSocket, {"service": service}),
        ],
        log_function=_log_request,
    )


def settings_from_env() -> Settings:
    path = os.environ.get("TRE_SETTINGS")
    return load_settings(Path(path) if path else None)


async def serve(settings: Settings, hub_auth: HubAuth | None = None) -> None:
    """Listen on 0.0.0.0:<settings.audit.port> until cancelled."""
    store = open_store(settings)
    auth = hub_auth or HubAuth(cache_max_age=TOKEN_CACHE_SECONDS)
    app = make_app(AuditService(settings, store, auth))
    server = httpserver.HTTPServer(
        app,
        # Larger bodies are answered 413 by the handler; far larger ones just cut off.
        max_body_size=8 * settings.audit.max_record_bytes,
        idle_connection_timeout=3600,
    )
    server.listen(settings.audit.port, address="0.0.0.0")  # noqa: S104 - workspaces' gateways
    log.info("tre-audit listening on 0.0.0.0:%d", settings.audit.port)
    try:
        await asyncio.Event().wait()
    finally:
        server.stop()


def main() -> None:  # pragma: no cover - run by JupyterHub as a managed service
    logging.basicConfig(level=logging.INFO, format="[%(levelname)s %(name)s] %(message)s")
    end_with_parent()  # a killed hub's restart must find the port free
    asyncio.run(serve(settings_from_env()))


if __name__ == "__main__":  # pragma: no cover
    main()
