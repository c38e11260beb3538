"""The kernel websocket, audited: code reaches the kernel only after the audit service has
confirmed its record.

Every incoming frame is decoded once and queued; one worker per connection takes the queue
in order, records `execute_request`, `comm_msg`, `input_reply` (and `debug_request`) over
the audit websocket and forwards each message only after its confirmation. A slow audit
therefore delays, but never reorders, the messages behind it; each message is audited
exactly once. When the record is not confirmed the message is dropped and the person gets
an error reply under the cell.
"""

# jupyter_server 2.21.1 leaves most of its API unannotated.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import asyncio
from typing import Any

from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection
from tornado.websocket import WebSocketClosedError

from .audit_client import AuditClient, AuditError, AuditRefused, AuditUnavailable
from .kernel_messages import (
    AUDITED_TYPES,
    KernelMessage,
    MalformedFrame,
    decode_frame,
    execute_detail,
    refusal_frames,
)

AUDIT_SETTING = "jupyter_tre_lab.audit"
"""The tornado setting holding the server's `AuditClient`."""

_Queued = tuple[KernelMessage, dict[str, Any] | None]


class AuditedChannelsConnection(ZMQChannelsWebsocketConnection):
    """`ZMQChannelsWebsocketConnection` that audits before it forwards (fail closed)."""

    _queue: asyncio.Queue[_Queued] | None = None
    _worker: asyncio.Task[None] | None = None

    def handle_incoming_message(self, incoming_msg: Any) -> None:
        """Decode and queue a frame from the browser; malformed frames are dropped here."""
        if not self.channels:
            self.log.debug("Received message on closed websocket")
            return
        try:
            msg = decode_frame(incoming_msg, self.subprotocol)
            detail = execute_detail(msg, self.kernel_id) if msg.msg_type in AUDITED_TYPES else None
        except MalformedFrame as exc:
            self.log.warning(
                "jupyter-tre: dropped a malformed frame on kernel %s: %s", self.kernel_id, exc
            )
            return
        if msg.channel not in self.channels:
            self.log.warning("jupyter-tre: dropped a message for unknown channel %r", msg.channel)
            return
        allowed = self.multi_kernel_manager.allowed_message_types
        if allowed and msg.msg_type not in allowed:
            self.log.warning(
                'Received message of type "%s", which is not allowed. Ignoring.', msg.msg_type
            )
            return
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._worker = asyncio.ensure_future(self._drain(self._queue))
        self._queue.put_nowait((msg, detail))

    async def _drain(self, queue: asyncio.Queue[_Queued]) -> None:
        while True:
            msg, detail = await queue.get()
            try:
                await self._process(msg, detail)
            except Exception:
                # Not forwarded: fail closed, and say so under the cell.
                self.log.exception("jupyter-tre: could not audit %s %s", msg.msg_type, msg.msg_id)
                self._refuse(msg, AuditUnavailable("the workspace could not audit this request"))

    async def _process(self, msg: KernelMessage, detail: dict[str, Any] | None) -> None:
        if detail is not None:
            try:
                await self._record(msg, detail)
            except AuditError as exc:
                self._refuse(msg, exc)
                return
        self._forward(msg)

    async def _record(self, msg: KernelMessage, detail: dict[str, Any]) -> None:
        audit = self.websocket_handler.settings.get(AUDIT_SETTING)
        if not isinstance(audit, AuditClient):
            raise AuditUnavailable("the audit is not set up in this workspace (jupyter_tre_lab)")
        try:
            body = audit.check_size("execute", detail)
        except AuditRefused:
            limit = audit.settings.max_record_bytes
            what = "this cell's code" if msg.msg_type == "execute_request" else "this message"
            raise AuditRefused(
                f"{what} is {detail['size']} bytes; requests larger than about {limit} bytes "
                "(TRE_MAX_RECORD_BYTES) cannot be audited and are not run. Split the cell, or "
                "save the code in a file and import it."
            ) from None
        # No log line per record: the audit log is the record, and jupyter_server's logger
        # formats debug records even when no handler shows them.
        await audit.send(body)

    def connect(self) -> asyncio.Future[None] | None:  # type: ignore[override]
        """As jupyter_server connects, with Nagle's algorithm off on the browser's websocket:
        a reply's small frames go out at once instead of waiting for the browser's delayed
        ACK (about 40 ms whenever cells follow each other, as in Run All)."""
        handler = self.websocket_handler
        if handler.ws_connection is not None:
            handler.set_nodelay(True)
        connected: asyncio.Future[None] | None = super().connect()
        return connected

    def _forward(self, msg: KernelMessage) -> None:
        stream = self.channels.get(msg.channel)
        if stream is None:  # the connection closed while the record was on its way
            self.log.warning(
                "jupyter-tre: %s %s not forwarded: channel closed", msg.msg_type, msg.msg_id
            )
            return
        if msg.protocol == "v1":
            self.session.send_raw(stream, msg.parts)
        else:
            self.session.send(stream, msg.legacy)

    def _refuse(self, msg: KernelMessage, exc: AuditError) -> None:
        self.log.warning(
            "jupyter-tre: %s %s on kernel %s not run: %s",
            msg.msg_type, msg.msg_id, self.kernel_id, exc.message,
        )  # fmt: skip
        for frame in refusal_frames(self.session, msg, exc.ename, exc.message):
            try:
                self.write_message(frame, binary=isinstance(frame, bytes))
            except WebSocketClosedError:
                self.log.info("jupyter-tre: could not tell the browser; the websocket is closed")
                return

    def disconnect(self) -> None:  # type: ignore[override]  # sync in ZMQChannels...
        """Drop what is still queued (it was never forwarded) and close as usual."""
        if self._worker is not None:
            self._worker.cancel()
            self._worker = None
        self._queue = None
        super().disconnect()
