"""`tre audit`: verify names the broken record and exits 1; show filters; prune keeps retention."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.support import DEMO_POLICY
from tre.audit import AuditEvent, AuditStore, EventKind, open_store
from tre.cli import app
from tre.settings import Settings


@pytest.fixture
def var(tmp_path: Path) -> Path:
    return tmp_path / "var"


def run(var: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        app, ["audit", *args], env={"TRE_VAR_DIR": str(var), "TRE_POLICY_DIR": str(DEMO_POLICY)}
    )
    return result.exit_code, result.output


def store_of(var: Path) -> AuditStore:
    return open_store(Settings(policy_dir=DEMO_POLICY, var_dir=var))


def fill(var: Path) -> AuditStore:
    store = store_of(var)
    long_ago = datetime.now(UTC) - timedelta(days=500)
    for n, (actor, at) in enumerate([("alice", long_ago), ("bob", None), ("alice", None)]):
        store.append(
            AuditEvent(
                kind=EventKind.execute,
                actor=actor,
                project="gbm-linkage",
                permit="gbm-linkage-2026",
                detail={"n": n},
                **({"at": at} if at else {}),
            )
        )
    return store


def test_verify_passes_then_names_the_edited_record(var: Path) -> None:
    store = fill(var)
    code, output = run(var, "verify")
    assert code == 0, output
    assert "1 chain(s) verify" in output
    path = store.path_of("gbm-linkage")
    lines = path.read_text().splitlines()
    lines[1] = lines[1].replace('"actor":"bob"', '"actor":"carla"')
    path.write_text("\n".join(lines) + "\n")
    code, output = run(var, "verify")
    assert code == 1
    assert "project gbm-linkage seq 2" in output and "gbm-linkage.jsonl:2" in output
    assert "edited" in output
    code, output = run(var, "verify", "--json")
    problems = json.loads(output)["problems"]
    assert [(p["copy"], p["kind"], p["seq"]) for p in problems] == [
        ("file", "edited", 2),
        ("both", "disagree", 2),
    ]


def test_show_filters_and_prints_json_lines(var: Path) -> None:
    fill(var)
    code, output = run(var, "show", "--user", "alice", "--json")
    assert code == 0, output
    assert [json.loads(line)["detail"]["n"] for line in output.splitlines()] == [0, 2]
    since = (date.today() - timedelta(days=1)).isoformat()
    code, output = run(var, "show", "--project", "gbm-linkage", "--since", since, "--json")
    assert [json.loads(line)["seq"] for line in output.splitlines()] == [2, 3]
    code, output = run(var, "show", "--kind", "nonsense")
    assert code == 2 and "not a kind of audit record" in output


def test_prune_keeps_the_retention_period(var: Path) -> None:
    store = fill(var)
    too_recent = (date.today() - timedelta(days=30)).isoformat()
    code, output = run(var, "prune", "--before", too_recent)
    assert code == 1 and "retention_days" in output
    code, output = run(var, "prune", "--dry-run")
    assert code == 0 and "would remove 1 record(s) up to seq 1" in output
    assert store.count("gbm-linkage") == 3
    code, output = run(var, "prune")
    assert code == 0 and "removed 1 record(s) up to seq 1; 3 kept" in output
    assert run(var, "verify")[0] == 0
