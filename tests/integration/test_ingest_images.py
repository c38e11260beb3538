"""NIfTI, tissue and single-cell ingest on the demo silos' real sample files.

Every identifier planted in these silos is gone from the sealed versions (header fields,
extensions, TIFF tags of every page, h5ad obs/uns/cell names, file names); a patient
has one pseudonym across the three; voxels, pixels and expression values are kept;
label images are quarantined; an opted-out patient is nowhere; the bytes are reproducible.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import shutil
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anndata
import nibabel
import numpy as np
import pytest
import tifffile

from tests.support import DEMO_POLICY, DEMO_TODAY
from tre.ingest import IngestResult, ingest_version, project_keys
from tre.ingest.tissue import ALLOWED_TAGS
from tre.policy import Policy
from tre.pseudonym import (
    OptOutRegister,
    create_master_key,
    default_master_key_path,
    default_register_path,
)
from tre.settings import Settings

pytestmark = pytest.mark.slow

DATASETS = {
    "nifti": "gbm-mri-nifti",
    "pathology": "gbm-pathology",
    "single-cell": "gbm-single-cell",
}
DATE_KINDS = frozenset({"visit_date", "birth_date"})
"""Dates are searched only in the patient's own outputs: a shifted date of one patient
may by chance equal a source date of another."""


@dataclass(frozen=True)
class Run:
    settings: Settings
    results: dict[str, IngestResult]
    opted_out: str
    """Hospital id of a patient with NIfTI, tissue and single-cell data who opted out."""

    def pseudonym(self, patient_id: str) -> str:
        return project_keys(self.settings, "gbm-linkage").pseudonymiser.pseudonym(patient_id)


def make_site(root: Path, silos: Path) -> Settings:
    var = root / "var"
    var.mkdir(parents=True)
    (var / "silos").symlink_to(silos, target_is_directory=True)
    return Settings(policy_dir=DEMO_POLICY, var_dir=var)


def ingest_all(settings: Settings, policy: Policy) -> dict[str, IngestResult]:
    return {
        silo: ingest_version(settings, policy, "gbm-linkage", dataset, "1", today=DEMO_TODAY)
        for silo, dataset in DATASETS.items()
    }


@pytest.fixture(scope="module")
def runs(
    tmp_path_factory: pytest.TempPathFactory, demo_silos: Path, demo_policy: Policy
) -> tuple[Run, Run]:
    """Two sites sharing one master key and one opt-out register, each ingesting all three."""
    first = make_site(tmp_path_factory.mktemp("images-first"), demo_silos)
    create_master_key(default_master_key_path(first.keys_dir))
    with (demo_silos / "single-cell" / "samples.csv").open(encoding="utf-8") as handle:
        opted_out = sorted(row["patient_id"] for row in csv.DictReader(handle))[0]
    OptOutRegister(default_register_path(first.keys_dir)).record_opt_out(
        opted_out, recorded_by="test", effective=DEMO_TODAY
    )
    second = make_site(tmp_path_factory.mktemp("images-second"), demo_silos)
    shutil.copytree(first.keys_dir, second.keys_dir)
    return (
        Run(first, ingest_all(first, demo_policy), opted_out),
        Run(second, ingest_all(second, demo_policy), opted_out),
    )


@pytest.fixture(scope="module")
def run(runs: tuple[Run, Run]) -> Run:
    return runs[0]


def planted(silos: Path) -> list[dict[str, str]]:
    data = json.loads((silos / "PLANTED.json").read_text(encoding="utf-8"))
    return [i for i in data["identifiers"] if i["file"].split("/")[0] in DATASETS]


def files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def readable(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def nifti_text(path: Path) -> list[str]:
    """Every text of a NIfTI header: its free-text fields and its extensions."""
    header = nibabel.load(path).header
    texts = [bytes(header[f]).decode("latin-1") for f in ("descrip", "aux_file", "intent_name")]
    texts += [bytes(header[f]).decode("latin-1") for f in ("db_name", "data_type")]
    return texts + [e.get_content().decode("latin-1") for e in header.extensions]


def tiff_text(path: Path) -> list[str]:
    """Every tag value of every page and sub-IFD of a TIFF, as text."""
    texts = []
    with tifffile.TiffFile(path) as tif:
        for page in tif.pages:
            assert isinstance(page, tifffile.TiffPage)
            for ifd in [page, *(page.pages or [])]:
                texts += [f"{tag.name}={tag.value!r}" for tag in ifd.tags]
    return texts


def h5ad_text(path: Path) -> list[str]:
    adata = anndata.read_h5ad(path)
    texts = [*map(str, adata.obs_names), *map(str, adata.obs.columns), repr(adata.uns)]
    for column in adata.obs.columns:
        texts += map(str, adata.obs[column].unique())
    return texts


# -- identifiers ---------------------------------------------------------------------------


def haystacks(version_dir: Path) -> dict[str, bytes]:
    """Searchable text of a version: "" → everything; a pseudonym → that patient's own.

    Each file contributes its name, its (decompressed) bytes and its structured text
    (NIfTI header fields and extensions, TIFF tags of every IFD, h5ad names and uns).
    A shared CSV contributes to a patient only its rows that start with their pseudonym.
    """
    everything: list[bytes] = []
    shared: list[bytes] = []
    own: dict[str, list[bytes]] = defaultdict(list)
    for path in files(version_dir):
        relative = path.relative_to(version_dir).as_posix()
        data = readable(path)
        if path.name.endswith(".nii.gz"):
            texts = nifti_text(path)
        elif path.suffix == ".tif":
            texts = tiff_text(path)
        elif path.suffix == ".h5ad":
            texts = h5ad_text(path)
        else:
            texts = []
        piece = b"\n".join([relative.encode(), data, "\n".join(texts).encode()])
        everything.append(piece)
        if "/" in relative:
            own[relative.split("/")[0]].append(piece)
        elif path.suffix == ".csv":
            for line in data.splitlines()[1:]:
                own[line.split(b",")[0].decode()].append(line)
        else:
            shared.append(piece)
    return {"": b"\n".join(everything)} | {k: b"\n".join(v + shared) for k, v in own.items()}


def test_every_planted_identifier_is_gone(run: Run, demo_silos: Path) -> None:
    entries = planted(demo_silos)
    assert {e["file"].split("/")[0] for e in entries} == set(DATASETS)
    searchable = {silo: haystacks(run.results[silo].version_dir) for silo in DATASETS}
    survivors = []
    for entry in entries:
        if entry["location"].endswith(".pixels"):
            continue  # drawn on the label page, which is quarantined (tested below)
        silo = entry["file"].split("/")[0]
        scope = run.pseudonym(entry["patient_id"]) if entry["kind"] in DATE_KINDS else ""
        if entry["value"].encode() in searchable[silo].get(scope, b""):
            survivors.append((entry["file"], entry["location"], entry["kind"]))
    assert survivors == []


def test_linkage_tables_leave_no_id_or_source_date(run: Run, demo_silos: Path) -> None:
    """Linkage tables' ids are nowhere; a patient's source dates are not in their rows."""
    for silo, table, ids, dates in (
        ("pathology", "slides.csv", ("slide_id", "patient_id", "file"), ("cut_on", "scanned_at")),
        ("single-cell", "samples.csv", ("sample_id", "patient_id"), ("collected_on",)),
    ):
        with (demo_silos / silo / table).open(encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        outputs = {p: readable(p) for p in files(run.results[silo].version_dir)}
        for row in rows:
            for column in ids:
                assert not any(row[column].encode() in data for data in outputs.values())
            own = run.pseudonym(row["patient_id"]).encode()
            for column in dates:
                for data in outputs.values():
                    lines = [line for line in data.splitlines() if own in line]
                    assert not any(row[column].encode() in line for line in lines)


def test_one_pseudonym_per_patient_across_modalities(run: Run, demo_silos: Path) -> None:
    with (demo_silos / "single-cell" / "samples.csv").open(encoding="utf-8") as handle:
        patients = sorted({row["patient_id"] for row in csv.DictReader(handle)} - {run.opted_out})
    assert patients
    cells = anndata.read_h5ad(run.results["single-cell"].version_dir / "cells.h5ad")
    for patient in patients:
        pseudonym = run.pseudonym(patient)
        assert (
            run.results["nifti"].version_dir / pseudonym / f"{pseudonym}_1_T1w.nii.gz"
        ).is_file()
        assert (
            run.results["pathology"].version_dir / pseudonym / f"{pseudonym}_slide1.tif"
        ).is_file()
        assert pseudonym in set(cells.obs["patient"])
    folders = {
        silo: {p.name for p in result.version_dir.iterdir() if p.is_dir()}
        for silo, result in run.results.items()
    }
    assert folders["nifti"] & folders["pathology"] >= {run.pseudonym(p) for p in patients}


# -- data kept -----------------------------------------------------------------------------


def test_voxels_and_affines_are_unchanged(run: Run, demo_silos: Path) -> None:
    sessions = {
        row["patient"]: row for row in csv.DictReader(io.StringIO(
            (run.results["nifti"].version_dir / "sessions.csv").read_text(encoding="utf-8")
        ))
    }  # fmt: skip
    checked = 0
    for source in files(demo_silos / "nifti"):
        patient, _, rest = source.name.split("_")
        if patient == run.opted_out:
            continue
        pseudonym = run.pseudonym(patient)
        suffix = rest.split(".")[0]
        out = run.results["nifti"].version_dir / pseudonym / f"{pseudonym}_1_{suffix}.nii.gz"
        before, after = nibabel.load(source), nibabel.load(out)
        assert after.get_data_dtype() == before.get_data_dtype()
        assert np.array_equal(np.asarray(after.dataobj), np.asarray(before.dataobj))
        assert np.array_equal(after.affine, before.affine)
        assert len(after.header.extensions) == 0
        assert pseudonym in sessions
        checked += 1
    assert checked >= 50


def test_main_image_pixels_are_unchanged_and_labels_quarantined(run: Run, demo_silos: Path) -> None:
    result = run.results["pathology"]
    with (demo_silos / "pathology" / "slides.csv").open(encoding="utf-8") as handle:
        slides = [row for row in csv.DictReader(handle) if row["patient_id"] != run.opted_out]
    for row in slides:
        pseudonym = run.pseudonym(row["patient_id"])
        out = result.version_dir / pseudonym / f"{pseudonym}_slide1.tif"
        with tifffile.TiffFile(demo_silos / row["file"]) as src, tifffile.TiffFile(out) as dst:
            assert len(dst.pages) == 1
            assert np.array_equal(dst.pages[0].asarray(), src.pages[0].asarray())
            page = dst.pages[0]
            assert isinstance(page, tifffile.TiffPage)
            assert {tag.code for tag in page.tags} <= set(ALLOWED_TAGS)
    record = json.loads(result.record_path.read_text(encoding="utf-8"))
    quarantined = {entry["source"] for entry in record["quarantined"]}
    assert len(quarantined) == len(slides) == result.manifest.counts.quarantined
    assert all(name.endswith("-label.tif") for name in quarantined)
    assert all("label" in entry["reason"] for entry in record["quarantined"])
    assert not any("label" in p.name for p in files(result.version_dir))
    quarantine = run.settings.var_dir / "quarantine" / "gbm-linkage" / "gbm-pathology" / "1"
    assert {p.relative_to(quarantine).as_posix() for p in files(quarantine)} == quarantined


def test_expression_data_are_unchanged(run: Run, demo_silos: Path) -> None:
    source = anndata.read_h5ad(demo_silos / "single-cell" / "glioblastoma_pbmc.h5ad")
    with (demo_silos / "single-cell" / "samples.csv").open(encoding="utf-8") as handle:
        opted_samples = {
            r["sample_id"] for r in csv.DictReader(handle) if r["patient_id"] == run.opted_out
        }
    kept = ~source.obs["sample_id"].isin(opted_samples).to_numpy()
    out = anndata.read_h5ad(run.results["single-cell"].version_dir / "cells.h5ad")
    assert out.n_obs == int(kept.sum()) < source.n_obs
    assert np.array_equal(np.asarray(out.X), np.asarray(source.X)[kept])
    assert np.array_equal(out.obsm["X_umap"], source.obsm["X_umap"][kept])
    assert list(out.obs["bulk_labels"]) == list(source.obs["bulk_labels"][kept])
    assert list(out.var_names) == list(source.var_names)
    assert {"sample_sheet", "pipeline"}.isdisjoint(out.uns)


# -- opt-out and reproducibility -----------------------------------------------------------


def test_the_opted_out_patient_is_nowhere(run: Run) -> None:
    pseudonym = run.pseudonym(run.opted_out)
    for result in run.results.values():
        assert result.manifest.counts.excluded_opt_out == 1
        for path in files(result.version_dir):
            relative = path.relative_to(result.version_dir).as_posix()
            assert pseudonym not in relative
            data = readable(path)
            assert pseudonym.encode() not in data
            assert run.opted_out.encode() not in data
    quarantine = run.settings.var_dir / "quarantine"
    assert not any(pseudonym in p.as_posix() for p in quarantine.rglob("*"))


def test_two_sites_with_one_key_write_identical_versions(runs: tuple[Run, Run]) -> None:
    first, second = runs
    for silo in DATASETS:
        a, b = first.results[silo], second.results[silo]
        assert (a.version_dir / "MANIFEST.json").read_bytes() == (
            b.version_dir / "MANIFEST.json"
        ).read_bytes()
        assert a.manifest_sha256 == b.manifest_sha256


def test_manifests_count_what_was_removed(run: Run) -> None:
    nifti, tissue, cells = (run.results[s].manifest for s in DATASETS)
    assert nifti.removed["nifti: header extensions"] > 0
    assert nifti.removed["nifti: header text fields"] > 0
    assert tissue.removed["tiff: tags not on the allow-list"] > 0
    assert cells.removed["single-cell: uns entries not on the allow-list"] == 2
    assert cells.removed["single-cell: cohort-level results computed with excluded cells"] > 0
    for manifest in (nifti, tissue, cells):
        assert manifest.counts.rejected == 0
        text: Any = manifest.model_dump_json()
        assert "MRN" not in text
