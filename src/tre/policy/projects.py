"""Research projects: who works on them, for which EHDS purpose, and who checks their outputs."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from .base import NonEmptyText, PolicyModel, Slug, Username
from .ehds import Purpose


class ProjectRole(StrEnum):
    """A member's role within one project."""

    principal_investigator = "principal_investigator"
    researcher = "researcher"
    analyst = "analyst"
    student = "student"


class Member(PolicyModel):
    """A person's membership of a project. `role` is required; validation says so by name."""

    username: Username
    role: ProjectRole | None = Field(
        default=None, description="Role in the project; a member without one is an error."
    )


class Project(PolicyModel):
    """A research project as the access body approved it."""

    id: Slug
    title: NonEmptyText
    lay_summary: NonEmptyText = Field(
        description="Plain-language summary for patients' representatives and the public register."
    )
    purpose: Purpose = Field(description="The EHDS Art. 53(1) purpose.")
    purpose_description: NonEmptyText = Field(description="The purpose in the project's words.")
    principal_investigator: Username
    members: tuple[Member, ...] = Field(min_length=1)
    output_checkers: tuple[Username, ...] = Field(
        default=(),
        description=(
            "Checkers assigned to this project's outputs. Empty: any site output checker "
            "who is not a member."
        ),
    )

    def member(self, username: str) -> Member | None:
        return next((m for m in self.members if m.username == username), None)

    def is_member(self, username: str) -> bool:
        return self.member(username) is not None
