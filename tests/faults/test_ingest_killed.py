"""`tre ingest` killed (SIGKILL) while it writes a dataset version.

Nothing half-written may be visible: the version's folder appears by one rename, after its
manifest, so a killed run leaves no version, and a spawn's dataset check says it is
missing. Its staging folder (pseudonymised files that were never sealed) is removed by the
next run, which seals the version; the spawn's check then verifies every file against the
manifest.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest

from tests.faults.processes import kill, wait_until
from tests.support import DEMO_POLICY, DEMO_TODAY, gbm_version_dir
from tre.hub.datasets import MANIFEST_NAME, DatasetUnavailable, check_dataset
from tre.hub.plan import DatasetMount
from tre.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

TRE = Path(sys.executable).parent / "tre"
DATASET = "gbm-mri"  # hundreds of DICOM files: seconds of writing to be killed in
ARGS = ("gbm-linkage", DATASET, "1", "--today", DEMO_TODAY.isoformat())


def ingest(settings_file: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [str(TRE), "--settings", str(settings_file), "ingest", "run", *ARGS],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={"PATH": os.environ["PATH"], "COLUMNS": "200", "NO_COLOR": "1"},
        )


def staged_files(staging: Path) -> int:
    if not staging.is_dir():
        return 0
    return sum(1 for p in staging.glob("*/version/**/*") if p.is_file())


def test_a_killed_ingest_leaves_no_version_and_the_rerun_seals_it(
    tre_site: Settings, tmp_path: Path
) -> None:
    settings_file = tmp_path / "tre.yaml"
    settings_file.write_text(f"var_dir: {tre_site.var_dir}\npolicy_dir: {DEMO_POLICY}\n")
    version_dir = gbm_version_dir(tre_site, DATASET)
    mount = DatasetMount(DATASET, "1", version_dir, PurePosixPath("/data/x"), None)
    staging = tre_site.var_dir / ".staging"

    first = ingest(settings_file, tmp_path / "first.log")
    try:
        wait_until(lambda: staged_files(staging) >= 40, 60, "the ingest to write files")
        assert first.poll() is None, (tmp_path / "first.log").read_text()
    finally:
        kill(first.pid)
        first.wait()
    assert first.returncode == -9

    # Nothing sealed, nothing a spawn would mount; what was written is only in staging.
    assert not version_dir.exists()
    with pytest.raises(DatasetUnavailable, match="is missing; has it been ingested"):
        check_dataset(mount)
    [left] = list(staging.iterdir())
    assert staged_files(staging) >= 40

    second = ingest(settings_file, tmp_path / "second.log")
    assert second.wait(240) == 0, (tmp_path / "second.log").read_text()
    output = (tmp_path / "second.log").read_text()
    assert f"sealed {version_dir}" in output

    check_dataset(mount)  # every file, as listed in the manifest, and nothing else
    manifest = (version_dir / MANIFEST_NAME).read_bytes()
    assert f"manifest_sha256: {hashlib.sha256(manifest).hexdigest()}" in output
    assert not left.exists() and list(staging.iterdir()) == []
