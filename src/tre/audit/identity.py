"""Who a workspace's record is about: decided from its Hub token, the hub and the policy only.

The token's owner is the actor; its one `access:servers!server=<user>/<name>` scope names
the server; the hub's record of that server's spawn names the project; the policy names
the permit that lets the actor work on that project today. Nothing comes from the body.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tornado.web import HTTPError

from tre.policy import Permit, Policy, PolicyError, load_policy

SERVER_SCOPE = "access:servers!server="


class Refused(Exception):
    """A record is not accepted; `status` is the HTTP status, the message is for the person."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Workspace:
    user: str
    server: str
    project: str
    permit: str


def check_server_token(model: dict[str, Any] | None) -> tuple[str, str]:
    """(user, server) of a single-user server's token, from the hub's answer about it."""
    if model is None:
        raise Refused(401, "the hub does not know this token")
    if model.get("kind") != "user" or not isinstance(model.get("name"), str):
        raise Refused(403, "only a workspace server's own token may write audit records")
    user = model["name"]
    servers = [
        s[len(SERVER_SCOPE) :] for s in model.get("scopes") or () if s.startswith(SERVER_SCOPE)
    ]
    if len(servers) != 1:
        raise Refused(
            403,
            "this token is not a workspace server's token (it must carry exactly one "
            f"{SERVER_SCOPE}<user>/<server> scope)",
        )
    owner, _, server = servers[0].partition("/")
    if owner != user or not server:
        raise Refused(403, f"the token of {user} names the server {servers[0]!r} of someone else")
    return user, server


def can_server_token(model: dict[str, Any] | None) -> bool:
    try:
        check_server_token(model)
    except Refused:
        return False
    return True


def check_permit(policy: Policy, user: str, project: str, today: date) -> Permit:
    """The permit that lets `user` work on `project` today (the latest-ending one, as the
    spawner chooses it), or Refused saying why not."""
    found = policy.project(project)
    if found is None or not found.is_member(user):
        raise Refused(403, f"you are not a member of a project called {project!r}")
    permit = policy.current_permit(project, user, today)
    if permit is None:
        raise Refused(
            403,
            f"no permit lets you work on project {project!r} today; nothing more is "
            "recorded or run in this workspace",
        )
    return permit


def can_permit(policy: Policy, user: str, project: str, today: date) -> bool:
    try:
        check_permit(policy, user, project, today)
    except Refused:
        return False
    return True


class PolicyCache:
    """The site policy, loaded again as soon as any of its files changes (or the day does),
    so a revocation counts from the next record on."""

    def __init__(self, policy_dir: Path) -> None:
        self.policy_dir = policy_dir
        self._key: tuple[object, ...] | None = None
        self._policy: Policy | None = None

    def current(self, today: date) -> Policy:
        key = (today, *self._stamp())
        if key != self._key or self._policy is None:
            try:
                self._policy = load_policy(self.policy_dir, today)
            except PolicyError as exc:
                self._key, self._policy = None, None
                raise Refused(503, "the site policy does not load; ask the administrator") from exc
            self._key = key
        return self._policy

    def _stamp(self) -> list[tuple[str, int, int]]:
        try:
            with os.scandir(self.policy_dir) as entries:
                stats = [(e.name, e.stat()) for e in entries if e.is_file()]
            return sorted((name, st.st_mtime_ns, st.st_size) for name, st in stats)
        except OSError as exc:
            raise Refused(503, "the site policy cannot be read; ask the administrator") from exc


UserLookup = Callable[[str], Awaitable[dict[str, Any] | None]]


class ServerDirectory:
    """The project of each running server, as the hub recorded it at spawn; kept briefly."""

    def __init__(self, lookup: UserLookup, max_age: float = 10.0) -> None:
        self.lookup = lookup
        self.max_age = max_age
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}

    async def project_of(self, user: str, server: str) -> str:
        now = time.monotonic()
        cached = self._cache.get(user)
        if cached is not None and now - cached[0] < self.max_age and server in cached[1]:
            servers = cached[1]
        else:
            model = await self.lookup(user)
            servers = (model or {}).get("servers") or {}
            self._cache[user] = (now, servers)
        found = servers.get(server)
        if not isinstance(found, dict):
            raise Refused(403, f"the hub has no running server {user}/{server}")
        project = (found.get("user_options") or {}).get("project") or server
        if not isinstance(project, str):
            raise Refused(403, f"the hub's record of server {user}/{server} names no project")
        return project


class WorkspaceIdentifier:
    """Who sends a request with a workspace server's Hub token: the audit service's and the
    review service's one way of deciding it (the token, the hub's record, the policy)."""

    def __init__(self, hub_auth: Any, policy_dir: Path) -> None:
        # hub_auth: a jupyterhub.services.auth.HubAuth (untyped upstream).
        self.hub_auth = hub_auth
        self.policy = PolicyCache(policy_dir)
        self.servers = ServerDirectory(self._hub_user)

    async def _hub_user(self, name: str) -> dict[str, Any] | None:
        url = f"{self.hub_auth.api_url.rstrip('/')}/users/{quote(name, safe='')}"
        model: dict[str, Any] | None = await self.hub_auth._api_request("GET", url)
        return model

    async def token_model(self, token: str) -> dict[str, Any] | None:
        """The hub's answer about a token (None: unknown), or Refused(503)."""
        try:
            model: dict[str, Any] | None = await self.hub_auth.user_for_token(
                token, use_cache=True, sync=False
            )
        except HTTPError as exc:
            raise Refused(503, "the hub cannot be asked who this is") from exc
        return model

    async def workspace_of(self, model: dict[str, Any] | None) -> Workspace:
        """The workspace a token's model (from `token_model`) belongs to, or Refused."""
        user, server = check_server_token(model)
        try:
            project = await self.servers.project_of(user, server)
        except HTTPError as exc:
            raise Refused(503, "the hub cannot be asked about this server") from exc
        today = date.today()
        permit = check_permit(self.policy.current(today), user, project, today)
        return Workspace(user=user, server=server, project=project, permit=permit.id)

    async def identify(self, token: str) -> Workspace:
        return await self.workspace_of(await self.token_model(token))
