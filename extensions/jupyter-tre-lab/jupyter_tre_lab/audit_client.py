"""The workspace side of `POST /records`: a record counts only once the service answers 201.

Anything else (no URL configured, connection refused, timeout, an error status, a 201 without
a valid confirmation, a record too large to send) raises an `AuditError` whose `message` is
meant for the person whose action was refused.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from .settings import TreSettings

RecordKind = Literal["execute", "file_saved", "kernel_event"]


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
    """The exact request body sent for a record (its length is what `max_record_bytes` limits)."""
    record = {"kind": kind, "detail": detail}
    try:
        return json.dumps(record, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates (valid in JSON escapes, not in UTF-8)
        return json.dumps(record, ensure_ascii=True).encode("ascii")


class AuditClient:
    """One persistent keep-alive connection pool per server; safe to share between handlers."""

    def __init__(self, settings: TreSettings, transport: httpx.AsyncBaseTransport | None = None):
        self.settings = settings
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            headers = {"Content-Type": "application/json"}
            if self.settings.audit_token:
                headers["Authorization"] = f"token {self.settings.audit_token}"
            self._client = httpx.AsyncClient(
                base_url=self.settings.audit_url or "",
                headers=headers,
                timeout=httpx.Timeout(self.settings.audit_timeout),
                limits=httpx.Limits(max_keepalive_connections=4, keepalive_expiry=60),
                transport=self._transport,
                trust_env=False,  # never route audit records through a proxy from the environment
            )
        return self._client

    def check_size(self, kind: RecordKind, detail: dict[str, Any]) -> bytes:
        """The body to send, or `AuditRefused` if it is larger than the service accepts."""
        body = encode_record(kind, detail)
        if len(body) > self.settings.max_record_bytes:
            raise AuditRefused(
                f"this {kind} record would be {len(body)} bytes; the audit service accepts at "
                f"most {self.settings.max_record_bytes} bytes per record (TRE_MAX_RECORD_BYTES)"
            )
        return body

    async def record(self, kind: RecordKind, detail: dict[str, Any]) -> Confirmation:
        """Send one record and wait for the service's confirmation (at most `audit_timeout`)."""
        body = self.check_size(kind, detail)
        if not self.settings.audit_url:
            raise AuditUnavailable(
                "no audit service is configured for this workspace (TRE_AUDIT_URL)"
            )
        timeout = self.settings.audit_timeout
        try:
            async with asyncio.timeout(timeout):
                response = await self._http().post("/records", content=body)
        except (TimeoutError, httpx.TimeoutException):
            raise AuditUnavailable(
                f"the audit service did not confirm within {timeout:g} s"
            ) from None
        except httpx.HTTPError as exc:
            raise AuditUnavailable(
                f"the audit service could not be reached ({type(exc).__name__}: {exc})"
            ) from None
        return _confirmation(response)

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()


def _confirmation(response: httpx.Response) -> Confirmation:
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 201:
        message = body.get("message") if isinstance(body, dict) else None
        if not isinstance(message, str) or not message:
            message = response.reason_phrase or "no reason given"
        raise AuditRefused(
            f"the audit service refused the record ({response.status_code}: {message})"
        )
    if not (
        isinstance(body, dict)
        and isinstance(body.get("project"), str)
        and isinstance(body.get("seq"), int)
        and isinstance(body.get("hash"), str)
    ):
        raise AuditUnavailable("the audit service answered 201 without a valid confirmation")
    return Confirmation(project=body["project"], seq=body["seq"], hash=body["hash"])
