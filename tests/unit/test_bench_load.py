"""The load bench's site policy and its reading of `docker stats` (bench/load_policy.py,
bench/load.py), without running any load: every load researcher is a member of one project,
on its current permit, and known to the demo OIDC provider; bad sizes are refused by name.
No timings are asserted: timings live in bench/."""

from __future__ import annotations

from collections import Counter
from datetime import date
from pathlib import Path

import pytest

from bench.load import BenchError, mib
from bench.load_policy import researchers, write_bench_policy
from tre.demo.idp import accounts_from_policy
from tre.policy import load_policy


def test_twenty_researchers_are_dealt_over_three_projects() -> None:
    people = researchers(20, 3)

    assert len({p.username for p in people}) == 20
    assert Counter(p.project for p in people) == {"load-alpha": 7, "load-beta": 7, "load-gamma": 6}


@pytest.mark.parametrize(
    ("users", "projects", "words"),
    [(20, 0, "--projects 0"), (2, 3, "--users 2"), (100, 3, "--users 100")],
)
def test_impossible_sizes_are_refused_by_name(users: int, projects: int, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        researchers(users, projects)


def test_the_policy_gives_each_researcher_a_current_permit(tmp_path: Path) -> None:
    today = date.today()
    people = researchers(20, 3)

    projects = write_bench_policy(tmp_path / "policy", today, people)

    policy = load_policy(tmp_path / "policy", today)
    assert projects == ["load-alpha", "load-beta", "load-gamma"]
    for person in people:
        [permit] = [p for p in policy.permits if p.project == person.project]
        assert person.username in permit.people
        assert permit.status(today).value == "active"
        project = next(p for p in policy.projects if p.id == person.project)
        assert person.username in {m.username for m in project.members}
    known = {a.username for a in accounts_from_policy(policy)}
    assert {p.username for p in people} | {"alice", "bob", "olivia"} <= known


@pytest.mark.parametrize(
    ("text", "expected"),
    [("123.4MiB / 2GiB", 123.4), ("1.5GiB / 2GiB", 1536.0), ("512KiB / 2GiB", 0.5)],
)
def test_docker_stats_memory_is_read_in_mib(text: str, expected: float) -> None:
    assert mib(text) == pytest.approx(expected)


def test_an_unreadable_memory_figure_is_named() -> None:
    with pytest.raises(BenchError, match="'--'"):
        mib("--")
