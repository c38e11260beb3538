"""Usage per project and month, from a real audit store, and peak memory from cgroups."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tre.audit import AuditEvent, EventKind, open_store
from tre.hub.measure import peak_memory
from tre.settings import Settings
from tre.usage import UsageError, UsageRow, usage_csv, usage_report

GBM, HF = "gbm-linkage", "hf-outcomes"
GIB = 1 << 30


def at(day: str, hour: int = 0) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(policy_dir=tmp_path / "unused", var_dir=tmp_path / "var")


def started(s: Settings, project: str, user: str, when: datetime, cpus: float | None = 2.0) -> None:
    detail = {} if cpus is None else {"cpu_limit": cpus, "mem_limit": "4G"}
    open_store(s).append(
        AuditEvent(
            kind=EventKind.server_started,
            actor=user,
            project=project,
            permit=f"{project}-2026",
            server=project,
            at=when,
            detail=detail,
        )
    )


def stopped(s: Settings, project: str, user: str, when: datetime, peak: int | None) -> None:
    open_store(s).append(
        AuditEvent(
            kind=EventKind.server_stopped,
            actor=user,
            project=project,
            server=project,
            at=when,
            detail={"peak_memory_bytes": peak},
        )
    )


def rows(s: Settings, first: str, last: str, now: datetime) -> dict[tuple[str, str], UsageRow]:
    return {(r.project, r.month): r for r in usage_report(s, open_store(s), first, last, now)}


def test_sessions_hours_compute_and_peaks_per_project_and_month(settings: Settings) -> None:
    s = settings
    started(s, GBM, "alice", at("2026-10-31", 22))  # 2 h in October, 3 h in November
    stopped(s, GBM, "alice", at("2026-11-01", 3), 3 * GIB)
    started(s, GBM, "bob", at("2026-11-02", 9), cpus=1.5)  # 4 h
    stopped(s, GBM, "bob", at("2026-11-02", 13), 5 * GIB)
    started(s, HF, "carla", at("2026-11-03", 8), cpus=None)  # no limit recorded: the default
    stopped(s, HF, "carla", at("2026-11-03", 9), None)  # peak not measured
    started(s, HF, "bob", at("2026-11-23", 10))  # still running at `now`
    now = at("2026-11-23", 12)

    found = rows(s, "2026-10", "2026-11", now)
    assert set(found) == {(GBM, "2026-10"), (GBM, "2026-11"), (HF, "2026-11")}
    october, november, hf = found[(GBM, "2026-10")], found[(GBM, "2026-11")], found[(HF, "2026-11")]
    assert (october.sessions, october.session_hours, october.compute_hours) == (1, 2.0, 4.0)
    assert october.peak_memory_bytes is None  # it ended in November
    assert (november.sessions, november.session_hours) == (1, 3.0 + 4.0)
    assert november.compute_hours == 3.0 * 2 + 4.0 * 1.5
    assert november.peak_memory_bytes == 5 * GIB
    assert (hf.sessions, hf.session_hours) == (2, 1.0 + 2.0)
    assert hf.compute_hours == 1.0 * s.hub.cpu_limit + 2.0 * 2
    assert hf.peak_memory_bytes is None


def test_a_start_without_a_stop_is_closed_by_the_next_start(settings: Settings) -> None:
    started(settings, GBM, "alice", at("2026-11-05", 8))
    started(settings, GBM, "alice", at("2026-11-05", 10))  # the hub died; no stop record
    stopped(settings, GBM, "alice", at("2026-11-05", 11), GIB)
    [row] = rows(settings, "2026-11", "2026-11", at("2026-11-30")).values()
    assert (row.sessions, row.session_hours, row.peak_memory_bytes) == (2, 3.0, GIB)


def test_storage_is_measured_now_without_following_links(
    settings: Settings, tmp_path: Path
) -> None:
    work = settings.workspaces_dir / GBM
    work.mkdir(parents=True)
    (work / "a.csv").write_bytes(b"x" * 1000)
    (work / "sub").mkdir()
    (work / "sub" / "b.bin").write_bytes(b"y" * 24)
    outside = tmp_path / "big"
    outside.write_bytes(b"z" * 10_000)
    (work / "link").symlink_to(outside)
    resources = settings.var_dir / "resources" / GBM / "genome"
    resources.mkdir(parents=True)
    (resources / "ref.fa").write_bytes(b"A" * 500)
    found = rows(settings, "2026-10", "2026-11", at("2026-11-23"))
    assert found[(GBM, "2026-11")].storage_bytes == 1524
    assert (GBM, "2026-10") not in found  # storage only in the current month


def test_the_csv_has_a_header_and_parses_back(settings: Settings) -> None:
    started(settings, GBM, "alice", at("2026-11-05", 8))
    stopped(settings, GBM, "alice", at("2026-11-05", 9), None)
    report = usage_report(settings, open_store(settings), "2026-11", "2026-11", at("2026-12-01"))
    parsed = list(csv.DictReader(io.StringIO(usage_csv(report))))
    assert parsed == [
        {
            "project": GBM,
            "month": "2026-11",
            "sessions": "1",
            "session_hours": "1.0",
            "compute_hours": "2.0",
            "peak_memory_bytes": "",
            "storage_bytes": "",
        }
    ]


@pytest.mark.parametrize(
    ("first", "last", "message"),
    [
        ("2026-13", "2026-12", "month '2026-13': give it as YYYY-MM"),
        ("November", "2026-12", "month 'November'"),
        ("2026-11", "2026-10", "the last month is before the first"),
        ("2000-01", "2026-10", "at most 120 months"),
    ],
)
def test_bad_months_are_refused_by_name(
    settings: Settings, first: str, last: str, message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        usage_report(settings, open_store(settings), first, last)


def test_peak_memory_from_cgroup_v1_stats_or_v2_files(tmp_path: Path) -> None:
    assert peak_memory({"memory_stats": {"max_usage": 123}}, "c1", tmp_path) == 123
    assert peak_memory({"memory_stats": {}}, "c2", tmp_path) is None
    systemd = tmp_path / "system.slice" / "docker-c3.scope"
    systemd.mkdir(parents=True)
    (systemd / "memory.peak").write_text("456\n")
    assert peak_memory({"memory_stats": {"usage": 1}}, "c3", tmp_path) == 456
    cgroupfs = tmp_path / "docker" / "c4"
    cgroupfs.mkdir(parents=True)
    (cgroupfs / "memory.peak").write_text("789\n")
    assert peak_memory({}, "c4", tmp_path) == 789
    (cgroupfs / "memory.peak").write_text("max\n")
    assert peak_memory({}, "c4", tmp_path) is None
