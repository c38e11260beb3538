"""DICOM de-identification, files per second, side by side in one process and one run.

Every method reads each source file from disk and writes one output file:

- pydicom read+write: `dcmread` + `dcmwrite`, nothing changed (the ceiling);
- jupyter-tre: `DicomDeidentifier.ingest_file`, the per-file step of `tre ingest` (source
  checksum, PS3.15 profile with the demo dataset's options, keyed UIDs and pseudonyms,
  burned-in check, write), without the version's manifest and sealing;
- dicognito: `Anonymizer().anonymize(ds)` (one anonymizer for the run) + `save_as`;
- deid: `replace_identifiers` with its default recipe (pydicom/deid).

Methods run in interleaved rounds over the same copied files, so background load hits
them alike; the table shows the best and median round by wall clock and the median by
this process's CPU time.

    .venv/bin/python bench/ingest_dicom.py [--silos DIR] [--rounds 3] [--max-size BYTES]

Without --silos, the demo silos are written to a temporary folder first (not timed).
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from datetime import date
from importlib.metadata import version
from pathlib import Path

import pydicom
from deid.config import DeidRecipe
from deid.dicom import replace_identifiers
from deid.logger import bot
from dicognito.anonymizer import Anonymizer

try:
    import tre  # noqa: F401
except ModuleNotFoundError:  # run from a source tree that was never installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from tre.demo.silos import write_demo_silos

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.results import RESULTS_DIR, BenchResult, Comparison
from tre.ingest.context import IngestContext
from tre.ingest.dicom import DicomDeidentifier
from tre.ingest.patients import PatientIndex
from tre.ingest.runner import project_keys
from tre.policy import load_policy
from tre.pseudonym import create_master_key, default_master_key_path
from tre.settings import Settings

REPO = Path(__file__).resolve().parents[1]
DEMO_POLICY = REPO / "policies" / "demo"
Method = Callable[[Path, Path], None]
"""method(source file, output folder)."""


def _pydicom(source: Path, out: Path) -> None:
    ds = pydicom.dcmread(source)
    pydicom.dcmwrite(out / source.name, ds)


def _tre(work: Path, files: list[Path]) -> Method:
    """A DicomDeidentifier on a context like the one `ingest_version` builds."""
    var = work / "var"
    var.mkdir()
    settings = Settings(policy_dir=DEMO_POLICY, var_dir=var)
    create_master_key(default_master_key_path(settings.keys_dir))
    policy = load_policy(DEMO_POLICY, date(2026, 11, 23))
    dataset = policy.dataset("gbm-mri")
    assert dataset is not None
    ids = frozenset(str(pydicom.dcmread(f, stop_before_pixels=True).PatientID) for f in files)
    keys = project_keys(settings, "gbm-linkage")
    source_dir = Path(os.path.commonpath(files)) if len(files) > 1 else files[0].parent
    contexts: dict[Path, DicomDeidentifier] = {}

    def run(source: Path, out: Path) -> None:
        # One deidentifier per round and output folder, as one ingest run has one (it
        # refuses the same SOP instance twice).
        state = contexts.get(out)
        if state is None:
            ctx = IngestContext(
                project="gbm-linkage",
                dataset=dataset,
                version=dataset.versions[0],
                source_dir=source_dir,
                out_dir=out,
                quarantine_dir=out / ".quarantine",
                keys=keys,
                patients=PatientIndex(known=ids),
            )
            state = contexts[out] = DicomDeidentifier(ctx)
        state.ingest_file(source)

    return run


def _dicognito() -> Method:
    anonymizer = Anonymizer()

    def run(source: Path, out: Path) -> None:
        ds = pydicom.dcmread(source)
        anonymizer.anonymize(ds)
        ds.save_as(out / source.name)

    return run


def _deid() -> Method:
    bot.level = 0  # its per-file INFO lines would be timed too
    recipe = DeidRecipe()

    def run(source: Path, out: Path) -> None:
        replace_identifiers(
            dicom_files=[str(source)],
            deid=recipe,
            save=True,
            output_folder=str(out),
            overwrite=True,
        )

    return run


def run(files: list[Path], rounds: int = 3) -> list[dict[str, object]]:
    """Time every method on `files`; one dict per method (name, files/s, ratios)."""
    with tempfile.TemporaryDirectory(prefix="bench-dicom-") as tmp:
        work = Path(tmp)
        copies = work / "sources"
        copied: list[Path] = []
        for n, f in enumerate(files):
            target = copies / f"{n:05d}" / f.name  # keep names; avoid collisions
            target.parent.mkdir(parents=True)
            shutil.copyfile(f, target)
            copied.append(target)
        methods: dict[str, Method] = {
            "pydicom read+write (ceiling)": _pydicom,
            "jupyter-tre DicomDeidentifier": _tre(work, copied),
            "dicognito": _dicognito(),
            "deid (default recipe)": _deid(),
        }
        wall: dict[str, list[float]] = {name: [] for name in methods}
        cpu: dict[str, list[float]] = {name: [] for name in methods}
        for r in range(rounds):
            for i, (name, method) in enumerate(methods.items()):
                out = work / "out" / f"{r}-{i}"
                out.mkdir(parents=True)
                start, cpu_start = time.perf_counter(), time.process_time()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    for f in copied:
                        method(f, out)
                cpu[name].append(len(copied) / (time.process_time() - cpu_start))
                wall[name].append(len(copied) / (time.perf_counter() - start))
                shutil.rmtree(out)
    ceiling = statistics.median(wall["pydicom read+write (ceiling)"])
    dicognito = statistics.median(wall["dicognito"])
    return [
        {
            "method": name,
            "best_files_per_s": max(values),
            "median_files_per_s": statistics.median(values),
            "files_per_cpu_s": statistics.median(cpu[name]),
            "x_pydicom": statistics.median(values) / ceiling,
            "x_dicognito": statistics.median(values) / dicognito,
            "samples": values,
        }
        for name, values in wall.items()
    ]


def _demo_files(silos: Path | None, keep: list[tempfile.TemporaryDirectory[str]]) -> list[Path]:
    if silos is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench-silos-")
        keep.append(tmp)
        silos = Path(tmp.name) / "silos"
        write_demo_silos(silos)
    return sorted(p for p in (silos / "dicom").rglob("*") if p.is_file())


OURS = "jupyter-tre DicomDeidentifier"


def write_results(
    rows: list[dict[str, object]], files: int, size: int, args: argparse.Namespace
) -> None:
    samples = {str(r["method"]): list(r["samples"]) for r in rows}  # type: ignore[call-overload]
    BenchResult(
        name="ingest-dicom",
        title="DICOM de-identification",
        script="bench/ingest_dicom.py",
        versions={
            "pydicom": pydicom.__version__,
            "dicognito": version("dicognito"),
            "deid": version("deid"),
        },
        comparisons=[
            Comparison(
                name=f"ours vs {theirs}",
                unit="files/s",
                better="higher",
                ours=OURS,
                ours_samples=samples[OURS],
                theirs=theirs,
                theirs_samples=samples[theirs],
            )
            for theirs in samples
            if theirs != OURS
        ],
        notes=(
            f"{files} demo DICOM files ({size / 1e6:.1f} MB), {args.rounds} interleaved rounds "
            "in one process. Goals (Ingest issue): at least 2x dicognito, within 2x of "
            "pydicom's bare read+write (the ceiling: it de-identifies nothing). Details: "
            "[Ingest benchmarks](benchmarks-ingest.md)."
        ),
    ).write(args.results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--silos", type=Path, help="demo silos folder (default: write them)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument(
        "--max-size", type=int, default=0, help="only files up to this many bytes (0: all)"
    )
    parser.add_argument("--results", type=Path, default=RESULTS_DIR, help="result files folder")
    args = parser.parse_args()
    logging.disable(logging.INFO)
    keep: list[tempfile.TemporaryDirectory[str]] = []
    files = _demo_files(args.silos, keep)
    if args.max_size:
        files = [f for f in files if f.stat().st_size <= args.max_size]
    size = sum(f.stat().st_size for f in files)
    rows = run(files, args.rounds)
    print(
        f"{len(files)} DICOM files ({size / 1e6:.1f} MB) x {args.rounds} interleaved rounds; "
        f"Python {platform.python_version()}, pydicom {pydicom.__version__}, "
        f"{os.cpu_count()} CPUs, one process"
    )
    width = max(len(str(r["method"])) for r in rows)
    print(
        f"{'method':<{width}}  {'best files/s':>12}  {'median':>8}  {'files/CPU-s':>11}  "
        f"{'x pydicom':>9}  {'x dicognito':>11}"
    )
    for r in rows:
        print(
            f"{r['method']!s:<{width}}  {r['best_files_per_s']:>12,.1f}  "
            f"{r['median_files_per_s']:>8,.1f}  {r['files_per_cpu_s']:>11,.1f}  "
            f"{r['x_pydicom']:>9.2f}  {r['x_dicognito']:>11.2f}"
        )
    print("files/s: wall clock; ratios of medians")
    write_results(rows, len(files), size, args)
    for tmp in keep:
        tmp.cleanup()


if __name__ == "__main__":
    main()
