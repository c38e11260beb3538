"""`write_demo_silos`: the demo hospital's export, built aside and renamed into place.

The same seed writes byte-identical silos; a failure at any point (including in the
progress callback) leaves `out_dir` absent, or as it was if it existed before.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from . import sources
from .build import SiloBuild
from .cohort import plan_modalities
from .dicom import write_dicom
from .emr import make_history
from .emr_export import write_emr
from .errors import DemoDataError
from .files import json_bytes, sha256_file
from .genomics import write_bams, write_vcf
from .manifest import (
    GENERATOR_NAME,
    MANIFEST_FILE,
    PLANTED_FILE,
    PlantedChecksum,
    SilosManifest,
)
from .nifti import write_nifti
from .notes import make_notes
from .people import make_people
from .single_cell import write_single_cell
from .tissue import write_tissue

__all__ = ["DEFAULT_SEED", "DemoDataError", "ProgressFn", "SilosManifest", "write_demo_silos"]

DEFAULT_SEED: int = 20261123
MAX_PATIENTS = 100_000

ProgressFn = Callable[[str, int, int], None]
"""Called as `progress(step label, steps done, steps in total)` after each step."""

STEPS = ("emr", "dicom", "nifti", "vcf", "bam", "tissue", "single-cell", "manifest")


def _check_replaceable(out_dir: Path) -> None:
    """Only an empty folder or earlier demo silos may be replaced: never delete anything else."""
    if not out_dir.exists() and not out_dir.is_symlink():
        return
    if out_dir.is_symlink() or not out_dir.is_dir():
        raise DemoDataError(f"{out_dir} exists and is not a folder; refusing to replace it")
    if not any(out_dir.iterdir()):
        return
    manifest = out_dir / MANIFEST_FILE
    try:
        previous = SilosManifest.model_validate_json(manifest.read_bytes())
    except (OSError, ValueError) as error:
        raise DemoDataError(
            f"{out_dir} is not empty and holds no readable {MANIFEST_FILE} of earlier demo "
            "silos; refusing to replace it"
        ) from error
    if previous.generator.name != GENERATOR_NAME:
        raise DemoDataError(f"{manifest} was not written by {GENERATOR_NAME}; refusing to replace")
    listed = {entry.path for entry in previous.files} | {MANIFEST_FILE, PLANTED_FILE}
    foreign = sorted(
        path.relative_to(out_dir).as_posix()
        for path in out_dir.rglob("*")
        if not path.is_dir() and path.relative_to(out_dir).as_posix() not in listed
    )
    if foreign:
        raise DemoDataError(
            f"{out_dir} holds files its {MANIFEST_FILE} does not list ({', '.join(foreign[:5])}); "
            "refusing to replace it"
        )


def _build(root: Path, seed: int, patients: int, progress: ProgressFn | None) -> SilosManifest:
    build = SiloBuild(root, seed)
    done = 0

    def step_done(label: str) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(label, done, len(STEPS))

    people = make_people(seed, patients)
    history = make_history(seed, people)
    write_emr(build, people, history, make_notes(seed, people, history))
    step_done("emr")
    plan = plan_modalities(seed, history, bam_count=len(sources.BAM_SOURCES))
    write_dicom(build, people, history, plan)
    step_done("dicom")
    write_nifti(build, people, history, plan)
    step_done("nifti")
    write_vcf(build, people, plan)
    step_done("vcf")
    write_bams(build, people, plan)
    step_done("bam")
    write_tissue(build, people, plan)
    step_done("tissue")
    write_single_cell(build, people, plan)
    step_done("single-cell")

    planted_path = root / PLANTED_FILE
    planted_path.write_bytes(json_bytes(build.planted_register().model_dump(mode="json")))
    manifest = build.manifest(
        patients,
        PlantedChecksum(
            path=PLANTED_FILE,
            sha256=sha256_file(planted_path),
            size=planted_path.stat().st_size,
        ),
    )
    (root / MANIFEST_FILE).write_bytes(json_bytes(manifest.model_dump(mode="json")))
    step_done("manifest")
    return manifest


def write_demo_silos(
    out_dir: Path,
    *,
    seed: int = DEFAULT_SEED,
    patients: int = 200,
    progress: ProgressFn | None = None,
) -> SilosManifest:
    """Write the demo hospital silos to `out_dir`, replacing earlier demo silos there.

    The silos contain direct identifiers on purpose (they are what a hospital exports
    before pseudonymisation); `PLANTED.json` lists every one. Raises `DemoDataError`
    when a sample file is missing or `out_dir` holds something other than demo silos.
    """
    if not 1 <= patients <= MAX_PATIENTS:
        raise DemoDataError(f"patients must be between 1 and {MAX_PATIENTS}, got {patients}")
    out_dir = Path(out_dir).absolute()
    _check_replaceable(out_dir)
    sources.check_all()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # A sibling folder: same file system, so the final rename is atomic.
    building = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.building-", dir=out_dir.parent))
    try:
        manifest = _build(building, seed, patients, progress)
        if out_dir.exists():
            previous = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            out_dir.rename(previous / out_dir.name)
            try:
                building.rename(out_dir)
            except BaseException:
                (previous / out_dir.name).rename(out_dir)
                raise
            shutil.rmtree(previous, ignore_errors=True)
        else:
            building.rename(out_dir)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return manifest
