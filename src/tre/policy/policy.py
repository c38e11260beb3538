"""A site's whole policy, loaded and cross-checked: the object every service asks.

A `Policy` exists only if its files parsed and no cross-check found an error;
services never see half a policy.
"""

from __future__ import annotations

from datetime import date

from pydantic import Field

from .base import PolicyModel
from .datasets import Dataset
from .disclosure import BUILTIN_PROFILES, DisclosureProfile
from .packages import PythonPackages
from .people import Person, Role
from .permits import Permit
from .projects import Project
from .site import Site


class Policy(PolicyModel):
    site: Site
    people: tuple[Person, ...] = ()
    datasets: tuple[Dataset, ...] = ()
    projects: tuple[Project, ...] = ()
    permits: tuple[Permit, ...] = ()
    disclosure_profiles: tuple[DisclosureProfile, ...] = Field(
        default=(), description="Site profiles, in addition to the built-in ones."
    )
    python: PythonPackages = Field(
        default_factory=PythonPackages,
        description="The Python package allow-list (packages.yaml); empty: nothing allowed.",
    )

    def person(self, username: str) -> Person | None:
        return next((p for p in self.people if p.username == username), None)

    def dataset(self, dataset_id: str) -> Dataset | None:
        return next((d for d in self.datasets if d.id == dataset_id), None)

    def project(self, project_id: str) -> Project | None:
        return next((p for p in self.projects if p.id == project_id), None)

    def permit(self, permit_id: str) -> Permit | None:
        return next((p for p in self.permits if p.id == permit_id), None)

    def profiles(self) -> dict[str, DisclosureProfile]:
        """Built-in disclosure profiles and the site's own, by id."""
        return {**BUILTIN_PROFILES, **{p.id: p for p in self.disclosure_profiles}}

    def people_with_role(self, role: Role) -> tuple[Person, ...]:
        return tuple(p for p in self.people if p.has_role(role))

    def eligible_checkers(self, project: Project) -> tuple[str, ...]:
        """Output checkers who may review this project's outputs (never its members)."""
        assigned = project.output_checkers or tuple(
            p.username for p in self.people_with_role(Role.output_checker)
        )
        return tuple(u for u in assigned if not project.is_member(u))

    def usable_permits(self, username: str, today: date) -> tuple[Permit, ...]:
        """Permits that let `username` work today, one workspace each."""
        return tuple(p for p in self.permits if p.can_person(username, today))

    def current_permit(self, project_id: str, username: str, today: date) -> Permit | None:
        """The permit under which `username` works on the project today: of the usable
        ones, the latest-ending (then the highest id), as the spawner and the audit agree."""
        usable = [p for p in self.usable_permits(username, today) if p.project == project_id]
        return max(usable, key=lambda p: (p.expiry, p.id)) if usable else None
