"""What a person outside the workspace may see of a request that is not released.

Everything a workspace wrote — the files, and the text about them (descriptions, context,
controls, comments, reasons, the checks' messages that quote cells or sheet names) — is
data leaving the workspace as soon as a browser outside shows it. Until a request is
released, only its eligible output checkers see that; the author and project members see,
in their browser, the state, the file names, each check's name and verdict, and what the
checkers wrote. Inside the workspace (a caller with the server's token) the author sees
everything, as that is where it came from. Title and file names stay visible everywhere:
a residual channel of a few hundred characters per request, bounded by their limits.
"""

from __future__ import annotations

from typing import Any

from tre.audit.identity import Refused
from tre.policy import Policy

from ..models import ReleaseFile, ReleaseRequest
from ..parties import parties_of
from ..states import Party, RequestState
from .callers import Caller

WITHHELD = "(shown to output checkers only until release)"


def can_see_contents(policy: Policy, req: ReleaseRequest, caller: Caller) -> bool:
    """True when `caller` may see what the workspace wrote into `req` (see the module)."""
    if caller.workspace is not None:
        return caller.workspace.project == req.project
    parties = parties_of(policy, req, caller.user)
    if Party.checker in parties:
        return True
    return req.state is RequestState.released and Party.author in parties


def check_sees_contents(policy: Policy, req: ReleaseRequest, caller: Caller) -> None:
    """Refused(403) unless `can_see_contents`."""
    if not can_see_contents(policy, req, caller):
        raise Refused(
            403,
            f"until request {req.id} is released, only its output checkers see its files "
            "outside the workspace; open them in your workspace",
        )


def _checker_wrote(policy: Policy, req: ReleaseRequest, user: str) -> bool:
    parties = parties_of(policy, req, user)
    return Party.checker in parties or Party.system in parties


def _file_outline(f: ReleaseFile) -> ReleaseFile:
    checks: dict[str, Any] | None = None
    if f.checks is not None:
        findings = f.checks.get("findings") or []
        checks = {
            "kind": f.checks.get("kind"),
            "verdict": f.checks.get("verdict"),
            "summary": f.checks.get("summary"),
            "findings": [
                {"check": item.get("check"), "verdict": item.get("verdict")}
                for item in findings
                if isinstance(item, dict)
            ],
        }
    controls = f.controls.model_copy(update={"population": WITHHELD, "suppression": WITHHELD})
    return f.model_copy(
        update={
            "description": WITHHELD,
            "context": WITHHELD,
            "controls": controls,
            "checks": checks,
        }
    )


def outline(policy: Policy, req: ReleaseRequest) -> ReleaseRequest:
    """`req` without what the workspace wrote: for people outside it who are not checkers."""
    history = tuple(
        h
        if h.step.reason is None or _checker_wrote(policy, req, h.step.actor)
        else h.model_copy(update={"step": h.step.model_copy(update={"reason": WITHHELD})})
        for h in req.history
    )
    return req.model_copy(
        update={
            "description": WITHHELD if req.description else "",
            "files": tuple(_file_outline(f) for f in req.files),
            "comments": tuple(c for c in req.comments if _checker_wrote(policy, req, c.author)),
            "history": history,
        }
    )


def as_seen_by(policy: Policy, req: ReleaseRequest, caller: Caller) -> ReleaseRequest:
    """`req` as `caller` may see it."""
    return req if can_see_contents(policy, req, caller) else outline(policy, req)
