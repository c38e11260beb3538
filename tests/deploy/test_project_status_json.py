"""`tre project status --json`: what the playbook's projects role reads."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from tests.support import DEMO_POLICY
from tre.cli import app


def test_every_project_of_the_policy_with_its_state_or_null(tmp_path: Path) -> None:
    settings = tmp_path / "settings.yml"
    settings.write_text(
        yaml.safe_dump({"policy_dir": str(DEMO_POLICY), "var_dir": str(tmp_path / "var")}),
        encoding="utf-8",
    )
    state = tmp_path / "var" / "projects" / "hf-outcomes" / "state.json"
    state.parent.mkdir(parents=True)
    state.write_text(
        json.dumps(
            {
                "project": "hf-outcomes",
                "state": "suspended",
                "at": "2026-11-01T10:00:00Z",
                "by": "adam",
                "reason": "renewal pending",
            }
        ),
        encoding="utf-8",
    )
    result = CliRunner().invoke(app, ["--settings", str(settings), "project", "status", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"gbm-linkage": None, "hf-outcomes": "suspended"}
