"""The site: who runs this TRE, which access body it answers to, how OIDC groups map to roles."""

from __future__ import annotations

from pydantic import Field, model_validator

from .base import NonEmptyText, PolicyModel, Slug
from .people import Role


class Identity(PolicyModel):
    """How the site's OIDC provider's claims map to TRE identities and roles."""

    username_claim: NonEmptyText = Field(default="preferred_username")
    groups_claim: NonEmptyText = Field(
        default="groups", description="Claim (dotted path in the userinfo) listing groups."
    )
    role_groups: dict[Role, NonEmptyText] = Field(
        default_factory=lambda: {
            Role.researcher: "tre-researchers",
            Role.output_checker: "tre-output-checkers",
            Role.admin: "tre-admins",
            Role.patient_rep: "tre-patient-reps",
        },
        description="OIDC group that grants each site role.",
    )

    @model_validator(mode="after")
    def _one_group_per_role(self) -> Identity:
        groups = list(self.role_groups.values())
        duplicated = sorted({g for g in groups if groups.count(g) > 1})
        if duplicated:
            raise ValueError(f"group '{duplicated[0]}' is mapped to more than one role")
        return self


class Site(PolicyModel):
    id: Slug
    name: NonEmptyText
    data_holder: NonEmptyText = Field(description="The organisation that holds the source data.")
    access_body: NonEmptyText = Field(description="The health data access body issuing permits.")
    country: str = Field(default="BE", pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2.")
    identity: Identity = Field(default_factory=Identity)
    date_shift_max_days: int = Field(
        default=365,
        ge=1,
        le=3650,
        description=(
            "Largest per-patient date shift, in days either way. Site-wide, so that one "
            "patient's dates move together across every dataset of a project."
        ),
    )
    expiry_warning_days: int = Field(
        default=30, ge=0, description="Warn this many days before a permit expires."
    )
