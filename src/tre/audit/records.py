"""Audit records: an event placed in its project's hash chain.

A record's `hash` is the SHA-256 of the canonical JSON of every other field, and
its `prev` is the previous record's `hash` (64 zeros for a chain's first record),
so changing, removing, inserting or reordering any record breaks the chain there.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .events import AuditEvent, EventKind

GENESIS = "0" * 64
"""The `prev` of a chain's first record."""

SITE_CHAIN = "_site"
"""The chain of events that belong to no project (a refused spawn of an unknown project)."""

_CHAIN_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")  # the policy's project id form


class AuditStoreError(Exception):
    """The audit log cannot be written or read; the message names the chain and the problem."""


def check_chain_name(name: str) -> None:
    """Raise unless `name` is a project id (or `_site`): it becomes a file name."""
    if name != SITE_CHAIN and not _CHAIN_NAME.match(name):
        raise AuditStoreError(
            f"audit chain {name!r}: not a project id (lower case letters, digits and "
            f"hyphens, at most 63) nor {SITE_CHAIN!r}"
        )


def can_name_chain(name: str) -> bool:
    try:
        check_chain_name(name)
    except AuditStoreError:
        return False
    return True


def format_at(at: datetime) -> str:
    """The one text form of a record's time: UTC, microseconds, `Z` (sorts as it reads)."""
    if at.tzinfo is None:
        raise AuditStoreError(f"audit time {at.isoformat()} has no time zone; give UTC")
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, ASCII only, no NaN: the same value always gives the same text."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )


class AuditRecord(BaseModel):
    """One record of a project's chain, as both the database and the JSON lines keep it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    project: str = Field(description="The chain: a project id, or `_site`.")
    seq: int = Field(ge=1, description="Position in the chain, from 1.")
    prev: str = Field(description="`hash` of the previous record; 64 zeros for the first.")
    hash: str = Field(description="SHA-256 of the canonical JSON of the other fields.")
    at: datetime
    kind: EventKind
    actor: str
    server: str | None = None
    permit: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        """Every field but `hash`: what the hash covers."""
        return {
            "project": self.project,
            "seq": self.seq,
            "prev": self.prev,
            "at": format_at(self.at),
            "kind": str(self.kind),
            "actor": self.actor,
            "server": self.server,
            "permit": self.permit,
            "detail": self.detail,
        }

    def computed_hash(self) -> str:
        return hash_body(self.body())

    def line(self) -> str:
        """The JSON line of the file copy (no newline)."""
        return canonical_json({**self.body(), "hash": self.hash})

    @classmethod
    def from_line(cls, line: str) -> AuditRecord:
        """Parse one JSON line; raises ValueError (or RecursionError) when it is not a record."""
        return cls.model_validate_json(line)


def hash_body(body: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(body).encode("ascii")).hexdigest()


def chain_of(event: AuditEvent) -> str:
    return event.project if event.project is not None else SITE_CHAIN


def make_record(event: AuditEvent, seq: int, prev: str) -> AuditRecord:
    """The record that places `event` after a record whose seq and hash are given."""
    project = chain_of(event)
    check_chain_name(project)
    at = format_at(event.at)
    body: dict[str, Any] = {
        "project": project,
        "seq": seq,
        "prev": prev,
        "at": at,
        "kind": str(event.kind),
        "actor": event.actor,
        "server": event.server,
        "permit": event.permit,
        "detail": event.detail,
    }
    try:
        digest = hash_body(body)
    except (TypeError, ValueError) as exc:
        raise AuditStoreError(
            f"audit chain {project!r}: detail of a {event.kind} record is not plain JSON: {exc}"
        ) from exc
    # Every field is already checked: skip validation on the hot path of each execution.
    return AuditRecord.model_construct(
        project=project,
        seq=seq,
        prev=prev,
        hash=digest,
        at=datetime.fromisoformat(at),
        kind=event.kind,
        actor=event.actor,
        server=event.server,
        permit=event.permit,
        detail=event.detail,
    )
