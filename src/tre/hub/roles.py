"""JupyterHub roles for the four kinds of TRE user, bound to the site's OIDC groups.

The default `user` role is redefined to almost nothing: JupyterHub's own default
lets every user mint API tokens and share servers, which would let data leave
around the controls. Starting workspaces is a researcher's right alone, and no
role — administrators' included — may access another person's server.
"""

from __future__ import annotations

from typing import Any

from tre.policy import Role
from tre.policy.site import Identity

BASE_USER_SCOPES = (
    "read:users:name!user",
    "read:users:groups!user",
    "read:servers!user",
)
"""What every logged-in person may do: see who they are and their own servers."""

RESEARCHER_SCOPES = (
    "servers!user",
    "access:servers!user",
    "users:activity!user",
)
"""Start, stop and use one's own workspaces. No `tokens`, no `shares`."""

ADMIN_SCOPES = (
    "admin-ui",
    "list:users",
    "read:users",
    "read:servers",
    "delete:servers",
    "list:groups",
    "read:groups",
    "read:hub",
)
"""See users and servers and stop servers — never `access:servers`, `tokens` or `admin:*`."""

REVIEW_SERVICE = "tre-review"
REVIEW_SUBMIT = "custom:review:submit"
REVIEW_CHECK = "custom:review:check"
REVIEW_READ = "custom:review:read"

REVIEW_CUSTOM_SCOPES: dict[str, dict[str, str]] = {
    REVIEW_SUBMIT: {
        "description": "Ask for outputs of one's own projects to be released, and download "
        "one's own released outputs",
    },
    REVIEW_CHECK: {
        "description": "Review other people's release requests as an output checker",
    },
    REVIEW_READ: {
        "description": "See one's own release requests and their status",
    },
}
"""`c.JupyterHub.custom_scopes` of the review service. Which request someone may act on is
the review service's own decision (author, project member, eligible checker); these scopes
only say which kind of caller they may be."""

_REVIEW_ACCESS = f"access:services!service={REVIEW_SERVICE}"

SUMMARIES_SERVICE = "tre-summaries"
SUMMARIES_ACCESS = f"access:services!service={SUMMARIES_SERVICE}"
"""Reading the published summaries, the register and the catalogue (Voila)."""


def load_roles(identity: Identity) -> list[dict[str, Any]]:
    """`c.JupyterHub.load_roles` for a site."""
    groups = identity.role_groups
    return [
        {
            "name": "user",
            "description": "Every logged-in person: their own identity and servers, read only",
            "scopes": list(BASE_USER_SCOPES),
        },
        {
            "name": "tre-researcher",
            "description": "Researchers: start and use their own project workspaces",
            "scopes": [*RESEARCHER_SCOPES, _REVIEW_ACCESS, REVIEW_SUBMIT, REVIEW_READ],
            "groups": [groups[Role.researcher]],
        },
        {
            "name": "tre-output-checker",
            "description": "Output checkers: review release requests in the review service",
            "scopes": [_REVIEW_ACCESS, REVIEW_CHECK],
            "groups": [groups[Role.output_checker]],
        },
        {
            "name": "tre-admin",
            "description": "Data managers: see users and servers, stop servers; no data access",
            "scopes": [*ADMIN_SCOPES, _REVIEW_ACCESS, REVIEW_READ, SUMMARIES_ACCESS],
            "groups": [groups[Role.admin]],
        },
        {
            "name": "tre-patient-rep",
            "description": "Patients' representatives: read the published summaries, the "
            "public register and the dataset catalogue; nothing else",
            "scopes": [SUMMARIES_ACCESS],
            "groups": [groups[Role.patient_rep]],
        },
    ]


def allowed_groups(identity: Identity) -> set[str]:
    """Groups whose members may log in at all."""
    return set(identity.role_groups.values())
