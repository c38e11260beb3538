"""Every step of a request as an audit event in its project's chain: who, which permit,
when, from which state to which, and why."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Protocol

from tre.audit import AuditEvent, EventKind

from .models import ReleaseRequest
from .states import Action, Step

ACTION_EVENTS: Mapping[Action, EventKind] = MappingProxyType(
    {
        Action.create: EventKind.review_created,
        Action.add_file: EventKind.review_file_added,
        Action.remove_file: EventKind.review_file_removed,
        Action.submit: EventKind.review_submitted,
        Action.start_review: EventKind.review_started,
        Action.review: EventKind.review_approval,
        Action.comment: EventKind.review_comment,
        Action.return_: EventKind.review_returned,
        Action.reject: EventKind.review_rejected,
        Action.approve: EventKind.review_approved,
        Action.release: EventKind.review_released,
        Action.withdraw: EventKind.review_withdrawn,
    }
)


class AuditSink(Protocol):
    """Where events go: the site's `AuditStore` (tests may give a failing one)."""

    def append(self, event: AuditEvent, /) -> object: ...


def step_event(req: ReleaseRequest, step: Step, seq: int) -> AuditEvent:
    """The audit event of step number `seq` of `req` (after the step: its permit is the
    current one). The record is written before the step commits (write-ahead): a step whose
    number appears twice was attempted once without committing (a crash, a lost race)."""
    return AuditEvent(
        kind=ACTION_EVENTS[step.action],
        actor=step.actor,
        project=req.project,
        permit=req.permit,
        at=step.at,
        detail={
            "request": req.id,
            "step": seq,
            "action": str(step.action),
            "from": str(step.from_state),
            "to": str(step.to_state),
            "reason": step.reason,
            **step.detail,
        },
    )
