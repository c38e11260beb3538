"""`tre policy ...` as an administrator runs it: the installed script, exit codes, output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main
from typer.core import TyperGroup

from tests.support import DEMO_TODAY, REPO, Edit
from tre.cli import app

TRE = Path(sys.executable).parent / "tre"
TODAY = ["--today", DEMO_TODAY.isoformat()]


def tre(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(TRE), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "80", "NO_COLOR": "1"},
    )


def test_demo_policy_validates() -> None:
    result = tre("policy", "validate", "policies/demo", *TODAY)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == (
        "ok: policies/demo (7 datasets, 2 projects, 2 permits, 7 people; 1 warning(s))"
    )


def test_demo_policy_validates_today() -> None:
    """The Done-when command, with the real date (the demo's permits run to 2027-04-30)."""
    result = tre("policy", "validate", "policies/demo")
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_site_name_resolves_under_policies() -> None:
    assert tre("policy", "validate", "demo", *TODAY).returncode == 0


def test_errors_exit_1_and_are_printed_whole(site: Path, edit: Edit) -> None:
    edit("permits.yaml", '{dataset: gbm-mri, version: "1"}', '{dataset: gbm-mri, version: "9"}')
    result = tre("policy", "validate", str(site), *TODAY)
    assert result.returncode == 1
    assert (
        f"{site}/permits.yaml:16: error: permits[0].datasets[1].version: unknown version "
        "'9' of dataset 'gbm-mri' (allowed: '1')"
    ) in result.stdout.splitlines()
    assert result.stdout.splitlines()[-1] == f"1 error(s), 1 warning(s) in {site}"


def test_json_output_for_tools(site: Path, edit: Edit) -> None:
    edit("projects.yaml", "{username: bob, role: analyst}", "{username: bob}")
    result = tre("policy", "validate", str(site), "--json", *TODAY)
    assert result.returncode == 1
    payload = json.loads(result.stdout)
    assert payload["ok"] is False
    assert payload["today"] == "2026-11-23"
    errors = [f for f in payload["findings"] if f["severity"] == "error"]
    assert errors == [
        {
            "severity": "error",
            "file": f"{site}/projects.yaml",
            "line": 16,
            "field": "projects[0].members[1].role",
            "message": "member 'bob' of project 'gbm-linkage' has no role",
            "allowed": "'analyst', 'principal_investigator', 'researcher', 'student'",
        }
    ]


def test_bad_date_option_is_named() -> None:
    result = tre("policy", "validate", "policies/demo", "--today", "23/11/2026")
    assert result.returncode == 2
    assert "--today '23/11/2026' is not a date; expected YYYY-MM-DD" in result.stderr


def test_bad_settings_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "tre.yaml"
    bad.write_text("colour: blue\n", encoding="utf-8")
    result = tre("--settings", str(bad), "policy", "validate")
    assert result.returncode == 2
    assert f"{bad}: colour: Extra inputs are not permitted" in result.stderr


def test_schema_check_passes_and_catches_drift(tmp_path: Path) -> None:
    assert tre("policy", "schema", "--check").returncode == 0
    assert tre("policy", "schema", "--out", str(tmp_path)).returncode == 0
    assert tre("policy", "schema", "--check", "--out", str(tmp_path)).returncode == 0
    (tmp_path / "site.schema.json").write_text("{}", encoding="utf-8")
    result = tre("policy", "schema", "--check", "--out", str(tmp_path))
    assert result.returncode == 1
    assert f"stale: {tmp_path}/site.schema.json" in result.stderr


def _commands(group: object, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    if isinstance(group, TyperGroup):
        for name, cmd in group.commands.items():
            found += _commands(cmd, (*path, name))
    return found


@pytest.mark.parametrize("path", _commands(typer.main.get_command(app)), ids=" ".join)
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    result = tre(*path, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage: tre" in result.stdout
    cmd: object = typer.main.get_command(app)
    for name in path:
        assert isinstance(cmd, TyperGroup)
        cmd = cmd.commands[name]
    assert getattr(cmd, "help", None), f"tre {' '.join(path)} has no help text"
