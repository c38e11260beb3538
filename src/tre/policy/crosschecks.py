"""Checks that span policy files: references resolve, roles fit, permits are sound today.

Each check yields `Issue`s located by file key and path inside that file; the
validator turns them into findings with line numbers. Checks never raise.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta

from .datasets import Dataset
from .disclosure import BUILTIN_PROFILES
from .findings import Severity
from .packages import entry_name
from .people import Role
from .permits import Permit, PermitStatus
from .policy import Policy
from .projects import Project, ProjectRole

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Issue:
    key: str
    """Which policy file: the top-level key of that file (e.g. 'permits')."""
    loc: Loc
    message: str
    allowed: str | None = None
    severity: Severity = Severity.error
    housekeeping: bool = False
    """Due only because time passed (e.g. an expired permit not archived)."""


def cross_check(policy: Policy, today: date, *, strict: bool = True) -> list[Issue]:
    """Every cross-file problem. With `strict=False` (services loading the policy at run
    time) housekeeping that only time makes due — an expired permit not yet archived —
    is a warning, so the policy does not become unloadable at midnight."""
    issues: list[Issue] = []
    for check in (_people, _datasets, _disclosure, _projects, _permits, _packages):
        issues.extend(check(policy, today))
    if not strict:
        issues = [
            Issue(i.key, i.loc, i.message, i.allowed, Severity.warning) if i.housekeeping else i
            for i in issues
        ]
    return issues


def choices(values: Iterable[str], limit: int = 12) -> str:
    items = sorted(set(values))
    if not items:
        return "(none defined)"
    shown = ", ".join(f"'{v}'" for v in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _duplicates(key: str, ids: list[str], field: str) -> Iterator[Issue]:
    seen: set[str] = set()
    for i, value in enumerate(ids):
        if value in seen:
            yield Issue(key, (key, i, field), f"{field} '{value}' is defined more than once")
        seen.add(value)


def _people(policy: Policy, today: date) -> Iterator[Issue]:
    yield from _duplicates("people", [p.username for p in policy.people], "username")
    for i, person in enumerate(policy.people):
        if not person.roles:
            yield Issue(
                "people",
                ("people", i, "roles"),
                f"person '{person.username}' has no site role",
                choices(r.value for r in Role),
            )


def _datasets(policy: Policy, today: date) -> Iterator[Issue]:
    yield from _duplicates("datasets", [d.id for d in policy.datasets], "id")
    folders: dict[str, str] = {}
    for i, dataset in enumerate(policy.datasets):
        for j, version in enumerate(dataset.versions):
            folder = version.folder(dataset.id, project="<project>")
            other = folders.get(folder)
            if other is not None:
                yield Issue(
                    "datasets",
                    ("datasets", i, "versions", j, "location"),
                    f"version '{version.id}' resolves to folder '{folder}', "
                    f"already used by {other}",
                )
            folders[folder] = f"dataset '{dataset.id}' version '{version.id}'"


def _disclosure(policy: Policy, today: date) -> Iterator[Issue]:
    ids = [p.id for p in policy.disclosure_profiles]
    yield from _duplicates("disclosure_profiles", ids, "id")
    for i, profile_id in enumerate(ids):
        if profile_id in BUILTIN_PROFILES:
            yield Issue(
                "disclosure_profiles",
                ("disclosure_profiles", i, "id"),
                f"'{profile_id}' is a built-in profile and cannot be redefined; "
                "give the site's profile its own id",
            )


RESERVED_PROJECT_IDS = frozenset({"tre-publish"})
"""Ids the TRE uses for its own networks in the project networks' name space."""


def _projects(policy: Policy, today: date) -> Iterator[Issue]:
    yield from _duplicates("projects", [p.id for p in policy.projects], "id")
    for i, project in enumerate(policy.projects):
        at: Loc = ("projects", i)
        if project.id in RESERVED_PROJECT_IDS:
            yield Issue(
                "projects",
                (*at, "id"),
                f"'{project.id}' is reserved by jupyter-tre (the summaries service's network); "
                "give the project another id",
            )
        yield from _principal_investigator(policy, project, at)
        yield from _members(policy, project, at)
        yield from _checkers(policy, project, at)


def _principal_investigator(policy: Policy, project: Project, at: Loc) -> Iterator[Issue]:
    username = project.principal_investigator
    pi = project.member(username)
    if policy.person(username) is None:
        yield Issue(
            "projects",
            (*at, "principal_investigator"),
            f"unknown person '{username}'",
            choices(p.username for p in policy.people),
        )
    elif pi is None or pi.role is not ProjectRole.principal_investigator:
        yield Issue(
            "projects",
            (*at, "principal_investigator"),
            f"'{username}' must also be listed in members with role principal_investigator",
        )


