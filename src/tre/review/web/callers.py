"""Who is calling the review service, and as what: decided from the Hub alone.

A caller is either a person in a browser (HubOAuth cookie, through the proxy) or a
workspace's server (its own Hub token, on the gateway), or a person's API token. The
scopes are those the hub put in the token; the workspace's project and permit come
from the hub's record of the server and the policy (`tre.audit.identity`), never from
a request's body.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tre.audit.identity import SERVER_SCOPE, Refused, Workspace, WorkspaceIdentifier
from tre.hub.roles import REVIEW_CHECK, REVIEW_READ, REVIEW_SUBMIT

REVIEW_SCOPES = frozenset({REVIEW_SUBMIT, REVIEW_CHECK, REVIEW_READ})


@dataclass(frozen=True)
class Caller:
    """The person a request acts for, the review scopes they hold, and their workspace
    when the request comes from one."""

    user: str
    scopes: frozenset[str]
    workspace: Workspace | None = None
    browser: bool = False

    def can(self, *scopes: str) -> bool:
        """True if the caller holds any of `scopes`."""
        return bool(self.scopes & set(scopes))

    def check(self, *scopes: str) -> None:
        """Refused(403) unless the caller holds one of `scopes`."""
        if not self.can(*scopes):
            wanted = " or ".join(sorted(scopes))
            raise Refused(403, f"'{self.user}' does not hold the scope {wanted}")


def review_scopes(model: dict[str, Any]) -> frozenset[str]:
    return frozenset(s for s in model.get("scopes") or () if s in REVIEW_SCOPES)


async def caller_of_token(identifier: WorkspaceIdentifier, token: str) -> Caller:
    """The caller of a token: a workspace (identity, project and permit resolved as the
    audit service does) or a person's own token; services and unknown tokens are refused."""
    model = await identifier.token_model(token)
    if model is None:
        raise Refused(401, "the hub does not know this token")
    if model.get("kind") != "user" or not isinstance(model.get("name"), str):
        raise Refused(403, "only people and their workspaces use the review service")
    if any(s.startswith(SERVER_SCOPE) for s in model.get("scopes") or ()):
        workspace = await identifier.workspace_of(model)
        return Caller(workspace.user, review_scopes(model), workspace)
    return Caller(model["name"], review_scopes(model))


def caller_of_browser(model: dict[str, Any]) -> Caller:
    """The caller of a HubOAuth session (the model HubOAuth checked)."""
    if model.get("kind") != "user":
        raise Refused(403, "only people use the review service's pages")
    return Caller(str(model["name"]), review_scopes(model), browser=True)
