"""tre project provision / suspend / archive against the real Docker engine and firewall.

hf-outcomes (one dataset: the EMR) is ingested into a site under tmp_path; the commands run
as an administrator would run them, through the `tre` CLI.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest
from typer.testing import CliRunner

from tests.support import DEMO_POLICY, DEMO_TODAY
from tre.audit import EventKind, open_store
from tre.cli import app
from tre.hub.config import firewall_rules
from tre.hub.firewall import remove_rules
from tre.hub.networks import PROJECT_LABEL, get_project_network, remove_project_network
from tre.hub.plan import SpawnRefused, check_spawn
from tre.ingest import ingest_version
from tre.policy import load_policy
from tre.pseudonym import create_master_key, default_master_key_path
from tre.settings import AuditSettings, HubSettings, Settings

pytestmark = [pytest.mark.docker, pytest.mark.slow]

HF = "hf-outcomes"


@dataclass
class Site:
    settings: Settings
    env: dict[str, str]

    def tre(self, *args: str) -> tuple[int, str]:
        result = CliRunner().invoke(app, list(args), env=self.env)
        return result.exit_code, result.output


@pytest.fixture
def site(tmp_path: Path, demo_silos: Path) -> Iterator[Site]:
    policy_dir = tmp_path / "policy"
    shutil.copytree(DEMO_POLICY, policy_dir)
    settings = Settings(
        policy_dir=policy_dir,
        var_dir=tmp_path / "var",
        hub=HubSettings(hub_port=18081),
        audit=AuditSettings(port=18082),
    )
    settings.var_dir.mkdir()
    (settings.var_dir / "silos").symlink_to(demo_silos, target_is_directory=True)
    create_master_key(default_master_key_path(settings.keys_dir))
    policy = load_policy(policy_dir, DEMO_TODAY)
    ingest_version(settings, policy, HF, "clinical-records", "1", today=DEMO_TODAY)
    settings_file = tmp_path / "settings.yaml"
    settings_file.write_text(settings.model_dump_json())
    env = {"TRE_SETTINGS": str(settings_file), "USER": "adam"}
    client = docker.from_env()
    try:
        yield Site(settings, env)
    finally:
        for c in client.containers.list(all=True, filters={"label": f"{PROJECT_LABEL}={HF}"}):
            c.remove(force=True)
        remove_project_network(client, HF)
        remove_rules(firewall_rules(settings))


def test_provision_suspend_resume_archive(site: Site, workspace_image: str) -> None:
    s = site.settings
    code, out = site.tre("project", "provision", HF, "--today", str(DEMO_TODAY))
    assert code == 0, out
    assert "dataset clinical-records@1 matches its manifest" in out
    workspace = s.workspaces_dir / HF
    info = workspace.stat()
    assert (info.st_uid, info.st_gid, info.st_mode & 0o7777) == (1000, 100, 0o2770)
    network = get_project_network(docker.from_env(), HF)
    assert network is not None
    code, out = site.tre("project", "provision", HF, "--today", str(DEMO_TODAY))
    assert code == 0, out  # idempotent

    # A running workspace of the project is stopped by the suspension; starts are refused.
    container = docker.from_env().containers.run(
        workspace_image, ["sleep", "300"], detach=True, labels={PROJECT_LABEL: HF}
    )
    code, out = site.tre("project", "suspend", HF, "--reason", "permit under review")
    assert code == 0, out
    container.reload()
    assert container.status == "exited"
    policy = load_policy(s.policy_dir, DEMO_TODAY)
    with pytest.raises(SpawnRefused, match=r"suspended .*permit under review"):
        check_spawn(policy, s, "carla", HF, DEMO_TODAY)
    code, out = site.tre("project", "provision", HF, "--today", str(DEMO_TODAY))
    assert code == 0, out
    check_spawn(policy, s, "carla", HF, DEMO_TODAY)

    (workspace / "analysis.ipynb").write_text("{}")
    releases = s.releases_dir / HF / "req1"
    releases.mkdir(parents=True)
    (releases / "table.csv").write_text("a,n\nx,40\n")
    code, out = site.tre("project", "archive", HF, "--reason", "ended", "--confirm", "hf")
    assert code == 1 and "repeat its id" in out
    assert workspace.exists()
    code, out = site.tre("project", "archive", HF, "--reason", "ended", "--confirm", HF)
    assert code == 0, out
    assert not workspace.exists()
    assert not (s.datasets_dir / HF).exists()
    assert get_project_network(docker.from_env(), HF) is None
    assert (releases / "table.csv").read_text() == "a,n\nx,40\n"
    code, out = site.tre("project", "provision", HF, "--today", str(DEMO_TODAY))
    assert code == 1 and "is archived: it cannot be provisioned" in out

    store = open_store(s)
    kinds = [r.kind for r in store.show(project=HF) if r.kind.value.startswith("project_")]
    assert kinds == [
        EventKind.project_provisioned,
        EventKind.project_provisioned,
        EventKind.project_suspended,
        EventKind.project_provisioned,
        EventKind.project_suspended,  # archiving refuses new starts first
        EventKind.project_archived,
    ]
    assert store.verify().ok


def test_a_changed_dataset_stops_the_provisioning(site: Site) -> None:
    s = site.settings
    version = s.datasets_dir / HF / "clinical-records" / "1"
    victim = next(p for p in sorted(version.rglob("*.parquet")))
    victim.chmod(0o644)
    victim.write_bytes(victim.read_bytes() + b"x")
    code, out = site.tre("project", "provision", HF, "--today", str(DEMO_TODAY))
    assert code == 1
    assert "not provisioned" in out and "clinical-records" in out
    assert not (s.var_dir / "projects" / HF / "state.json").exists()