def _members(policy: Policy, project: Project, at: Loc) -> Iterator[Issue]:
    seen: set[str] = set()
    for j, member in enumerate(project.members):
        here: Loc = (*at, "members", j)
        if member.username in seen:
            yield Issue(
                "projects",
                (*here, "username"),
                f"'{member.username}' is listed twice in project '{project.id}'",
            )
        seen.add(member.username)
        person = policy.person(member.username)
        if person is None:
            yield Issue(
                "projects",
                (*here, "username"),
                f"unknown person '{member.username}'",
                choices(p.username for p in policy.people),
            )
            continue
        if member.role is None:
            yield Issue(
                "projects",
                (*here, "role"),
                f"member '{member.username}' of project '{project.id}' has no role",
                choices(r.value for r in ProjectRole),
            )
        if not person.has_role(Role.researcher):
            yield Issue(
                "projects",
                (*here, "username"),
                f"member '{member.username}' does not have the site role 'researcher' "
                f"(has: {', '.join(person.roles) or 'none'})",
            )
        if not project.output_checkers and person.has_role(Role.output_checker):
            yield Issue(
                "projects",
                (*here, "username"),
                f"output checker '{member.username}' is a member of project "
                f"'{project.id}' and will never be asked to check its outputs",
                severity=Severity.warning,
            )


def _checkers(policy: Policy, project: Project, at: Loc) -> Iterator[Issue]:
    for j, checker in enumerate(project.output_checkers):
        here: Loc = (*at, "output_checkers", j)
        person = policy.person(checker)
        if person is None:
            yield Issue(
                "projects",
                here,
                f"unknown person '{checker}'",
                choices(p.username for p in policy.people),
            )
        elif not person.has_role(Role.output_checker):
            yield Issue(
                "projects",
                here,
                f"'{checker}' is assigned as output checker but lacks the site role "
                "'output_checker'",
                choices(p.username for p in policy.people_with_role(Role.output_checker)),
            )
        elif project.is_member(checker):
            yield Issue(
                "projects",
                here,
                f"conflict of interest: output checker '{checker}' is a member of project "
                f"'{project.id}' and would check its own project's outputs",
            )


def _permits(policy: Policy, today: date) -> Iterator[Issue]:
    yield from _duplicates("permits", [p.id for p in policy.permits], "id")
    for i, permit in enumerate(policy.permits):
        at: Loc = ("permits", i)
        yield from _permit_project(policy, permit, at, today)
        granted = yield from _permit_datasets(policy, permit, at)
        yield from _permit_conditions(policy, permit, at)
        yield from _permit_dates(policy, permit, at, today)
        yield from _permit_restrictions(permit, granted, at, today)


def _permit_project(policy: Policy, permit: Permit, at: Loc, today: date) -> Iterator[Issue]:
    project = policy.project(permit.project)
    if project is None:
        yield Issue(
            "permits",
            (*at, "project"),
            f"unknown project '{permit.project}'",
            choices(p.id for p in policy.projects),
        )
        return
    if permit.purpose is not project.purpose:
        yield Issue(
            "permits",
            (*at, "purpose"),
            f"purpose '{permit.purpose}' differs from project '{project.id}''s purpose "
            f"'{project.purpose}'",
            f"'{project.purpose}'",
        )
    for j, username in enumerate(permit.people):
        if not project.is_member(username):
            yield Issue(
                "permits",
                (*at, "people", j),
                f"'{username}' is not a member of project '{project.id}'",
                choices(m.username for m in project.members),
            )
    eligible = policy.eligible_checkers(project)
    needed = permit.conditions.reviews_required
    if permit.status(today) is PermitStatus.active and len(eligible) < needed:
        yield Issue(
            "permits",
            (*at, "conditions", "reviews_required"),
            f"needs {needed} independent output checkers who are not project members; "
            f"eligible: {len(eligible)} ({', '.join(eligible) or 'none'})",
        )


