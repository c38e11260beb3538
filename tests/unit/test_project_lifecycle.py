"""A project's lifecycle as data, and the spawner's refusal of a suspended project."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.support import DEMO_TODAY
from tre.hub.lifecycle import TRANSITIONS, Move, archive, can_move, check_move, suspend
from tre.hub.plan import SpawnRefused, check_spawn
from tre.hub.project_state import (
    LifecycleError,
    ProjectState,
    StateRecord,
    check_not_suspended,
    state_file,
)
from tre.policy import Policy
from tre.settings import Settings

GBM = "gbm-linkage"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(policy_dir=tmp_path / "unused", var_dir=tmp_path / "var")


def put_state(settings: Settings, state: ProjectState, reason: str | None = "audit") -> None:
    path = state_file(settings, GBM)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = StateRecord(
        project=GBM, state=state, at=datetime(2026, 11, 1, tzinfo=UTC), by="adam", reason=reason
    )
    path.write_text(record.model_dump_json())


def test_an_archived_project_moves_nowhere_and_every_other_state_can_be_archived() -> None:
    assert not [key for key in TRANSITIONS if key[0] is ProjectState.archived]
    for state in (None, ProjectState.provisioned, ProjectState.suspended):
        assert TRANSITIONS[(state, Move.archive)] is ProjectState.archived
    assert TRANSITIONS[(ProjectState.suspended, Move.provision)] is ProjectState.provisioned


def test_moves_follow_the_table(settings: Settings) -> None:
    assert check_move(settings, GBM, Move.provision) is ProjectState.provisioned
    put_state(settings, ProjectState.archived)
    for move in Move:
        assert not can_move(settings, GBM, move)
    with pytest.raises(LifecycleError, match="project 'gbm-linkage' is archived: it cannot"):
        check_move(settings, GBM, Move.provision)


@pytest.mark.parametrize("state", [ProjectState.suspended, ProjectState.archived])
def test_a_suspended_or_archived_project_starts_no_workspace(
    settings: Settings, demo_policy: Policy, state: ProjectState
) -> None:
    check_spawn(demo_policy, settings, "alice", GBM, DEMO_TODAY)  # allowed before
    put_state(settings, state, reason="permit under review")
    with pytest.raises(SpawnRefused, match=f"is {state} since 2026-11-01: permit under review"):
        check_spawn(demo_policy, settings, "alice", GBM, DEMO_TODAY)
    put_state(settings, ProjectState.provisioned)
    check_spawn(demo_policy, settings, "alice", GBM, DEMO_TODAY)


def test_an_unreadable_state_refuses_starts(settings: Settings, demo_policy: Policy) -> None:
    path = state_file(settings, GBM)
    path.parent.mkdir(parents=True)
    path.write_text('{"project": "gbm-linkage", "state": "running"}')
    with pytest.raises(LifecycleError, match="not a project state record"):
        check_not_suspended(settings, GBM)
    with pytest.raises(SpawnRefused):
        check_spawn(demo_policy, settings, "alice", GBM, DEMO_TODAY)


def test_refusals_name_the_problem_and_change_nothing(
    settings: Settings, demo_policy: Policy
) -> None:
    with pytest.raises(LifecycleError, match="no project 'nope' in the policy"):
        suspend(settings, demo_policy, "nope", by="adam", reason="x")
    with pytest.raises(LifecycleError, match="needs a reason"):
        suspend(settings, demo_policy, GBM, by="adam", reason=" ")
    with pytest.raises(LifecycleError, match="repeat its id with --confirm"):
        archive(settings, demo_policy, GBM, by="adam", reason="ended", confirm="gbm")
    assert not state_file(settings, GBM).exists()
    assert not (settings.var_dir / "logs").exists()  # nothing audited: nothing happened
