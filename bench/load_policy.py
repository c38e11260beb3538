"""The load bench's site policy: the demo policy dated for today, plus load projects whose
researchers (`load01`, `load02`, ...) hold a current permit to the clinical records.

Invariant: the written folder loads with `tre.policy.load_policy` (checked before it is
returned), every load researcher is a member of exactly one load project and is named on
its permit, and the demo's own people and projects are left as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.sites import policy_for_today
from tre.policy import load_policy

PROJECT_NAMES = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta")
DATASET = ("clinical-records", "1")


@dataclass(frozen=True)
class Researcher:
    username: str
    project: str


def researchers(users: int, projects: int) -> list[Researcher]:
    """`users` researchers dealt round-robin over `projects` load projects."""
    if not 1 <= projects <= len(PROJECT_NAMES):
        raise ValueError(f"--projects {projects}: between 1 and {len(PROJECT_NAMES)}")
    if not projects <= users <= 99:
        raise ValueError(f"--users {users}: between the number of projects and 99")
    ids = [f"load-{name}" for name in PROJECT_NAMES[:projects]]
    return [Researcher(f"load{n + 1:02d}", ids[n % projects]) for n in range(users)]


def _edit(path: Path, key: str, extra: list[dict[str, Any]]) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data[key] = [*data[key], *extra]
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")


def write_bench_policy(target: Path, today: date, people: list[Researcher]) -> list[str]:
    """Write the policy to `target` (which must not exist); return the load projects' ids."""
    policy_for_today(target, today)
    projects = sorted({p.project for p in people})
    _edit(
        target / "people.yaml",
        "people",
        [
            {
                "username": p.username,
                "name": f"Load Researcher {p.username[4:]}",
                "email": f"{p.username}@demo-hospital.invalid",
                "organisation": "Load test",
                "roles": ["researcher"],
            }
            for p in people
        ],
    )
    new_projects, permits = [], []
    for project in projects:
        members = [p.username for p in people if p.project == project]
        new_projects.append(
            {
                "id": project,
                "title": f"Load test project {project}",
                "lay_summary": "A project that exists only for the load benchmark.",
                "purpose": "scientific_research",
                "purpose_description": "Measure the site under many researchers at once.",
                "principal_investigator": members[0],
                "members": [
                    {"username": m, "role": "principal_investigator" if i == 0 else "analyst"}
                    for i, m in enumerate(members)
                ],
            }
        )
        permits.append(
            {
                "id": f"{project}-permit",
                "project": project,
                "access_body_reference": f"HDAB-LOAD-{project}",
                "issued_by": "Health Data Access Body (demo)",
                "issued": str(today - timedelta(days=2)),
                "purpose": "scientific_research",
                "start": str(today - timedelta(days=1)),
                "expiry": str(today + timedelta(days=30)),
                "people": members,
                "datasets": [{"dataset": DATASET[0], "version": DATASET[1]}],
                "conditions": {
                    "reviews_required": 1,
                    "disclosure_profile": "acro-default",
                    "terminals_allowed": False,
                },
            }
        )
    _edit(target / "projects.yaml", "projects", new_projects)
    _edit(target / "permits.yaml", "permits", permits)
    load_policy(target, today)
    return projects
