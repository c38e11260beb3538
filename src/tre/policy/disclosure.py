"""Statistical disclosure control profiles that a permit selects for its output checks.

The two built-in profiles carry the published defaults of ACRO and of OpenSAFELY;
a site may add its own in `disclosure.yaml` but may not redefine a built-in one.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from .base import NonEmptyText, PolicyModel, Slug


class DisclosureProfile(PolicyModel):
    """Thresholds for automated output checks (field names follow ACRO's `default.yaml`)."""

    id: Slug
    title: NonEmptyText
    safe_threshold: int = Field(
        default=10, ge=1, description="Minimum number of records behind any table cell."
    )
    safe_dof_threshold: int = Field(
        default=10, ge=1, description="Minimum residual degrees of freedom of a model."
    )
    safe_nk_n: int = Field(default=2, ge=1, description="N of the N-k dominance rule.")
    safe_nk_k: float = Field(
        default=0.9, gt=0, le=1, description="Share k that the N largest may not exceed."
    )
    safe_pratio_p: float = Field(default=0.1, gt=0, le=1, description="p of the p% rule.")
    check_missing_values: bool = Field(
        default=False, description="Treat missing values in a cell as disclosive."
    )
    survival_safe_threshold: int = Field(
        default=10, ge=1, description="Minimum number at risk in a survival table."
    )
    zeros_are_disclosive: bool = Field(
        default=True, description="Structural zeros may reveal something about a group."
    )
    redact_at_or_below: int | None = Field(
        default=None,
        ge=0,
        description="Counts at or below this are redacted before rounding (OpenSAFELY: 7).",
    )
    round_to: int | None = Field(
        default=None, ge=1, description="Counts are rounded to the nearest multiple of this."
    )
    min_individuals_per_statistic: int | None = Field(
        default=None,
        ge=1,
        description="Statistics describing fewer individuals than this are redacted.",
    )
    source: str | None = Field(default=None, description="Where these values come from.")

    @model_validator(mode="after")
    def _rounding_needs_redaction(self) -> DisclosureProfile:
        if self.round_to is not None and self.redact_at_or_below is None:
            raise ValueError(
                "round_to needs redact_at_or_below: rounding alone does not hide low counts"
            )
        return self


ACRO_DEFAULT = DisclosureProfile(
    id="acro-default",
    title="ACRO defaults (SACRO project)",
    source="acro 1.0.2, acro/default.yaml",
)

OPENSAFELY = DisclosureProfile(
    id="opensafely",
    title="OpenSAFELY: redact counts of 7 or less, then round to the nearest 5",
    redact_at_or_below=7,
    round_to=5,
    min_individuals_per_statistic=6,
    source="OpenSAFELY output checking guidance",
)

BUILTIN_PROFILES: dict[str, DisclosureProfile] = {p.id: p for p in (ACRO_DEFAULT, OPENSAFELY)}
