"""The audit service: workspaces write their records here before they act (`tre-audit`).

`POST /records` answers 201 only once the record is in both copies of the project's
chain; any other answer means *not recorded*, and the workspace refuses the action.
Who the record is about comes from the request's Hub token, the hub and the policy
(`identity`), never from the body. Run by JupyterHub as a managed service:
`python -m tre.audit.service`, settings from `$TRE_SETTINGS`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jupyterhub.services.auth import HubAuth
from tornado import httpserver, web

from tre.settings import Settings, load_settings

from .events import WORKSPACE_KINDS, AuditEvent, EventKind
from .identity import (
    PolicyCache,
    Refused,
    ServerDirectory,
    Workspace,
    check_permit,
    check_server_token,
)
from .records import AuditStoreError
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
        self.policy = PolicyCache(settings.policy_dir)
        self.servers = ServerDirectory(self._hub_user)

    async def _hub_user(self, name: str) -> dict[str, Any] | None:
        url = f"{self.hub_auth.api_url.rstrip('/')}/users/{quote(name, safe='')}"
        model: dict[str, Any] | None = await self.hub_auth._api_request("GET", url)
        return model

    async def identify(self, token: str) -> Workspace:
        try:
            model = await self.hub_auth.user_for_token(token, use_cache=True, sync=False)
        except web.HTTPError as exc:
            raise Refused(503, "the hub cannot be asked who this is; nothing was recorded") from exc
        user, server = check_server_token(model)
        try:
            project = await self.servers.project_of(user, server)
        except web.HTTPError as exc:
            raise Refused(503, "the hub cannot be asked about this server") from exc
        permit = check_permit(self.policy.current(date.today()), user, project, date.today())
        return Workspace(user=user, server=server, project=project, permit=permit.id)


def parse_record(body: bytes) -> tuple[EventKind, dict[str, Any]]:
    """(kind, detail) of a request body, or Refused(400) naming what is wrong."""
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
            workspace = await self.service.identify(self._token())
            if self._too_large:
                limit = self.service.settings.audit.max_record_bytes
                raise Refused(413, f"the record is larger than {limit} bytes; not recorded")
            kind, detail = parse_record(b"".join(self._chunks))
        except Refused as refused:
            self.refuse(refused)
            return
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
            record = self.service.store.append(event)
        except AuditStoreError as exc:
            log.error("not recorded for %s/%s: %s", workspace.user, workspace.server, exc)
            self.refuse(Refused(500, "the audit log cannot record this; nothing was run"))
            return
        self.set_status(201)
        self.finish({"project": record.project, "seq": record.seq, "hash": record.hash})

    def _token(self) -> str:
        match = TOKEN_HEADER.match(self.request.headers.get("Authorization", ""))
        if match is None:
            raise Refused(401, "no token: send the server's Hub token (Authorization: token …)")
        return match.group(1)


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
    asyncio.run(serve(settings_from_env()))


if __name__ == "__main__":  # pragma: no cover
    main()
