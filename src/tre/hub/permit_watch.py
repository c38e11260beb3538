"""A hub service that stops workspaces whose permit has ended (expiry, revocation, removal).

Every few seconds it asks the Hub which servers run, asks the policy whether each
may still run today, stops those that may not, and audits each stop. It reads
the policy from disk each round, so an administrator's revocation takes effect
within one interval without restarting anything.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.request
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tre.audit import AuditEvent, AuditStore, EventKind, can_name_chain, open_store
from tre.lifeline import end_with_parent
from tre.policy import Policy, PolicyError, load_policy
from tre.settings import Settings, load_settings

from .plan import SpawnRefused, check_spawn

log = logging.getLogger("tre.permit-watch")


@dataclass(frozen=True)
class Stop:
    username: str
    server: str
    project: str
    reason: str


def servers_to_stop(
    policy: Policy, settings: Settings, users: list[dict[str, Any]], today: date
) -> list[Stop]:
    """Running (or starting) servers that the policy no longer allows, with the reason."""
    stops = []
    for user in users:
        for server_name, server in (user.get("servers") or {}).items():
            options = server.get("user_options") or {}
            project = str(options.get("project") or server_name or "")
            try:
                check_spawn(policy, settings, user["name"], project, today)
            except SpawnRefused as exc:
                stops.append(Stop(user["name"], server_name, project, str(exc)))
    return stops


class HubApi:
    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        self.token = token

    def request(self, method: str, path: str) -> Any:
        req = urllib.request.Request(  # noqa: S310 - the hub's own API URL
            self.url + path, method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(req, timeout=30) as response:  # noqa: S310
            body = response.read()
        return json.loads(body) if body else None

    def users(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.request("GET", "/users?state=active&limit=1000")
        return result

    def stop(self, username: str, server: str) -> None:
        path = (
            f"/users/{quote(username)}/servers/{quote(server)}"
            if server
            else (f"/users/{quote(username)}/server")
        )
        self.request("DELETE", path)


def run_once(api: HubApi, settings: Settings, audit: AuditStore) -> list[Stop]:
    try:
        policy = load_policy(settings.policy_dir)
    except PolicyError:
        log.exception("policy does not load; stopping nothing this round")
        raise
    stops = servers_to_stop(policy, settings, api.users(), date.today())
    for stop in stops:
        log.warning("stopping %s/%s: %s", stop.username, stop.server, stop.reason)
        api.stop(stop.username, stop.server)
        audit.append(
            AuditEvent(
                kind=EventKind.permit_ended_stop,
                actor="system:permit-watch",
                project=stop.project if can_name_chain(stop.project) else None,
                server=stop.server or None,
                detail={"user": stop.username, "project": stop.project, "reason": stop.reason},
            )
        )
    return stops


def main() -> None:  # pragma: no cover - run by JupyterHub as a managed service
    logging.basicConfig(level=logging.INFO, format="[%(levelname)s %(name)s] %(message)s")
    end_with_parent()  # a killed hub's restart starts its own watch
    settings_file = os.environ.get("TRE_SETTINGS")
    settings = load_settings(Path(settings_file) if settings_file else None)
    api = HubApi(os.environ["JUPYTERHUB_API_URL"], os.environ["JUPYTERHUB_API_TOKEN"])
    audit = open_store(settings)
    while True:
        try:
            run_once(api, settings, audit)
        except Exception:
            log.exception("permit check failed; trying again")
        time.sleep(settings.hub.permit_check_interval)


if __name__ == "__main__":  # pragma: no cover
    main()
