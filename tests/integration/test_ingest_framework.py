"""The ingest run as a whole: permits gate it, keys fail closed, versions are atomic, immutable."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import DEMO_TODAY
from tre.ingest import IngestError, ingest_version
from tre.policy import Policy
from tre.pseudonym import KeyCustodyError, default_master_key_path
from tre.settings import Settings

TRE = Path(sys.executable).parent / "tre"
EMR = ("hf-outcomes", "clinical-records", "1")


def test_ingest_seals_a_read_only_version_without_source_identifiers(
    tre_site: Settings, demo_policy: Policy
) -> None:
    result = ingest_version(tre_site, demo_policy, *EMR, today=DEMO_TODAY)
    assert result.version_dir == tre_site.datasets_dir / "hf-outcomes/clinical-records/1"
    manifest = (result.version_dir / "MANIFEST.json").read_text(encoding="utf-8")
    assert "MRN" not in manifest
    assert result.manifest.counts.patients > 100
    assert {f.path for f in result.manifest.files} == {
        p.relative_to(result.version_dir).as_posix()
        for p in result.version_dir.rglob("*")
        if p.is_file() and p.name != "MANIFEST.json"
    }
    for path in [result.version_dir, *result.version_dir.rglob("*")]:
        assert not path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH), path
    assert not list((tre_site.var_dir / ".staging").iterdir())


def test_a_sealed_version_is_never_replaced(tre_site: Settings, demo_policy: Policy) -> None:
    result = ingest_version(tre_site, demo_policy, *EMR, today=DEMO_TODAY)
    before = (result.version_dir / "MANIFEST.json").read_bytes()
    with pytest.raises(IngestError, match="already exists; versions are immutable"):
        ingest_version(tre_site, demo_policy, *EMR, today=DEMO_TODAY)
    assert (result.version_dir / "MANIFEST.json").read_bytes() == before


def test_an_interrupted_ingest_leaves_no_version(tre_site: Settings, demo_policy: Policy) -> None:
    calls = 0

    def interrupt(label: str, done: int, total: int) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ingest_version(tre_site, demo_policy, *EMR, today=DEMO_TODAY, progress=interrupt)
    assert not (tre_site.datasets_dir / "hf-outcomes").exists()
    assert not list((tre_site.var_dir / ".staging").iterdir())
    assert not (tre_site.var_dir / "ingest").exists()
    # and the next run goes through
    ingest_version(tre_site, demo_policy, *EMR, today=DEMO_TODAY)


def test_same_inputs_and_key_give_identical_versions(
    tre_site: Settings, demo_policy: Policy, tmp_path: Path, demo_silos: Path
) -> None:
    other = Settings(policy_dir=tre_site.policy_dir, var_dir=tmp_path / "other-var")
    (other.var_dir).mkdir()
    (other.var_dir / "silos").symlink_to(demo_silos, target_is_directory=True)
    other.keys_dir.mkdir(mode=0o700)
    key = default_master_key_path(tre_site.keys_dir)
    shutil.copy2(key, default_master_key_path(other.keys_dir))
    first = ingest_version(tre_site, demo_policy, *EMR, today=DEMO_TODAY)
    second = ingest_version(other, demo_policy, *EMR, today=DEMO_TODAY)
    assert first.manifest_sha256 == second.manifest_sha256


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("nope", "clinical-records", "1"),
            "unknown project 'nope' (known: gbm-linkage, hf-outcomes)",
        ),
        (("hf-outcomes", "nope", "1"), "unknown dataset 'nope'"),
        (
            ("hf-outcomes", "clinical-records", "7"),
            "dataset 'clinical-records' has no version '7' (known: 1)",
        ),
        (
            ("hf-outcomes", "gbm-mri", "1"),
            "no current permit of project 'hf-outcomes' grants "
            "dataset 'gbm-mri' version '1'; ingest prepares only data a permit grants",
        ),
    ],
)
def test_ingest_refuses_what_no_permit_grants(
    tre_site: Settings, demo_policy: Policy, args: tuple[str, str, str], message: str
) -> None:
    with pytest.raises(IngestError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ingest_version(tre_site, demo_policy, *args, today=DEMO_TODAY)


def test_an_expired_permit_grants_no_ingest(tre_site: Settings, demo_policy: Policy) -> None:
    from datetime import date

    with pytest.raises(IngestError, match="no current permit of project 'hf-outcomes'"):
        ingest_version(tre_site, demo_policy, *EMR, today=date(2027, 5, 1))


def test_a_missing_or_exposed_key_fails_closed(tre_site: Settings, demo_policy: Policy) -> None:
    key = default_master_key_path(tre_site.keys_dir)
    key.chmod(0o644)
    with pytest.raises(KeyCustodyError, match="0600 is required"):
        ingest_version(tre_site, demo_policy, *EMR, today=DEMO_TODAY)
    key.unlink()
    with pytest.raises(KeyCustodyError):
        ingest_version(tre_site, demo_policy, *EMR, today=DEMO_TODAY)
    assert not tre_site.datasets_dir.exists()


def test_a_missing_source_folder_is_named(
    tre_site: Settings, demo_policy: Policy, tmp_path: Path
) -> None:
    with pytest.raises(IngestError, match=f"{tmp_path}/absent: source folder does not exist"):
        ingest_version(tre_site, demo_policy, *EMR, today=DEMO_TODAY, source=tmp_path / "absent")


def run_tre(settings_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(TRE), "--settings", str(settings_file), *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={"PATH": os.environ["PATH"], "COLUMNS": "200", "NO_COLOR": "1"},
    )


def test_the_cli_creates_a_key_records_an_opt_out_and_ingests(
    tmp_path: Path, demo_silos: Path
) -> None:
    var = tmp_path / "var"
    var.mkdir()
    (var / "silos").symlink_to(demo_silos, target_is_directory=True)
    settings_file = tmp_path / "tre.yaml"
    repo_policy = Path(__file__).resolve().parents[2] / "policies" / "demo"
    settings_file.write_text(f"var_dir: {var}\npolicy_dir: {repo_policy}\n", encoding="utf-8")
    today = ["--today", DEMO_TODAY.isoformat()]

    created = run_tre(settings_file, "key", "create")
    assert created.returncode == 0, created.stderr
    again = run_tre(settings_file, "key", "create")
    assert again.returncode == 1
    assert str(var / "keys" / "master.key") in again.stderr
    assert run_tre(settings_file, "key", "create", "--if-missing").returncode == 0
    shown = run_tre(settings_file, "key", "show")
    assert "key id" in shown.stdout

    patient = (demo_silos / "emr" / "patients.csv").read_text().splitlines()[1].split(",")[0]
    added = run_tre(settings_file, "optout", "add", patient, "--by", "adam", "--on", "2026-11-01")
    assert added.returncode == 0, added.stderr
    twice = run_tre(settings_file, "optout", "add", patient, "--by", "adam")
    assert twice.returncode == 1
    status = run_tre(settings_file, "optout", "status", "--on", "2026-11-23")
    assert "1 patient(s) opted out on 2026-11-23" in status.stdout

    ingested = run_tre(settings_file, "ingest", "run", *EMR, *today)
    assert ingested.returncode == 0, ingested.stderr
    assert "1 excluded by opt-out" in ingested.stdout
    assert "manifest_sha256: " in ingested.stdout
    version_dir = var / "datasets" / "hf-outcomes" / "clinical-records" / "1"
    for path in version_dir.rglob("*"):
        if path.is_file():
            assert patient.encode() not in path.read_bytes()

    project = run_tre(settings_file, "ingest", "project", "hf-outcomes", *today)
    assert project.returncode == 0, project.stderr
    assert "already sealed" in project.stdout
