"""People and their site roles; identity itself comes from the site's OIDC provider.

A person's site roles decide what they may do anywhere in the TRE; what they
may do in a project is decided by the project's membership and its permits.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from .base import NonEmptyText, PolicyModel, Username


class Role(StrEnum):
    """The four kinds of user of the TRE."""

    researcher = "researcher"
    output_checker = "output_checker"
    admin = "admin"
    patient_rep = "patient_rep"


class Person(PolicyModel):
    """Someone who may log in, known by the username claim of the site's OIDC provider."""

    username: Username = Field(description="Value of the OIDC username claim.")
    name: NonEmptyText = Field(description="Full name, as shown to checkers and in the register.")
    email: str | None = Field(default=None, description="Contact address.")
    organisation: str | None = Field(default=None, description="Employer or affiliation.")
    roles: tuple[Role, ...] = Field(
        description="Site roles. Usually one; a checker may also be a researcher elsewhere.",
    )

    def has_role(self, role: Role) -> bool:
        return role in self.roles
