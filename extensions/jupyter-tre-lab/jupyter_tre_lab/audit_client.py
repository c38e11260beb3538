"""The workspace side of the audit: a record counts only once the service has confirmed it.

Records travel over one persistent websocket to the service (`GET /records/ws`, opened with
the server's Hub token in the `Authorization` header, never in a message). Each message
`{"id": n, "kind", "detail"}` is answered, in order, by `{"id": n, "status": 201, "project",
"seq", "hash"}` or `{"id": n, "status": 4xx/5xx, "message"}`. Anything else (no URL
configured, no connection, a refused upgrade, no reply within `audit_timeout`, a dropped
connection, an error status, a reply that is not a valid confirmation of that very record, a
record too large to send) raises an `AuditError` whose `message` is meant for the person
whose action was refused. A connection that dropped, timed out or answered out of turn is
closed with every record still waiting on it failed; the next record opens a new one.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal

from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.iostream import StreamClosedError
from tornado.websocket import (
    WebSocketClientConnection,
    WebSocketClosedError,
    WebSocketError,
    websocket_connect,
)

from .settings import TreSettings

RecordKind = Literal["execute", "file_saved", "kernel_event"]

RECORDS_WS_PATH = "/records/ws"
MAX_REPLY_BYTES = 64 * 1024
"""Replies are a few hundred bytes; a larger one closes the connection (fail closed)."""
PING_INTERVAL = 30.0
"""A connection whose peer went away unannounced is found out between cells, not on one."""


@dataclass(frozen=True)
class Confirmation:
    """The service's proof that a record is durable."""

    project: str
    seq: int
    hash: str


class AuditError(Exception):
    """The record was not confirmed; `message` says why, in words for the researcher."""

    ename = "AuditError"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class AuditUnavailable(AuditError):
    """The service could not be reached, did not answer in time, or is not configured."""

    ename = "AuditUnavailable"


class AuditRefused(AuditError):
    """The service (or this client, for an oversized record) refused the record."""

    ename = "AuditRefused"