def _permit_datasets(
    policy: Policy, permit: Permit, at: Loc
) -> Generator[Issue, None, list[Dataset]]:
    granted: list[Dataset] = []
    for j, grant in enumerate(permit.datasets):
        dataset = policy.dataset(grant.dataset)
        if dataset is None:
            yield Issue(
                "permits",
                (*at, "datasets", j, "dataset"),
                f"unknown dataset '{grant.dataset}'",
                choices(d.id for d in policy.datasets),
            )
            continue
        if dataset.version(grant.version) is None:
            yield Issue(
                "permits",
                (*at, "datasets", j, "version"),
                f"unknown version '{grant.version}' of dataset '{dataset.id}'",
                choices(v.id for v in dataset.versions),
            )
        granted.append(dataset)
    return granted


def _permit_conditions(policy: Policy, permit: Permit, at: Loc) -> Iterator[Issue]:
    profiles = policy.profiles()
    if permit.conditions.disclosure_profile not in profiles:
        yield Issue(
            "permits",
            (*at, "conditions", "disclosure_profile"),
            f"unknown disclosure profile '{permit.conditions.disclosure_profile}'",
            choices(profiles),
        )


def _permit_dates(policy: Policy, permit: Permit, at: Loc, today: date) -> Iterator[Issue]:
    status = permit.status(today)
    if status is PermitStatus.expired:
        yield Issue(
            "permits",
            (*at, "expiry"),
            f"permit '{permit.id}' expired at the end of {permit.expiry} "
            f"(validated on {today}); extend the expiry or set archived: true",
            housekeeping=True,
        )
    elif status is PermitStatus.active:
        warn_from = permit.expiry - timedelta(days=policy.site.expiry_warning_days)
        if today >= warn_from:
            days = (permit.expiry - today).days
            yield Issue(
                "permits",
                (*at, "expiry"),
                f"permit '{permit.id}' expires in {days} day(s), on {permit.expiry}",
                severity=Severity.warning,
            )


def _permit_restrictions(
    permit: Permit, granted: list[Dataset], at: Loc, today: date
) -> Iterator[Issue]:
    restrictions = {r.id: (d, r) for d in granted for r in d.restrictions}
    for restriction_id, (dataset, restriction) in sorted(restrictions.items()):
        lapsed = restriction.until is not None and restriction.until < today
        if restriction_id not in permit.acknowledged_restrictions and not lapsed:
            yield Issue(
                "permits",
                (*at, "acknowledged_restrictions"),
                f"dataset '{dataset.id}' carries restriction '{restriction_id}' "
                f"({restriction.kind}: {restriction.summary}) that this permit does not "
                "acknowledge",
            )
        if permit.purpose in restriction.prohibited_purposes:
            yield Issue(
                "permits",
                (*at, "purpose"),
                f"restriction '{restriction_id}' of dataset '{dataset.id}' prohibits the "
                f"purpose '{permit.purpose}'",
            )
    for j, acknowledged in enumerate(permit.acknowledged_restrictions):
        if acknowledged not in restrictions:
            yield Issue(
                "permits",
                (*at, "acknowledged_restrictions", j),
                f"'{acknowledged}' is not a restriction of any dataset this permit grants",
                choices(restrictions),
            )


def _packages(policy: Policy, today: date) -> Iterator[Issue]:
    """packages.yaml: no name twice in one list; a permit's additions name an existing
    permit and never a name of the site list (an addition cannot loosen, or silently
    tighten, what every project already has: change the site entry instead)."""
    python = policy.python
    at: Loc = ("python",)
    site_names = {entry_name(e): i for i, e in enumerate(python.site)}
    yield from _duplicate_names((*at, "site"), python.site)
    for permit_id, additions in python.permits.items():
        here: Loc = (*at, "permits", permit_id)
        if policy.permit(permit_id) is None:
            yield Issue(
                "python",
                here,
                f"additions for unknown permit '{permit_id}'",
                choices(p.id for p in policy.permits),
            )
        yield from _duplicate_names(here, additions)
        for j, entry in enumerate(additions):
            name = entry_name(entry)
            if name in site_names:
                yield Issue(
                    "python",
                    (*here, j),
                    f"'{name}' is on the site list ('{python.site[site_names[name]]}'); a "
                    "permit may not list it again: change the site entry instead",
                )


def _duplicate_names(at: Loc, entries: tuple[str, ...]) -> Iterator[Issue]:
    seen: dict[str, int] = {}
    for j, entry in enumerate(entries):
        name = entry_name(entry)
        if name in seen:
            yield Issue(
                "python",
                (*at, j),
                f"'{name}' is listed more than once (first as '{entries[seen[name]]}'); "
                "give one entry per package, with all its specifiers",
            )
        else:
            seen[name] = j
