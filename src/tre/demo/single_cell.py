"""The single-cell silo: scanpy's pbmc68k_reduced cells shared out among a few patients.

Cells keep their expression data; `obs["sample_id"]` and the cell names carry the
lab's sample ids, which only `single-cell/samples.csv` links to hospital ids, and
`uns` holds the sample sheet and pipeline command lines that name the donors.
h5ad is written with h5py defaults, which record no timestamps: the bytes are a
function of the seed alone (the integration tests hash two runs to prove it).
"""

from __future__ import annotations

import warnings
from importlib.metadata import version
from typing import Any

import numpy as np
import pandas as pd

from . import seeds
from .build import SiloBuild
from .cohort import LabSample, ModalityPlan
from .files import write_csv
from .people import People

H5AD_PATH = "single-cell/glioblastoma_pbmc.h5ad"
SAMPLES_PATH = "single-cell/samples.csv"


def _load_pbmc68k() -> Any:
    with warnings.catch_warnings():
        # scanpy's import and reader warn about their own deprecations; not ours to fix.
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        import scanpy  # noqa: PLC0415 - a heavy import, only when building silos

        return scanpy.datasets.pbmc68k_reduced()


def _fastq_folder(sample: LabSample, people: People) -> str:
    patient = people.patient(sample.patient_id)
    donor = f"{patient.last_name.replace(' ', '_')}_{patient.first_name}"
    return f"/data/lab/{sample.collected_on:%Y}/{sample.sample_id}_{donor}/fastq"


def write_single_cell(build: SiloBuild, people: People, plan: ModalityPlan) -> None:
    samples = plan.single_cell_samples
    if not samples:
        return
    adata = _load_pbmc68k()
    rng = seeds.numpy_rng(build.seed, "single-cell")
    assignment = rng.permutation(np.arange(adata.n_obs) % len(samples))
    ids = [s.sample_id for s in samples]
    barcodes = [str(name) for name in adata.obs_names]
    adata.obs["sample_id"] = pd.Categorical([ids[i] for i in assignment], categories=ids)
    adata.obs_names = [f"{ids[i]}_{code}" for i, code in zip(assignment, barcodes, strict=True)]
    patients = [people.patient(s.patient_id) for s in samples]
    adata.uns["sample_sheet"] = {
        "sample_id": np.array(ids, dtype=object),
        "donor": np.array([p.full_name for p in patients], dtype=object),
        "patient_id": np.array([p.patient_id for p in patients], dtype=object),
        "collected_on": np.array([f"{s.collected_on:%Y-%m-%d}" for s in samples], dtype=object),
        "requested_by": np.array([p.gp.name for p in patients], dtype=object),
    }
    adata.uns["pipeline"] = {
        "cellranger_count": np.array(
            [
                f"cellranger count --id={s.sample_id} --fastqs={_fastq_folder(s, people)} "
                "--transcriptome=/data/refs/refdata-gex-GRCh38-2020-A"
                for s in samples
            ],
            dtype=object,
        )
    }
    adata.write_h5ad(build.path(H5AD_PATH))
    label = f"scanpy {version('scanpy')}: datasets.pbmc68k_reduced()"
    build.record(H5AD_PATH, "single-cell", label, (s.patient_id for s in samples))
    for sample, patient in zip(samples, patients, strict=True):
        pid = patient.patient_id
        sid = sample.sample_id
        build.plant(H5AD_PATH, "h5ad:obs/sample_id", "lab_sample_id", sid, pid)
        build.plant(H5AD_PATH, "h5ad:obs_names", "lab_sample_id", sid, pid)
        build.plant(H5AD_PATH, "h5ad:uns/sample_sheet/sample_id", "lab_sample_id", sid, pid)
        build.plant(H5AD_PATH, "h5ad:uns/sample_sheet/donor", "name", patient.full_name, pid)
        build.plant(H5AD_PATH, "h5ad:uns/sample_sheet/patient_id", "patient_id", pid, pid)
        build.plant(
            H5AD_PATH,
            "h5ad:uns/sample_sheet/collected_on",
            "visit_date",
            f"{sample.collected_on:%Y-%m-%d}",
            pid,
        )
        build.plant(
            H5AD_PATH, "h5ad:uns/sample_sheet/requested_by", "clinician_name", patient.gp.name, pid
        )
        build.plant(
            H5AD_PATH,
            "h5ad:uns/pipeline/cellranger_count",
            "file_path",
            _fastq_folder(sample, people),
            pid,
        )
    cells = adata.obs["sample_id"].value_counts()
    write_csv(
        build.path(SAMPLES_PATH),
        ["sample_id", "patient_id", "collected_on", "specimen", "cells"],
        (
            (s.sample_id, s.patient_id, f"{s.collected_on:%Y-%m-%d}",
             "peripheral blood mononuclear cells", int(cells[s.sample_id]))
            for s in samples
        ),
    )  # fmt: skip
    build.record(SAMPLES_PATH, "single-cell", "synthetic", (s.patient_id for s in samples))
    build.plant_column(SAMPLES_PATH, "sample_id", "lab_sample_id")
    build.plant_column(SAMPLES_PATH, "patient_id", "patient_id")
    build.plant_column(SAMPLES_PATH, "collected_on", "visit_date")
