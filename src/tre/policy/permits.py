"""Data permits: which people of which project may use which dataset versions, why, and until when.

A permit's status is derived from its dates and flags, never stored, so a
permit cannot be "active" after its expiry. `check_*` raise `PermitError`
saying why; `can_*` answer the same question with a bool.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from enum import StrEnum
from typing import Literal

from pydantic import Field, field_validator, model_validator

from .base import NonEmptyText, PolicyModel, Slug, Username
from .ehds import Purpose


class PermitError(Exception):
    """A permit does not allow what was asked; the message says why."""


class PermitStatus(StrEnum):
    not_started = "not_started"
    active = "active"
    expired = "expired"
    revoked = "revoked"
    archived = "archived"


class DatasetGrant(PolicyModel):
    """One dataset version a permit grants."""

    dataset: Slug
    version: NonEmptyText


class Conditions(PolicyModel):
    """What the access body attached to the permit."""

    reviews_required: Literal[1, 2] = Field(
        default=2, description="Independent output-checker approvals needed per release."
    )
    disclosure_profile: Slug = Field(
        default="acro-default", description="Disclosure profile used by the automated checks."
    )
    terminals_allowed: bool = Field(
        default=False, description="Whether workspaces of this permit may open terminals."
    )
    cpu_limit: float | None = Field(default=None, gt=0, description="CPUs per workspace.")
    mem_limit: str | None = Field(
        default=None, pattern=r"^[1-9][0-9]*[KMGT]$", description="Memory per workspace, e.g. 8G."
    )


class Revocation(PolicyModel):
    """The access body's decision to end a permit early."""

    effective: date = Field(description="First day on which the permit grants nothing.")
    reason: NonEmptyText


_DOI = r"^10\.[0-9]{4,9}/\S+$"
_URL = r"^https?://\S+$"


class Publication(PolicyModel):
    """A publication of the results obtained under a permit (EHDS Art. 61(4)), for the
    public register (Art. 58(1)(g)). Found by a DOI, a URL, or both."""

    title: NonEmptyText
    published: date = Field(description="Date of publication.")
    doi: str | None = Field(
        default=None,
        description="Digital Object Identifier without a resolver prefix, e.g. 10.1234/abcd.",
        json_schema_extra={"pattern": _DOI},
    )
    url: str | None = Field(
        default=None,
        description="Where the results can be read (http or https).",
        json_schema_extra={"pattern": _URL},
    )

    @field_validator("doi")
    @classmethod
    def _doi(cls, value: str | None) -> str | None:
        # Checked here rather than by `pattern`, so the error says what a DOI looks like.
        if value is not None and not re.match(_DOI, value):
            raise ValueError(
                f"{value!r} is not a DOI: give 10.<registrant>/<suffix>, "
                "without https://doi.org/ or doi:"
            )
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(_URL, value):
            raise ValueError(f"{value!r} is not an http or https URL")
        return value

    @model_validator(mode="after")
    def _findable(self) -> Publication:
        if self.doi is None and self.url is None:
            raise ValueError(f"publication '{self.title}' needs a doi or a url (or both)")
        return self


class Permit(PolicyModel):
    """A data permit issued by a health data access body (EHDS Art. 68)."""

    id: Slug
    project: Slug
    access_body_reference: NonEmptyText = Field(
        description="The access body's reference for the permit decision."
    )
    issued_by: NonEmptyText = Field(description="The issuing health data access body.")
    issued: date
    purpose: Purpose
    start: date
    expiry: date = Field(description="Last day on which the permit grants access.")
    people: tuple[Username, ...] = Field(
        min_length=1, description="The persons the permit names (EHDS Art. 73)."
    )
    datasets: tuple[DatasetGrant, ...] = Field(min_length=1)
    conditions: Conditions = Field(default_factory=Conditions)
    acknowledged_restrictions: tuple[Slug, ...] = Field(
        default=(),
        description="Ids of dataset restrictions the permit holder accepted.",
    )
    revoked: Revocation | None = None
    archived: bool = Field(
        default=False,
        description="Kept for the register after expiry or revocation; grants nothing.",
    )
    publications: tuple[Publication, ...] = Field(
        default=(),
        description=(
            "Publications of the results (EHDS Art. 61(4): within 18 months of the end of "
            "processing); the public register lists them."
        ),
    )

    @model_validator(mode="after")
    def _dates_ordered(self) -> Permit:
        if self.expiry < self.start:
            raise ValueError(f"expiry {self.expiry} is before start {self.start}")
        if self.start < self.issued:
            raise ValueError(f"start {self.start} is before the permit was issued ({self.issued})")
        for i, publication in enumerate(self.publications):
            if publication.published < self.issued:
                raise ValueError(
                    f"publications[{i}]: published {publication.published} is before the "
                    f"permit was issued ({self.issued})"
                )
        return self

    def status(self, today: date) -> PermitStatus:
        if self.archived:
            return PermitStatus.archived
        if self.revoked is not None and self.revoked.effective <= today:
            return PermitStatus.revoked
        if today < self.start:
            return PermitStatus.not_started
        if today > self.expiry:
            return PermitStatus.expired
        return PermitStatus.active

    def check_usable(self, today: date) -> None:
        """Raise `PermitError` unless the permit grants access today."""
        status = self.status(today)
        if status is PermitStatus.active:
            return
        why = {
            PermitStatus.not_started: f"starts on {self.start}",
            PermitStatus.expired: f"expired at the end of {self.expiry}",
            PermitStatus.revoked: (
                f"was revoked on {self.revoked.effective}: {self.revoked.reason}"
                if self.revoked
                else ""
            ),
            PermitStatus.archived: "is archived",
        }[status]
        raise PermitError(f"permit '{self.id}' {why}")

    def can_use(self, today: date) -> bool:
        return _holds(self.check_usable, today)

    def check_person(self, username: str, today: date) -> None:
        """Raise `PermitError` unless `username` may use this permit today."""
        self.check_usable(today)
        if username not in self.people:
            raise PermitError(f"permit '{self.id}' does not name '{username}'")

    def can_person(self, username: str, today: date) -> bool:
        return _holds(self.check_person, username, today)


def _holds(check: Callable[..., None], *args: object) -> bool:
    try:
        check(*args)
    except PermitError:
        return False
    return True
