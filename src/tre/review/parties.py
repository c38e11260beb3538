"""Who someone is to a request, and under which permit they act: read from the policy
at the moment of each action, so a revoked permit or a changed membership counts at once."""

from __future__ import annotations

from datetime import date

from tre.policy import DisclosureProfile, Permit, PermitError, Policy

from .errors import PermitRefused, ReviewError
from .models import ReleaseRequest
from .states import Party

SYSTEM_ACTOR = "system:review"
"""The actor of the steps the service takes itself (approval once enough checkers agreed)."""


def parties_of(policy: Policy, req: ReleaseRequest, user: str) -> frozenset[Party]:
    """The parts `user` plays in `req`: author, member of its project, eligible checker."""
    parties: set[Party] = set()
    if user == SYSTEM_ACTOR:
        parties.add(Party.system)
    project = policy.project(req.project)
    if user == req.author:
        parties.add(Party.author)
    elif project is not None and project.is_member(user):
        parties.add(Party.member)
    if project is not None and user in policy.eligible_checkers(project):
        parties.add(Party.checker)
    return frozenset(parties)


def current_permit(policy: Policy, project_id: str, user: str, today: date) -> Permit:
    """The permit under which `user` works on the project today; `PermitRefused` says why none."""
    if policy.project(project_id) is None:
        raise PermitRefused(f"no project {project_id!r} in the site's policy")
    permit = policy.current_permit(project_id, user, today)
    if permit is not None:
        return permit
    naming = [p for p in policy.permits if p.project == project_id and user in p.people]
    if naming:
        latest = max(naming, key=lambda p: (p.expiry, p.id))
        try:
            latest.check_person(user, today)
        except PermitError as exc:
            raise PermitRefused(f"'{user}' cannot act in project '{project_id}': {exc}") from exc
    raise PermitRefused(f"no current permit names '{user}' for project '{project_id}'")


def disclosure_profile(policy: Policy, permit: Permit) -> DisclosureProfile:
    profile = policy.profiles().get(permit.conditions.disclosure_profile)
    if profile is None:
        raise ReviewError(
            f"permit '{permit.id}': unknown disclosure profile "
            f"'{permit.conditions.disclosure_profile}'"
        )
    return profile