def encode_record(kind: RecordKind, detail: dict[str, Any]) -> bytes:
    """The record as sent, without its message id (its length is what `max_record_bytes`
    limits, as for a `POST /records` body)."""
    record = {"kind": kind, "detail": detail}
    try:
        return json.dumps(record, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates (valid in JSON escapes, not in UTF-8)
        return json.dumps(record, ensure_ascii=True).encode("ascii")


def records_ws_url(audit_url: str) -> str:
    """`http(s)://host:port[/prefix]` → `ws(s)://host:port[/prefix]/records/ws`."""
    scheme, sep, rest = audit_url.partition("://")
    return f"{'wss' if scheme == 'https' else 'ws'}{sep}{rest}{RECORDS_WS_PATH}"


class _Channel:
    """One websocket to the service and the records waiting on it, oldest first."""

    def __init__(self) -> None:
        self.conn: WebSocketClientConnection | None = None
        self.pending: deque[tuple[int, asyncio.Future[Confirmation]]] = deque()
        self.closed = False

    def send(self, msg_id: int, body: bytes) -> asyncio.Future[Confirmation]:
        if self.closed or self.conn is None:
            raise AuditUnavailable("the connection to the audit service is closed")
        future: asyncio.Future[Confirmation] = asyncio.get_running_loop().create_future()
        # The record's own bytes after the id: one copy, no second encoding.
        message = b'{"id":%d,' % msg_id + memoryview(body)[1:]
        try:
            written = self.conn.write_message(message, binary=True)
        except WebSocketClosedError:
            self.fail("the connection to the audit service was lost")
            raise AuditUnavailable("the connection to the audit service was lost") from None
        # A write that fails later means a closed connection, which fails `future` itself.
        written.add_done_callback(_seen)
        self.pending.append((msg_id, future))
        return future

    def on_message(self, message: str | bytes | None) -> None:
        """tornado's callback for each reply, and None once the connection has closed."""
        if message is None:
            code = self.conn.close_code if self.conn is not None else None
            reason = self.conn.close_reason if self.conn is not None else None
            said = f" ({code}: {reason})" if code is not None and reason else ""
            self.fail(f"the connection to the audit service was lost{said}")
            return
        if not self.pending:
            self.fail("the audit service answered a record that was not sent", 1002)
            return
        msg_id, future = self.pending[0]
        try:
            reply = json.loads(message)
        except (ValueError, RecursionError):
            reply = None
        if not isinstance(reply, dict) or not _same_id(reply.get("id"), msg_id):
            # Unattributable: no later reply can be trusted to be about its record either.
            self.fail("the audit service sent a reply that confirms no record", 1002)
            return
        self.pending.popleft()
        if future.done():  # its sender has given up (and closed this channel)
            return
        try:
            future.set_result(_confirmation(reply))
        except AuditError as exc:
            future.set_exception(exc)

    def fail(self, why: str, code: int = 1000) -> None:
        """Close, and fail every record still waiting: none of them counts as recorded."""
        self.closed = True
        if self.conn is not None:
            self.conn.close(code, why[:120])
        while self.pending:
            _, future = self.pending.popleft()
            if not future.done():
                future.set_exception(AuditUnavailable(why))


def _seen(done: asyncio.Future[None]) -> None:
    if not done.cancelled():
        done.exception()


def _same_id(got: object, expected: int) -> bool:
    return isinstance(got, int) and not isinstance(got, bool) and got == expected


class AuditClient:
    """One persistent websocket per server, opened on first use; safe to share between
    handlers (records are numbered and answered in the order they are sent)."""

    def __init__(self, settings: TreSettings) -> None:
        self.settings = settings
        self._channel: _Channel | None = None
        self._connecting: asyncio.Lock | None = None
        self._ids = itertools.count(1)

    def check_size(self, kind: RecordKind, detail: dict[str, Any]) -> bytes:
        """The record to send, or `AuditRefused` if it is larger than the service accepts."""
        body = encode_record(kind, detail)
        if len(body) > self.settings.max_record_bytes:
            raise AuditRefused(
                f"this {kind} record would be {len(body)} bytes; the audit service accepts at "
                f"most {self.settings.max_record_bytes} bytes per record (TRE_MAX_RECORD_BYTES)"
            )
        return body

    async def record(self, kind: RecordKind, detail: dict[str, Any]) -> Confirmation:
        """Send one record and wait for the service's confirmation (at most `audit_timeout`)."""
        return await self.send(self.check_size(kind, detail))

    async def send(self, body: bytes) -> Confirmation:
        """Send a record already encoded by `check_size` and wait for its confirmation."""
        if not self.settings.audit_url:
            raise AuditUnavailable(
                "no audit service is configured for this workspace (TRE_AUDIT_URL)"
            )
        timeout = self.settings.audit_timeout
        channel: _Channel | None = None
        try:
            async with asyncio.timeout(timeout):
                channel = await self._open()
                return await channel.send(next(self._ids), body)
        except TimeoutError:
            if channel is not None:
                # Its state is unknown: a later reply could be this record's. Start afresh.
                channel.fail(f"the audit service did not confirm a record within {timeout:g} s")
            raise AuditUnavailable(
                f"the audit service did not confirm within {timeout:g} s"
            ) from None

    async def _open(self) -> _Channel:
        channel = self._channel
        if channel is not None and not channel.closed:
            return channel
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:  # one connection attempt for every record waiting
            channel = self._channel
            if channel is None or channel.closed:
                channel = await self._connect()
                self._channel = channel
            return channel

    async def _connect(self) -> _Channel:
        settings = self.settings
        assert settings.audit_url is not None  # checked by send()
        headers = {}
        if settings.audit_token:
            headers["Authorization"] = f"token {settings.audit_token}"
        request = HTTPRequest(
            records_ws_url(settings.audit_url),
            headers=headers,
            connect_timeout=settings.audit_timeout,
            request_timeout=settings.audit_timeout,
            follow_redirects=False,
        )
        channel = _Channel()
        connecting = websocket_connect(
            request,
            on_message_callback=channel.on_message,
            ping_interval=PING_INTERVAL,
            max_message_size=MAX_REPLY_BYTES,
        )
        try:
            conn = await asyncio.shield(connecting)
        except asyncio.CancelledError:
            # Timed out while connecting: a connection that opens after all is closed unused.
            asyncio.ensure_future(connecting).add_done_callback(_close_unused)
            raise
        except HTTPClientError as exc:
            if exc.code == 599 or exc.response is None:  # no HTTP answer at all
                raise AuditUnavailable(
                    f"the audit service could not be reached ({exc.message})"
                ) from None
            raise AuditRefused(
                f"the audit service refused the record ({exc.code}: {_message_of(exc)})"
            ) from None
        except (OSError, StreamClosedError, WebSocketError) as exc:
            raise AuditUnavailable(
                f"the audit service could not be reached ({type(exc).__name__}: {exc})"
            ) from None
        channel.conn = conn
        if conn.protocol is not None:
            conn.protocol.set_nodelay(True)  # every record is one small frame a cell waits on
        return channel

    async def aclose(self) -> None:
        if self._channel is not None:
            channel, self._channel = self._channel, None
            channel.fail("the workspace server is stopping")


def _close_unused(done: asyncio.Future[WebSocketClientConnection]) -> None:
    if not done.cancelled() and done.exception() is None:
        done.result().close(1000, "opened too late")


def _message_of(exc: HTTPClientError) -> str:
    body: object = None
    if exc.response is not None and exc.response.body:
        try:
            body = json.loads(exc.response.body)
        except ValueError:
            body = None
    message = body.get("message") if isinstance(body, dict) else None
    if not isinstance(message, str) or not message:
        message = exc.message or "no reason given"
    return message


def _confirmation(reply: dict[str, Any]) -> Confirmation:
    """The confirmation in a reply already matched to its record, or the refusal it says."""
    status = reply.get("status")
    if status != 201:
        message = reply.get("message")
        if not isinstance(status, int) or isinstance(status, bool) or not 400 <= status < 600:
            raise AuditUnavailable("the audit service answered without a valid status")
        if not isinstance(message, str) or not message:
            message = "no reason given"
        raise AuditRefused(f"the audit service refused the record ({status}: {message})")
    project, seq, digest = reply.get("project"), reply.get("seq"), reply.get("hash")
    if not (
        isinstance(project, str)
        and project
        and isinstance(seq, int)
        and not isinstance(seq, bool)
        and seq >= 1
        and isinstance(digest, str)
        and len(digest) == 64
    ):
        raise AuditUnavailable("the audit service answered 201 without a valid confirmation")
    return Confirmation(project=project, seq=seq, hash=digest)
