"""Permit status and the check_/can_ pairs that every service asks before granting access."""

from __future__ import annotations

from datetime import date

import pytest

from tests.support import DEMO_POLICY, DEMO_TODAY
from tre.policy import Permit, PermitError, PermitStatus, load_policy


def make_permit(**changes: object) -> Permit:
    """A valid permit, changed as asked (factories build objects in a given state)."""
    fields: dict[str, object] = {
        "id": "p1",
        "project": "proj",
        "access_body_reference": "REF-1",
        "issued_by": "HDAB",
        "issued": date(2026, 1, 1),
        "purpose": "scientific_research",
        "start": date(2026, 1, 10),
        "expiry": date(2026, 12, 31),
        "people": ("alice",),
        "datasets": ({"dataset": "d", "version": "1"},),
    }
    fields.update(changes)
    return Permit.model_validate(fields)


@pytest.mark.parametrize(
    ("today", "status"),
    [
        (date(2026, 1, 9), PermitStatus.not_started),
        (date(2026, 1, 10), PermitStatus.active),
        (date(2026, 12, 31), PermitStatus.active),
        (date(2027, 1, 1), PermitStatus.expired),
    ],
)
def test_status_follows_the_dates(today: date, status: PermitStatus) -> None:
    assert make_permit().status(today) is status


def test_expiry_day_is_the_last_day_of_access() -> None:
    permit = make_permit()
    assert permit.can_use(date(2026, 12, 31))
    with pytest.raises(PermitError, match=r"^permit 'p1' expired at the end of 2026-12-31$"):
        permit.check_usable(date(2027, 1, 1))


def test_revocation_takes_effect_on_its_date() -> None:
    permit = make_permit(revoked={"effective": date(2026, 6, 1), "reason": "breach of conditions"})
    assert permit.can_use(date(2026, 5, 31))
    assert not permit.can_use(date(2026, 6, 1))
    with pytest.raises(PermitError, match="was revoked on 2026-06-01: breach of conditions"):
        permit.check_usable(date(2026, 6, 1))


def test_archived_permit_grants_nothing() -> None:
    permit = make_permit(archived=True)
    assert permit.status(date(2026, 6, 1)) is PermitStatus.archived
    assert not permit.can_person("alice", date(2026, 6, 1))


def test_only_the_people_named_may_use_a_permit() -> None:
    permit = make_permit()
    assert permit.can_person("alice", date(2026, 6, 1))
    assert not permit.can_person("mallory", date(2026, 6, 1))
    with pytest.raises(PermitError, match=r"^permit 'p1' does not name 'mallory'$"):
        permit.check_person("mallory", date(2026, 6, 1))


def test_start_before_issue_is_refused() -> None:
    with pytest.raises(ValueError, match=r"start 2025-12-31 is before the permit was issued"):
        make_permit(start=date(2025, 12, 31))


def test_usable_permits_lists_a_users_projects() -> None:
    policy = load_policy(DEMO_POLICY, DEMO_TODAY)
    assert [p.project for p in policy.usable_permits("bob", DEMO_TODAY)] == [
        "gbm-linkage",
        "hf-outcomes",
    ]
    assert [p.project for p in policy.usable_permits("carla", DEMO_TODAY)] == ["hf-outcomes"]
    assert policy.usable_permits("olivia", DEMO_TODAY) == ()
    assert [p.project for p in policy.usable_permits("bob", date(2027, 5, 1))] == ["gbm-linkage"]


def test_eligible_checkers_exclude_project_members() -> None:
    policy = load_policy(DEMO_POLICY, DEMO_TODAY)
    project = policy.project("gbm-linkage")
    assert project is not None
    assert policy.eligible_checkers(project) == ("olivia", "oscar")


def test_dataset_version_folder_is_per_project() -> None:
    policy = load_policy(DEMO_POLICY, DEMO_TODAY)
    dataset = policy.dataset("gbm-mri")
    assert dataset is not None
    version = dataset.version("1")
    assert version is not None
    assert version.folder(dataset.id, project="gbm-linkage") == "gbm-linkage/gbm-mri/1"
