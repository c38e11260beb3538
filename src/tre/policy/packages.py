"""The package allow-list (`packages.yaml`): what a project's workspaces may install.

Invariant: a package is allowed for a project only if the site list or one of the
project's permits usable *today* names it and its version satisfies every specifier
given for it; anything else, including an unknown project, is refused (fail closed).
Entries are plain PEP 508 requirements (a name, optionally a version specifier) with
names normalised as PEP 503 says, so `Python_DateUtil` and `python-dateutil` are one.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from datetime import date
from typing import TYPE_CHECKING, Annotated

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version
from pydantic import AfterValidator, Field, field_validator

from .base import PolicyModel, Slug

if TYPE_CHECKING:
    from .policy import Policy

DEFAULT_INDEX = "https://pypi.org/simple"
"""The upstream index the mirror proxies unless the site names its own."""

ENTRY_FORM = "a package name with an optional version specifier, e.g. 'numpy>=1.26' or 'six'"


class PackageNotAllowed(Exception):
    """A package or version is not on a project's allow-list; the message says why."""


def parse_entry(text: str) -> Requirement:
    """One allow-list entry as a `Requirement`; `ValueError` naming the entry if it is more
    than a name and a version specifier (URLs, extras and markers are refused)."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"an empty entry is not allowed; expected {ENTRY_FORM}")
    try:
        req = Requirement(text.strip())
    except InvalidRequirement as exc:
        reason = str(exc).splitlines()[0] if str(exc) else "unreadable"
        raise ValueError(
            f"{text!r} is not a valid requirement ({reason}); expected {ENTRY_FORM}"
        ) from exc
    if req.url:
        raise ValueError(
            f"{text!r} names a URL; the allow-list takes index packages only: {ENTRY_FORM}"
        )
    if req.extras:
        raise ValueError(
            f"{text!r} has extras [{','.join(sorted(req.extras))}]; list the extra's "
            f"packages as entries of their own: {ENTRY_FORM}"
        )
    if req.marker is not None:
        raise ValueError(
            f"{text!r} has an environment marker; the workspace image has one Python "
            f"and one platform: {ENTRY_FORM}"
        )
    return req


def normalise_entry(text: str) -> str:
    """The entry in its canonical form: PEP 503 name, then the sorted specifiers."""
    req = parse_entry(text)
    return f"{canonicalize_name(req.name)}{req.specifier}"


def entry_name(text: str) -> str:
    """The canonical name of a (valid) entry."""
    return canonicalize_name(parse_entry(text).name)


PackageEntry = Annotated[str, AfterValidator(normalise_entry)]
"""An allow-list entry, stored normalised (`Python_DateUtil>=2.9` → `python-dateutil>=2.9`)."""


class PythonPackages(PolicyModel):
    """Python packages the mirror serves: the site list and each permit's additions."""

    index: str = Field(
        default=DEFAULT_INDEX,
        description="The upstream simple index the mirror proxies (site-wide).",
    )
    site: tuple[PackageEntry, ...] = Field(
        default=(),
        description="Allowed for every project: requirement lines such as 'numpy>=1.26'.",
    )
    permits: dict[Slug, tuple[PackageEntry, ...]] = Field(
        default_factory=dict,
        description=(
            "Additions for the projects of one permit (by permit id), usable while the "
            "permit is; a name on the site list may not be listed again here."
        ),
    )

    @field_validator("index")
    @classmethod
    def _index_is_http(cls, value: str) -> str:
        value = value.strip()
        if not value.startswith(("https://", "http://")) or any(c.isspace() for c in value):
            raise ValueError(
                f"{value!r} is not an index URL; expected an http(s) URL of a simple "
                f"index, e.g. {DEFAULT_INDEX}"
            )
        return value.rstrip("/")

    def additions(self, permit_id: str) -> tuple[str, ...]:
        return self.permits.get(permit_id, ())


def combine(entries: Iterable[str]) -> dict[str, SpecifierSet]:
    """Canonical name → the intersection of every specifier given for it."""
    combined: dict[str, SpecifierSet] = {}
    for text in entries:
        req = parse_entry(text)
        name = canonicalize_name(req.name)
        combined[name] = combined.get(name, SpecifierSet()) & req.specifier
    return combined


def _sources(policy: Policy, project_id: str, today: date) -> list[str]:
    if policy.project(project_id) is None:
        raise PackageNotAllowed(f"unknown project '{project_id}': no package is allowed")
    entries = list(policy.python.site)
    for permit in policy.permits:
        if permit.project == project_id and permit.can_use(today):
            entries.extend(policy.python.additions(permit.id))
    return entries


def allowed_requirements(policy: Policy, project_id: str, today: date) -> tuple[str, ...]:
    """Site entries plus the additions of the project's permits usable today, as
    normalised requirement strings, sorted by name; a name from several sources is
    combined (specifiers intersected)."""
    combined = combine(_sources(policy, project_id, today))
    return tuple(f"{name}{combined[name]}" for name in sorted(combined))


def check_allowed(policy: Policy, project_id: str, today: date, name: str, version: str) -> None:
    """Raise `PackageNotAllowed` unless `name` at `version` may be installed in the
    project's workspaces today; the message says why and what is allowed."""
    combined = combine(_sources(policy, project_id, today))
    wanted = canonicalize_name(name)
    spec = combined.get(wanted)
    if spec is None:
        near = difflib.get_close_matches(wanted, list(combined), n=3, cutoff=0.8)
        hint = f"; did you mean {', '.join(repr(n) for n in near)}?" if near else ""
        raise PackageNotAllowed(
            f"package '{wanted}' is not on the allow-list of project '{project_id}'{hint} "
            "(an administrator can add it: tre packages resolve)"
        )
    try:
        parsed = Version(version)
    except InvalidVersion as exc:
        raise PackageNotAllowed(f"'{version}' is not a valid version of '{wanted}'") from exc
    if not spec.contains(parsed, prereleases=True):
        raise PackageNotAllowed(
            f"version {version} of '{wanted}' is not allowed for project '{project_id}' "
            f"(allowed: {wanted}{spec})"
        )


def can_install(policy: Policy, project_id: str, today: date, name: str, version: str) -> bool:
    try:
        check_allowed(policy, project_id, today, name, version)
    except PackageNotAllowed:
        return False
    return True
