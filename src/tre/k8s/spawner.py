"""KubeSpawner for project workspaces: the policy, not the form, decides each pod.

Every start asks `check_spawn` again, verifies the dataset folders against their sealed
manifests (the hub pod mounts the datasets read-only), and configures the pod from the
plan alone, with the same override the Helm values' profiles carry. The form offers only
the permits that name the person today. Any failure refuses the start (fail closed).
"""

from __future__ import annotations

import asyncio
import os
from datetime import date
from typing import Any

from kubespawner import KubeSpawner  # type: ignore[import-untyped]

from tre.audit import EventKind
from tre.hub.datasets import check_plan_datasets
from tre.hub.plan import SpawnPlan, SpawnRefused, check_spawn
from tre.hub.quota import WORKSPACE_GID, WORKSPACE_UID
from tre.hub.spawner import Refusal, SiteSpawner
from tre.policy import Policy, load_policy
from tre.resources import project_resources_dir

from .workspace import profile_list, workspace_override

NO_PERMIT = (
    "<p>No current permit names you for any project, so there is no workspace to start. "
    "Ask your principal investigator or the data manager.</p>"
)


class ProjectKubeSpawner(SiteSpawner, KubeSpawner):  # type: ignore[misc]
    """Starts the pod of one project for one person, as the policy allows today."""

    _plan: SpawnPlan | None = None

    def _policy(self) -> Policy:
        return load_policy(self.tre_settings.policy_dir)

    # -- the spawn form ----------------------------------------------------------

    def profiles(self) -> list[dict[str, Any]]:
        """This person's choices today: one per permit naming them, as in the values."""
        return profile_list(
            self.tre_settings,
            self._policy(),
            date.today(),
            image=self.image,
            username=self.user.name,
        )

    async def options_form(self, spawner: KubeSpawner) -> str:
        profiles = await asyncio.to_thread(self.profiles)
        if not profiles:
            return NO_PERMIT
        # KubeSpawner's own form; its template escapes nothing, the profiles escape their text.
        form: str = self._render_options_form(profiles)
        return form

    def options_from_form(self, formdata: dict[str, list[str]]) -> dict[str, str]:
        """{"profile": <permit id>, "project": <its project>}: the audit and review services
        read a server's project from its user_options."""
        permit_id = (formdata.get("profile") or [""])[0]
        options = {"profile": permit_id} if permit_id else {}
        project = (formdata.get("project") or [""])[0]
        if not project and permit_id:
            permit = self._policy().permit(permit_id)
            project = permit.project if permit is not None else ""
        return {**options, "project": project} if project else options

    def options_from_query(self, query: dict[str, list[str]]) -> dict[str, str]:
        return self.options_from_form(query)

    # -- the check ---------------------------------------------------------------

    def requested_project(self, policy: Policy) -> str:
        project = str(self.user_options.get("project") or "")
        profile = str(self.user_options.get("profile") or "")
        if not project and profile:
            permit = policy.permit(profile)
            project = permit.project if permit is not None else ""
        project = project or self.name or ""
        if not project:
            raise SpawnRefused("choose a project to start a workspace for")
        if self.name and project != self.name:
            raise SpawnRefused(
                f"the workspace '{self.name}' can only be started for project '{self.name}'"
            )
        return project

    def plan(self) -> SpawnPlan:
        """Ask the policy (again) and check the data; raises `SpawnRefused`."""
        settings = self.tre_settings
        policy = self._policy()
        plan = check_spawn(
            policy, settings, self.user.name, self.requested_project(policy), date.today()
        )
        profile = self.user_options.get("profile")
        if profile and profile != plan.permit:
            raise SpawnRefused(
                f"permit '{profile}' is not the one you work under in project "
                f"'{plan.project}' today ('{plan.permit}'); reload the page and choose again"
            )
        check_plan_datasets(plan, settings.hub_dir, self.log)
        return plan

    def prepare_folders(self, plan: SpawnPlan) -> None:
        """The project's workspace (1000:100, setgid) and resources folders, as on Docker."""
        plan.workspace.mkdir(parents=True, exist_ok=True)
        status = plan.workspace.stat()
        if (status.st_uid, status.st_gid) != (WORKSPACE_UID, WORKSPACE_GID):
            os.chown(plan.workspace, WORKSPACE_UID, WORKSPACE_GID)
        plan.workspace.chmod(0o2770)
        resources = project_resources_dir(self.tre_settings, plan.project)
        resources.mkdir(parents=True, exist_ok=True, mode=0o755)

    def apply(self, plan: SpawnPlan) -> None:
        """Configure the pod from the plan, replacing whatever config or a profile set."""
        for name, value in workspace_override(self.tre_settings, plan, image=self.image).items():
            setattr(self, name, value)
        self._plan = plan

    # -- start and stop ----------------------------------------------------------

    async def load_user_options(self) -> None:
        """KubeSpawner's first step of every start: here the policy decides, not the
        profile list (which is only the menu)."""
        project = self.user_options.get("project") or self.name or None
        try:
            plan = await asyncio.to_thread(self.plan)
            await asyncio.to_thread(self.prepare_folders, plan)
        except SpawnRefused as exc:
            self._audit(EventKind.spawn_refused, project, None, reason=str(exc))
            raise Refusal(str(exc)) from exc
        self.apply(plan)
        self._audit(
            EventKind.spawn_requested,
            plan.project,
            plan.permit,
            datasets=[f"{m.dataset}@{m.version}" for m in plan.datasets],
        )

    def start(self) -> Any:
        # KubeSpawner's start returns the future its progress() follows; audit when it ends.
        return self._audited(super().start())

    async def _audited(self, started: Any) -> Any:
        result = await started
        if self._plan is not None:
            self._audit(EventKind.server_started, self._plan.project, self._plan.permit)
        return result

    async def stop(self, now: bool = False) -> Any:
        result = await super().stop(now=now)
        project = self.user_options.get("project") or self.name or None
        self._audit(EventKind.server_stopped, project, None)
        return result
