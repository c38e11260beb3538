"""What a workspace gets, decided from the policy alone — and every way it is refused."""

from __future__ import annotations

from datetime import date
from pathlib import Path, PurePosixPath

import pytest

from tests.support import DEMO_POLICY, DEMO_TODAY, Edit
from tre.hub.permit_watch import servers_to_stop
from tre.hub.plan import SpawnRefused, can_spawn, check_spawn, spawnable
from tre.hub.roles import load_roles
from tre.policy import Policy, load_policy
from tre.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(policy_dir=DEMO_POLICY, var_dir=tmp_path / "var")


def test_the_plan_mounts_exactly_the_permitted_versions(
    demo_policy: Policy, settings: Settings
) -> None:
    plan = check_spawn(demo_policy, settings, "alice", "gbm-linkage", DEMO_TODAY)
    assert plan.permit == "gbm-linkage-2026"
    assert [(m.dataset, m.source, m.target) for m in plan.datasets] == [
        (d, settings.datasets_dir / "gbm-linkage" / d / "1", PurePosixPath("/data") / d)
        for d in (
            "clinical-records",
            "gbm-mri",
            "gbm-mri-nifti",
            "gbm-variants",
            "gbm-alignments",
            "gbm-pathology",
            "gbm-single-cell",
        )
    ]
    assert plan.workspace == settings.workspaces_dir / "gbm-linkage"
    assert (plan.cpu_limit, plan.mem_limit, plan.terminals_allowed) == (1.5, "6G", False)
    assert plan.environment["TRE_PERMIT_EXPIRY"] == "2028-01-14"


def test_the_same_dataset_is_a_different_folder_per_project(
    demo_policy: Policy, settings: Settings
) -> None:
    plan = check_spawn(demo_policy, settings, "bob", "hf-outcomes", DEMO_TODAY)
    assert [m.source for m in plan.datasets] == [
        settings.datasets_dir / "hf-outcomes" / "clinical-records" / "1"
    ]
    assert (plan.cpu_limit, plan.mem_limit) == (settings.hub.cpu_limit, settings.hub.mem_limit)


@pytest.mark.parametrize(
    ("user", "project", "today", "reason"),
    [
        (
            "carla",
            "gbm-linkage",
            DEMO_TODAY,
            "you are not a member of a project called 'gbm-linkage'",
        ),
        (
            "alice",
            "no-such-project",
            DEMO_TODAY,
            "you are not a member of a project called 'no-such-project'",
        ),
        ("olivia", "gbm-linkage", DEMO_TODAY, "you are not a member"),
        (
            "bob",
            "hf-outcomes",
            date(2027, 5, 1),
            r"permit 'hf-outcomes-2026' expired at the end of 2027-04-30 \(project 'hf-outcomes'\)",
        ),
        (
            "alice",
            "gbm-linkage",
            date(2026, 1, 1),
            r"permit 'gbm-linkage-2026' starts on 2026-01-15 \(project 'gbm-linkage'\)",
        ),
    ],
)
def test_refusals_say_why(
    demo_policy: Policy, settings: Settings, user: str, project: str, today: date, reason: str
) -> None:
    with pytest.raises(SpawnRefused, match=reason):
        check_spawn(demo_policy, settings, user, project, today)
    assert not can_spawn(demo_policy, settings, user, project, today)


def test_a_member_the_permit_does_not_name_is_refused(
    site: Path, edit: Edit, settings: Settings
) -> None:
    edit("permits.yaml", "people: [alice, bob]", "people: [alice]")
    policy = load_policy(site, DEMO_TODAY)
    with pytest.raises(SpawnRefused, match="no permit of project 'gbm-linkage' names you"):
        check_spawn(policy, settings, "bob", "gbm-linkage", DEMO_TODAY)


def test_a_revoked_permit_is_refused_from_its_date(
    site: Path, edit: Edit, settings: Settings
) -> None:
    edit(
        "permits.yaml",
        "    expiry: 2028-01-14\n",
        "    expiry: 2028-01-14\n    revoked: {effective: 2026-12-01, reason: data breach}\n",
    )
    policy = load_policy(site, DEMO_TODAY)
    assert can_spawn(policy, settings, "alice", "gbm-linkage", date(2026, 11, 30))
    with pytest.raises(SpawnRefused, match="was revoked on 2026-12-01: data breach"):
        check_spawn(policy, settings, "alice", "gbm-linkage", date(2026, 12, 1))


def test_the_form_lists_only_projects_with_a_current_permit(demo_policy: Policy) -> None:
    assert [p.id for p, _ in spawnable(demo_policy, "bob", DEMO_TODAY)] == [
        "gbm-linkage",
        "hf-outcomes",
    ]
    assert [p.id for p, _ in spawnable(demo_policy, "bob", date(2027, 5, 1))] == ["gbm-linkage"]
    assert spawnable(demo_policy, "pat", DEMO_TODAY) == []


def test_permit_watch_stops_servers_whose_permit_ended(
    demo_policy: Policy, settings: Settings
) -> None:
    users = [
        {
            "name": "bob",
            "servers": {
                "hf-outcomes": {"user_options": {"project": "hf-outcomes"}},
                "gbm-linkage": {"user_options": {"project": "gbm-linkage"}},
            },
        },
        {"name": "carla", "servers": {"": {"user_options": {"project": "gbm-linkage"}}}},
        {"name": "pat", "servers": {}},
    ]
    assert servers_to_stop(demo_policy, settings, users, DEMO_TODAY) == [
        type(servers_to_stop(demo_policy, settings, users, DEMO_TODAY)[0])(
            "carla", "", "gbm-linkage", "you are not a member of a project called 'gbm-linkage'"
        )
    ]
    late = servers_to_stop(demo_policy, settings, users, date(2027, 5, 1))
    assert [(s.username, s.server) for s in late] == [("bob", "hf-outcomes"), ("carla", "")]


def test_roles_never_let_anyone_mint_tokens_share_or_enter_others_servers(
    demo_policy: Policy,
) -> None:
    roles = {r["name"]: r for r in load_roles(demo_policy.site.identity)}
    assert set(roles) == {
        "user",
        "tre-researcher",
        "tre-output-checker",
        "tre-admin",
        "tre-patient-rep",
    }
    # Patients' representatives read the summaries service, and nothing else.
    assert roles["tre-patient-rep"]["scopes"] == ["access:services!service=tre-summaries"]
    assert roles["tre-patient-rep"]["groups"] == ["tre-patient-reps"]
    every_scope = [s for r in roles.values() for s in r["scopes"]]
    forbidden = ("tokens", "shares", "admin:", "access:servers!", "self", "inherit")
    for scope in every_scope:
        if scope == "access:servers!user":
            continue  # one's own servers only
        assert not any(scope.startswith(f) or scope == f for f in forbidden), scope
    assert "access:servers" not in roles["tre-admin"]["scopes"]
    assert roles["tre-researcher"]["groups"] == ["tre-researchers"]
    assert "servers!user" not in roles["user"]["scopes"]
