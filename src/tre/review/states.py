"""The life of a release request as data: states, actions and the transition table.

Only the pairs (state, action) listed in `TRANSITIONS` are allowed, each by the parties
its rule names; everything else is refused with a reason. A checker action is never
allowed to the request's author or to a member of its project, whatever other role
they hold.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType

from pydantic import BaseModel, ConfigDict, Field

from .errors import TransitionRefused


class RequestState(StrEnum):
    draft = "draft"
    submitted = "submitted"
    under_review = "under_review"
    returned = "returned"
    approved = "approved"
    rejected = "rejected"
    released = "released"
    withdrawn = "withdrawn"


class Action(StrEnum):
    create = "create"
    """Starts a request in draft; in no row of the table, since no state comes before it."""
    add_file = "add_file"
    """Add a file, or a new version of one (which resets that file's reviews)."""
    remove_file = "remove_file"
    submit = "submit"
    start_review = "start_review"
    review = "review"
    """A checker approves some or all files at their current versions."""
    comment = "comment"
    return_ = "return"
    reject = "reject"
    approve = "approve"
    """The request as a whole: taken by the system once every file has enough approvals."""
    release = "release"
    withdraw = "withdraw"


class Party(StrEnum):
    """Who someone is with respect to one request."""

    author = "author"
    member = "member"
    """A member of the request's project other than its author: may not review it."""
    checker = "checker"
    """An eligible output checker for the request's project (never a member)."""
    system = "system"


@dataclass(frozen=True)
class Rule:
    """What one allowed (state, action) leads to, and who may take it."""

    to: RequestState
    who: frozenset[Party]
    needs_reason: bool = False


_AUTHOR = frozenset({Party.author})
_CHECKER = frozenset({Party.checker})
_SYSTEM = frozenset({Party.system})
_AUTHOR_OR_CHECKER = frozenset({Party.author, Party.checker})
_AUTHOR_OR_SYSTEM = frozenset({Party.author, Party.system})

S = RequestState
A = Action

TRANSITIONS: Mapping[tuple[RequestState, Action], Rule] = MappingProxyType(
    {
        # The author prepares the request.
        (S.draft, A.add_file): Rule(S.draft, _AUTHOR),
        (S.draft, A.remove_file): Rule(S.draft, _AUTHOR),
        (S.draft, A.submit): Rule(S.submitted, _AUTHOR),
        (S.draft, A.withdraw): Rule(S.withdrawn, _AUTHOR),
        # Submitted: waiting for a checker.
        (S.submitted, A.add_file): Rule(S.submitted, _AUTHOR),
        (S.submitted, A.start_review): Rule(S.under_review, _CHECKER),
        (S.submitted, A.comment): Rule(S.submitted, _AUTHOR_OR_CHECKER),
        (S.submitted, A.withdraw): Rule(S.withdrawn, _AUTHOR),
        # Under review: approvals accumulate until the permit's number is reached.
        (S.under_review, A.add_file): Rule(S.under_review, _AUTHOR),
        (S.under_review, A.review): Rule(S.under_review, _CHECKER),
        (S.under_review, A.comment): Rule(S.under_review, _AUTHOR_OR_CHECKER),
        (S.under_review, A.return_): Rule(S.returned, _CHECKER, needs_reason=True),
        (S.under_review, A.reject): Rule(S.rejected, _CHECKER, needs_reason=True),
        (S.under_review, A.approve): Rule(S.approved, _SYSTEM),
        (S.under_review, A.withdraw): Rule(S.withdrawn, _AUTHOR),
        # Returned for changes: the author edits and submits again.
        (S.returned, A.add_file): Rule(S.returned, _AUTHOR),
        (S.returned, A.remove_file): Rule(S.returned, _AUTHOR),
        (S.returned, A.submit): Rule(S.submitted, _AUTHOR),
        (S.returned, A.comment): Rule(S.returned, _AUTHOR_OR_CHECKER),
        (S.returned, A.withdraw): Rule(S.withdrawn, _AUTHOR),
        # Approved: a changed file sends the request back under review.
        (S.approved, A.add_file): Rule(S.under_review, _AUTHOR),
        (S.approved, A.comment): Rule(S.approved, _AUTHOR_OR_CHECKER),
        (S.approved, A.release): Rule(S.released, _AUTHOR_OR_SYSTEM),
        (S.approved, A.withdraw): Rule(S.withdrawn, _AUTHOR),
        # released, rejected and withdrawn are terminal: no row starts there.
    }
)
"""(state, action) → rule. A pair that is not here is refused."""

del S, A

TERMINAL: frozenset[RequestState] = frozenset(RequestState) - {s for s, _ in TRANSITIONS}
"""States that no action leaves."""

CHECKER_ACTIONS: frozenset[Action] = frozenset(
    a for (_, a), rule in TRANSITIONS.items() if rule.who == _CHECKER
)
"""Actions only a checker takes: never the author's or a project member's."""


class Step(BaseModel):
    """One transition that happened: the event every action leaves in the history and audit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Action
    actor: str
    from_state: RequestState
    to_state: RequestState
    at: datetime
    reason: str | None = None
    detail: dict[str, object] = Field(default_factory=dict)


def check_transition(
    state: RequestState,
    action: Action,
    *,
    actor: str,
    parties: frozenset[Party],
    at: datetime,
    reason: str | None = None,
) -> Step:
    """The step `actor`, party to the request as `parties`, takes; or `TransitionRefused`."""
    rule = TRANSITIONS.get((state, action))
    if rule is None:
        if state in TERMINAL:
            raise TransitionRefused(f"the request is {state}: nothing more can happen to it")
        raise TransitionRefused(f"cannot {action} a request that is {state}")
    effective = parties
    if Party.author in parties or Party.member in parties:
        # Separation of duties: whatever else they are, they do not check their own outputs.
        effective = parties - {Party.checker}
    if not rule.who & effective:
        if rule.who == _CHECKER and parties & {Party.author, Party.member}:
            who = "wrote this request" if Party.author in parties else "is a member of its project"
            raise TransitionRefused(
                f"'{actor}' {who} and may not {action} it: outputs are checked by others"
            )
        allowed = " or ".join(sorted(p.value for p in rule.who))
        raise TransitionRefused(f"only the {allowed} may {action} a request that is {state}")
    text = reason.strip() if reason else None
    if rule.needs_reason and not text:
        raise TransitionRefused(f"a reason is needed to {action} a request")
    return Step(
        action=action, actor=actor, from_state=state, to_state=rule.to, at=at, reason=text or None
    )


def can_transition(
    state: RequestState,
    action: Action,
    *,
    actor: str,
    parties: frozenset[Party],
    at: datetime,
    reason: str | None = None,
) -> bool:
    try:
        check_transition(state, action, actor=actor, parties=parties, at=at, reason=reason)
    except TransitionRefused:
        return False
    return True


def allowed_actions(state: RequestState, parties: frozenset[Party]) -> tuple[Action, ...]:
    """Actions these parties could take now (reasons aside), in table order: for UIs."""
    effective = parties - {Party.checker} if parties & {Party.author, Party.member} else parties
    return tuple(a for (s, a), rule in TRANSITIONS.items() if s is state and rule.who & effective)


def transitions_markdown() -> str:
    """The transition table as a Markdown table (docs/reference/review-states.md holds it)."""
    lines = [
        "| from | action | to | who | reason needed |",
        "| --- | --- | --- | --- | --- |",
    ]
    for (state, action), rule in TRANSITIONS.items():
        who = " or ".join(sorted(p.value for p in rule.who))
        reason = "yes" if rule.needs_reason else ""
        lines.append(f"| {state} | {action} | {rule.to} | {who} | {reason} |")
    return "\n".join(lines) + "\n"
