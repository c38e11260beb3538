"""Single-cell ingest on scanpy's pbmc68k_reduced cells (the demo silo) and broken files."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
from pathlib import Path

import anndata
import h5py
import numpy as np
import pandas as pd
import pytest

from tests.support import DEMO_TODAY, gbm_version_dir, ingest_for_gbm
from tre.ingest import IngestError, IngestResult, InputRejected, UnknownPatient
from tre.policy import Policy
from tre.pseudonym import OptOutRegister, default_register_path
from tre.settings import Settings

DATASET = "gbm-single-cell"
H5AD = "glioblastoma_pbmc.h5ad"


def run(
    settings: Settings, policy: Policy, source: Path, *, continue_on_error: bool = False
) -> IngestResult:
    return ingest_for_gbm(settings, policy, DATASET, source, continue_on_error=continue_on_error)


def version_dir(settings: Settings) -> Path:
    return gbm_version_dir(settings, DATASET)


def samples(silos: Path) -> list[dict[str, str]]:
    with (silos / "single-cell" / "samples.csv").open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def demo_cells(silos: Path) -> anndata.AnnData:
    return anndata.read_h5ad(silos / "single-cell" / H5AD)


def source_with(tmp_path: Path, silos: Path, adata: anndata.AnnData | None = None) -> Path:
    """A source folder with the demo samples.csv and this AnnData (default: the demo's)."""
    source = tmp_path / "src"
    source.mkdir(parents=True)
    shutil.copy(silos / "single-cell" / "samples.csv", source / "samples.csv")
    if adata is None:
        shutil.copy(silos / "single-cell" / H5AD, source / H5AD)
    else:
        adata.write_h5ad(source / H5AD)
    return source


# -- what is kept and what is removed --------------------------------------------------------


def test_identifying_columns_entries_and_names_are_dropped(
    tre_site: Settings, demo_policy: Policy, demo_silos: Path, tmp_path: Path
) -> None:
    adata = demo_cells(demo_silos)
    sample_ids = adata.obs["sample_id"].astype(str)
    adata.obs["donor"] = "Doe^Jane"
    adata.obs["batch"] = sample_ids.to_numpy()
    adata.obs["cell_type"] = ("T cell " + sample_ids).to_numpy()  # allowed name, bad values
    adata.uns["notes"] = "processed for Dr. Who"
    adata.uns["sample_id_colors"] = np.array(["#000000"] * 4, dtype=object)
    adata.uns["rank_genes_groups_sample"] = {
        "groups": np.array(list(set(sample_ids)), dtype=object)
    }
    source = source_with(tmp_path, demo_silos, adata)

    result = run(tre_site, demo_policy, source)

    assert [f.path for f in result.manifest.files] == ["cells.h5ad"]
    path = result.version_dir / "cells.h5ad"
    raw = path.read_bytes()
    for row in samples(demo_silos):
        for value in (row["sample_id"], row["patient_id"]):
            assert value.encode() not in raw
    for needle in (b"Doe^Jane", b"Dr. Who", b"/data/lab", b"cellranger"):
        assert needle not in raw
    out = anndata.read_h5ad(path)
    assert list(out.obs.columns) == [
        "patient", "sample", "bulk_labels", "n_genes", "percent_mito", "n_counts",
        "S_score", "G2M_score", "phase", "louvain",
    ]  # fmt: skip
    assert sorted(out.uns) == [
        "bulk_labels_colors", "louvain", "louvain_colors", "neighbors", "pca", "rank_genes_groups",
    ]  # fmt: skip
    assert all(
        name.startswith(f"{s}_") for name, s in zip(out.obs_names, out.obs["sample"], strict=True)
    )
    assert all(
        s.startswith(f"{p}_s") for p, s in zip(out.obs["patient"], out.obs["sample"], strict=True)
    )
    assert np.array_equal(np.asarray(out.X), np.asarray(adata.X))
    removed = result.manifest.removed
    assert removed["single-cell: obs columns not on the allow-list"] == 3
    assert removed["single-cell: uns entries not on the allow-list"] == 5


def test_a_patient_has_the_projects_pseudonym(
    tre_site: Settings, demo_policy: Policy, demo_silos: Path, tmp_path: Path
) -> None:
    from tre.ingest import project_keys

    result = run(tre_site, demo_policy, source_with(tmp_path, demo_silos))

    keys = project_keys(tre_site, "gbm-linkage")
    expected = {keys.pseudonymiser.pseudonym(r["patient_id"]) for r in samples(demo_silos)}
    out = anndata.read_h5ad(result.version_dir / "cells.h5ad")
    assert set(out.obs["patient"]) == expected
    assert result.manifest.counts.patients == len(expected)


def test_cells_of_an_opted_out_patient_and_cohort_results_are_dropped(
    tre_site: Settings, demo_policy: Policy, demo_silos: Path, tmp_path: Path
) -> None:
    opted = samples(demo_silos)[0]
    OptOutRegister(default_register_path(tre_site.keys_dir)).record_opt_out(
        opted["patient_id"], recorded_by="test", effective=DEMO_TODAY
    )
    source = source_with(tmp_path, demo_silos)
    adata = demo_cells(demo_silos)
    kept = (adata.obs["sample_id"] != opted["sample_id"]).to_numpy()

    result = run(tre_site, demo_policy, source)

    out = anndata.read_h5ad(result.version_dir / "cells.h5ad")
    assert out.n_obs == kept.sum() == adata.n_obs - int(opted["cells"])
    assert np.array_equal(np.asarray(out.X), np.asarray(adata.X)[kept])
    assert np.array_equal(out.obsm["X_pca"], adata.obsm["X_pca"][kept])
    assert sorted(out.uns) == ["bulk_labels_colors", "louvain_colors"]
    assert len(out.varm) == 0 and len(out.obsp) == 0
    assert list(out.var.columns) == ["highly_variable"]
    assert result.manifest.counts.excluded_opt_out == 1
    assert result.manifest.counts.patients == len(samples(demo_silos)) - 1
    summary = "single-cell: cohort-level results computed with excluded cells"
    assert result.manifest.removed[summary] == 4 + 1 + 2  # uns entries, varm, obsp


def test_the_sample_column_is_found_by_its_values(
    tre_site: Settings, demo_policy: Policy, demo_silos: Path, tmp_path: Path
) -> None:
    adata = demo_cells(demo_silos)
    adata.obs = adata.obs.rename(columns={"sample_id": "library"})
    result = run(tre_site, demo_policy, source_with(tmp_path, demo_silos, adata))
    out = anndata.read_h5ad(result.version_dir / "cells.h5ad")
    assert "library" not in out.obs.columns
    assert out.n_obs == adata.n_obs


def test_the_same_key_writes_the_same_bytes(
    tre_site: Settings, demo_policy: Policy, demo_silos: Path, tmp_path: Path
) -> None:
    first = run(tre_site, demo_policy, source_with(tmp_path / "a", demo_silos))
    twin = Settings(policy_dir=tre_site.policy_dir, var_dir=tmp_path / "twin")
    (twin.var_dir / "silos").parent.mkdir(parents=True)
    (twin.var_dir / "silos").symlink_to(demo_silos, target_is_directory=True)
    shutil.copytree(tre_site.keys_dir, twin.keys_dir)

    second = run(twin, demo_policy, source_with(tmp_path / "b", demo_silos))

    digest = [
        hashlib.sha256((r.version_dir / "cells.h5ad").read_bytes()).hexdigest()
        for r in (first, second)
    ]
    assert digest[0] == digest[1]
    assert first.manifest_sha256 == second.manifest_sha256


# -- bad input --------------------------------------------------------------------------------


def _without_sample_column(adata: anndata.AnnData) -> anndata.AnnData:
    del adata.obs["sample_id"]
    return adata


def _unlisted_sample(adata: anndata.AnnData) -> anndata.AnnData:
    ids = adata.obs["sample_id"].astype(str).to_numpy()
    ids[:10] = "SC99-0000"
    adata.obs["sample_id"] = pd.Categorical(ids)
    return adata


def _missing_sample(adata: anndata.AnnData) -> anndata.AnnData:
    ids = adata.obs["sample_id"].astype(object).to_numpy()
    ids[0] = None
    adata.obs["sample_id"] = pd.Categorical(ids)
    return adata


MANGLED = {
    "no sample column": (_without_sample_column, "no obs column"),
    "sample not in samples.csv": (_unlisted_sample, "not listed in samples.csv"),
    "cell without sample": (_missing_sample, "no sample id"),
}


@pytest.mark.parametrize("case", sorted(MANGLED))
def test_unusable_annotations_are_rejected(
    tre_site: Settings, demo_policy: Policy, demo_silos: Path, tmp_path: Path, case: str
) -> None:
    mangle, problem = MANGLED[case]
    source = source_with(tmp_path, demo_silos, mangle(demo_cells(demo_silos)))
    with pytest.raises(InputRejected) as caught:
        run(tre_site, demo_policy, source)
    assert caught.value.path == source / H5AD
    assert problem in caught.value.problem
    assert not version_dir(tre_site).exists()


def _plain_hdf5() -> bytes:
    out = io.BytesIO()
    with h5py.File(out, "w") as handle:
        handle["obs"] = np.arange(3)
    return out.getvalue()


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        (H5AD, lambda d: d[: len(d) // 3], "not a readable h5ad"),
        (H5AD, lambda d: b"cell,gene\n" * 100, "not a readable h5ad"),
        (H5AD, lambda d: _plain_hdf5(), "not a readable h5ad"),
        ("cells.loom", lambda d: d, "not an AnnData file"),
    ],
    ids=["truncated", "not hdf5", "hdf5 not anndata", "other format"],
)
def test_unreadable_files_are_rejected(
    tre_site: Settings,
    demo_policy: Policy,
    demo_silos: Path,
    tmp_path: Path,
    name: str,
    content: object,
    problem: str,
) -> None:
    source = source_with(tmp_path, demo_silos)
    data = (source / H5AD).read_bytes()
    (source / H5AD).unlink()
    (source / name).write_bytes(content(data))  # type: ignore[operator]
    with pytest.raises(InputRejected) as caught:
        run(tre_site, demo_policy, source)
    assert problem in caught.value.problem
    assert not version_dir(tre_site).exists()


def test_a_sample_of_an_unknown_patient_is_rejected(
    tre_site: Settings, demo_policy: Policy, demo_silos: Path, tmp_path: Path
) -> None:
    source = source_with(tmp_path, demo_silos)
    text = (source / "samples.csv").read_text()
    first = samples(demo_silos)[0]["patient_id"]
    (source / "samples.csv").write_text(text.replace(first, "MRN0000000"))
    with pytest.raises(UnknownPatient):
        run(tre_site, demo_policy, source)


def test_a_source_without_samples_csv_is_refused(
    tre_site: Settings, demo_policy: Policy, demo_silos: Path, tmp_path: Path
) -> None:
    source = source_with(tmp_path, demo_silos)
    (source / "samples.csv").unlink()
    with pytest.raises(IngestError, match=r"samples\.csv"):
        run(tre_site, demo_policy, source)


def test_continue_on_error_ingests_the_good_and_lists_the_bad(
    tre_site: Settings, demo_policy: Policy, demo_silos: Path, tmp_path: Path
) -> None:
    source = source_with(tmp_path, demo_silos)
    _without_sample_column(demo_cells(demo_silos)).write_h5ad(source / "broken.h5ad")

    result = run(tre_site, demo_policy, source, continue_on_error=True)

    assert [f.path for f in result.manifest.files] == ["cells-2.h5ad"]
    assert result.manifest.counts.rejected == 1
    record = json.loads(result.record_path.read_text())
    assert [r["source"] for r in record["rejected"]] == ["broken.h5ad"]
