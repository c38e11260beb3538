"""One constrained devpi index per project, `tre/<project>`, made from the project's
allow-list: its requirement lines plus `*`, so any name not on the list is not there.

`sync_indexes` makes devpi match a mapping {project: [requirement lines]} exactly: indexes
are created, changed and deleted to match it, and nothing else in devpi is touched.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

from packaging.requirements import InvalidRequirement, Requirement

from tre.policy import load_policy

from .devpi import MIRROR_INDEX, DevpiAdmin, MirrorError

if TYPE_CHECKING:
    from tre.settings import Settings

log = logging.getLogger("tre.mirror")

USER = "tre"
"""The devpi user owning the per-project constrained indexes."""
BLOCK_THE_REST = "*"
_PROJECT = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


def index_name(project: str) -> str:
    if not _PROJECT.fullmatch(project):
        raise MirrorError(f"project id {project!r} cannot name a devpi index")
    return f"{USER}/{project}"


def constraint_lines(project: str, lines: Sequence[str]) -> list[str]:
    """The index's `constraints`: each allow-list line checked, then `*` to block the rest."""
    out: list[str] = []
    for line in lines:
        text = line.strip()
        try:
            req = Requirement(text)
        except InvalidRequirement as exc:
            raise MirrorError(f"project {project!r}: {text!r} is not a requirement: {exc}") from exc
        if req.url or req.marker or req.extras:
            raise MirrorError(
                f"project {project!r}: {text!r}: only a name and version specifiers are allowed"
            )
        out.append(f"{req.name}{req.specifier}")
    return [*out, BLOCK_THE_REST]


@dataclass
class SyncResult:
    created: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.created or self.changed or self.deleted)


def sync_indexes(
    client: DevpiAdmin, constraints_by_project: Mapping[str, Sequence[str]]
) -> SyncResult:
    """Make the `tre/*` indexes exactly those of `constraints_by_project`."""
    wanted = {
        index_name(project): constraint_lines(project, lines)
        for project, lines in constraints_by_project.items()
    }
    client.ensure_user(USER)
    existing = {f"{USER}/{name}": cfg for name, cfg in client.indexes_of(USER).items()}
    result = SyncResult()
    for name, constraints in sorted(wanted.items()):
        config: dict[str, Any] = {
            "type": "constrained",
            "bases": [MIRROR_INDEX],
            "constraints": constraints,
        }
        current = existing.get(name)
        if current is None:
            client.create_index(name, config)
            result.created.append(name)
        elif (
            current.get("type") != "constrained"
            or list(current.get("constraints") or ()) != constraints
            or list(current.get("bases") or ()) != [MIRROR_INDEX]
        ):
            if current.get("type") != "constrained":
                client.delete_index(name)
                client.create_index(name, config)
            else:
                client.replace_index(name, {**current, **config})
            result.changed.append(name)
    for name in sorted(set(existing) - set(wanted)):
        client.delete_index(name)
        result.deleted.append(name)
    if result:
        log.info(
            "package indexes: created %s, changed %s, deleted %s",
            result.created or "-",
            result.changed or "-",
            result.deleted or "-",
        )
    return result


def constraints_from_policy(settings: Settings, today: date | None = None) -> dict[str, list[str]]:
    """Each project's allow-list today, from the site policy (site entries plus the
    additions of the project's permits usable today)."""
    # Imported here so the mirror's own tests do not depend on the allow-list model.
    from tre.policy.packages import allowed_requirements  # noqa: PLC0415

    today = today or date.today()
    policy = load_policy(settings.policy_dir, today)
    return {p.id: list(allowed_requirements(policy, p.id, today)) for p in policy.projects}
