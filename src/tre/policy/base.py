"""Shared building blocks of the policy model: identifiers and the strict base model.

Every policy object is immutable and rejects unknown fields, so a typo in a
policy file is an error rather than a silently ignored setting.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints

Slug = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$"),
]
"""An identifier for datasets, projects, permits, profiles: lower case, digits and hyphens."""

Username = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z0-9][a-z0-9._@-]{0,127}$"),
]
"""A login name as the OIDC provider's username claim gives it (JupyterHub lower-cases names)."""

Sha256Hex = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
"""A SHA-256 digest as 64 lower-case hex digits."""

NonEmptyText = Annotated[str, StringConstraints(min_length=1, strip_whitespace=True)]
"""Free text that must say something."""


class PolicyModel(BaseModel):
    """Base of every policy object: frozen, strict about unknown fields."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)
