"""Kernel starts, restarts, interrupts and shutdowns, recorded as `kernel_event` records.

jupyter_server 2.21.1 emits `kernel_actions/v1` on its event bus after each action succeeds;
the action has already happened, so a record the service does not confirm is logged as an
error rather than undone (executions stay gated by the websocket audit).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from jupyter_events import EventLogger

from .audit_client import AuditClient, AuditError

KERNEL_ACTIONS_SCHEMA = "https://events.jupyter.org/jupyter_server/kernel_actions/v1"
ACTIONS = frozenset({"start", "restart", "interrupt", "shutdown"})


class KernelEventRecorder:
    """An event-bus listener; `drain()` waits for records still on their way."""

    def __init__(self, audit: AuditClient, log: logging.Logger | logging.LoggerAdapter[Any]):
        self.audit = audit
        self.log = log
        self._pending: set[asyncio.Task[Any]] = set()

    async def __call__(self, logger: EventLogger, schema_id: str, data: dict[str, Any]) -> None:
        action, kernel_id = data.get("action"), data.get("kernel_id")
        if data.get("status") != "success" or action not in ACTIONS or not kernel_id:
            return
        task = asyncio.current_task()
        if task is not None:
            self._pending.add(task)
        detail = {"kernel_id": kernel_id, "action": action, "kernel_name": data.get("kernel_name")}
        try:
            await self.audit.record("kernel_event", detail)
        except AuditError as exc:
            self.log.error(
                "jupyter-tre: kernel %s %s was not recorded: %s", kernel_id, action, exc.message
            )
        finally:
            if task is not None:
                self._pending.discard(task)

    async def drain(self, timeout: float) -> None:
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=timeout)
