"""Single-cell ingest: AnnData `.h5ad` files whose cells carry lab sample ids, + `samples.csv`.

Invariant: the output `cells.h5ad` names patients and samples only by pseudonym
(`obs["patient"]`, `obs["sample"]`, cell names `<sample>_<n>`), holds no cell of an
opted-out patient, and keeps only allow-listed analysis columns and `uns` entries, none
of which mentions a lab sample id or a hospital id: everything else is dropped and
counted (fail closed). Expression matrices are kept as they are.

anndata reads and writes the file (h5py, no timestamps), so the output bytes depend on
the input and the key alone. `samples.csv` (lab sample id → hospital patient id) is the
only link from cells to patients.
"""

from __future__ import annotations

import io
import re
import warnings
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import anndata
import h5py  # type: ignore[import-untyped]
import numpy as np
import pandas as pd
from scipy import sparse  # type: ignore[import-untyped]

from .context import IngestContext
from .errors import IngestError, InputRejected
from .linkage import read_linkage_table

SAMPLES_CSV = "samples.csv"
SAMPLE_COLUMN = "sample_id"
"""The obs column the lab names samples in; any other column holding only sample ids of
samples.csv is taken as the sample column too."""
PATIENT, SAMPLE = "patient", "sample"

OBS_COLUMNS = frozenset(
    {
        "n_genes", "n_genes_by_counts", "log1p_n_genes_by_counts", "n_counts", "total_counts",
        "log1p_total_counts", "percent_mito", "pct_counts_in_top_50_genes", "S_score",
        "G2M_score", "phase", "louvain", "leiden", "bulk_labels", "cell_type", "celltype",
        "cell_type_fine", "cell_type_coarse", "doublet_score", "predicted_doublet",
    }
)  # fmt: skip
OBS_PREFIXES = ("pct_counts_", "total_counts_", "log1p_total_counts_", "louvain_", "leiden_")
"""obs columns kept: per-cell QC metrics, cell-cycle scores, clusters and cell types."""

UNS_KEYS = frozenset(
    {
        "neighbors", "pca", "umap", "tsne", "louvain", "leiden", "rank_genes_groups",
        "paga", "draw_graph", "diffmap_evals", "hvg", "log1p",
    }
)  # fmt: skip
UNS_PREFIXES = ("dendrogram_", "rank_genes_groups_")
UNS_COLOR_SUFFIX = "_colors"
"""uns entries kept: analysis results and parameters, and the colours of kept columns."""

GENE_COLUMNS = frozenset(
    {"gene_ids", "gene_symbols", "feature_types", "genome", "highly_variable", "mt", "ribo"}
)
"""var columns that describe genes, not the cells they were computed from."""

_SUMMARY = "single-cell: cohort-level results computed with excluded cells"


@dataclass(frozen=True)
class LabSample:
    sample_id: str
    patient_id: str
    collected_on: str


def ingest(ctx: IngestContext) -> None:
    """Ingest every `.h5ad` of the source folder into `cells.h5ad` (`cells-<n>.h5ad` if many)."""
    table = ctx.source_dir / SAMPLES_CSV
    samples = read_samples(ctx, table)
    paths = sorted(p for p in ctx.source_dir.rglob("*") if p.is_file() and p != table)
    h5ads = [p for p in paths if p.suffix == ".h5ad"]
    names = {
        p: "cells.h5ad" if len(h5ads) == 1 else f"cells-{n}.h5ad" for n, p in enumerate(h5ads, 1)
    }
    numbers = number_samples(samples.values())

    def one(path: Path) -> None:
        if path not in names:
            raise InputRejected(path, "not an AnnData file (.h5ad)")
        ingest_file(ctx, path, names[path], samples, numbers)

    ctx.process(paths, "single-cell", one)
    ctx.report.tools["anndata"] = version("anndata")
    ctx.report.tools["h5py"] = version("h5py")
    ctx.report.tools["HDF5"] = h5py.version.hdf5_version


def read_samples(ctx: IngestContext, table: Path) -> dict[str, LabSample]:
    """lab sample id → sample; an `IngestError` if samples.csv is missing or ambiguous."""
    if not table.is_file():
        raise IngestError(
            f"{table}: the single-cell source needs samples.csv (sample_id → patient_id)"
        )
    return {
        sample_id: LabSample(sample_id, row["patient_id"], row.get("collected_on", ""))
        for sample_id, row in read_linkage_table(ctx, table, "sample_id").items()
    }


def number_samples(samples: Iterable[LabSample]) -> dict[str, int]:
    """Sample numbers per patient, in order of collection (then sample id)."""
    per_patient: dict[str, list[LabSample]] = defaultdict(list)
    for sample in samples:
        per_patient[sample.patient_id].append(sample)
    numbers: dict[str, int] = {}
    for group in per_patient.values():
        group.sort(key=lambda s: (s.collected_on, s.sample_id))
        numbers.update({s.sample_id: n for n, s in enumerate(group, start=1)})
    return numbers


def ingest_file(
    ctx: IngestContext,
    path: Path,
    name: str,
    samples: dict[str, LabSample],
    numbers: dict[str, int],
) -> None:
    """Check the whole file, then admit its patients, then write what is left.

    Checking first means a rejected file's patients are not counted in the version.
    """
    data = ctx.read_source(path)
    adata = read_h5ad(data, path)
    column = sample_column(adata, samples, path)
    values = adata.obs[column].astype("object")
    if values.isna().any():
        raise InputRejected(path, "some cells have no sample id")
    if not set(values).issubset(samples):
        raise InputRejected(path, "some cells belong to samples not listed in samples.csv")
    forbidden = _forbidden(samples, ctx)
    check_genes(adata, forbidden, path)
    labels: dict[str, tuple[str, str]] = {}
    for sample_id in sorted(set(values)):
        sample = samples[sample_id]
        pseudonym = ctx.admit(sample.patient_id, source=path, where="samples.csv")
        if pseudonym is not None:
            labels[sample_id] = (pseudonym, f"{pseudonym}_s{numbers[sample_id]}")
    keep = values.isin(list(labels)).to_numpy()
    excluded = not bool(keep.all())
    if not keep.any():
        return  # every cell is of opted-out patients: no output at all
    cells = adata[keep].copy() if excluded else adata
    cells.obs = _clean_obs(
        ctx, cells.obs, column=column, sample_ids=values[keep], labels=labels, forbidden=forbidden
    )
    ctx.report.changed["single-cell: cell names"] += cells.n_obs
    ctx.report.changed["single-cell: sample ids replaced by pseudonyms"] += 1
    _clean_var(ctx, cells, forbidden, excluded)
    _clean_uns(ctx, cells, forbidden, excluded)
    _clean_matrices(ctx, cells, excluded)
    cells.write_h5ad(ctx.output(name))


def read_h5ad(data: bytes, path: Path) -> anndata.AnnData:
    """The whole AnnData in memory; `InputRejected` for anything anndata cannot read."""
    try:
        with warnings.catch_warnings():
            # Files of older anndata versions read fine with a warning; content is checked below.
            warnings.simplefilter("ignore", anndata.OldFormatWarning)
            warnings.simplefilter("ignore", FutureWarning)
            adata = anndata.read_h5ad(io.BytesIO(data))
    except Exception:  # anndata fails on malformed files with any error type: refuse the file
        raise InputRejected(path, "not a readable h5ad file (wrong format or truncated)") from None
    if not isinstance(adata, anndata.AnnData):
        raise InputRejected(path, "not an AnnData file")
    return adata


def sample_column(adata: anndata.AnnData, samples: Mapping[str, LabSample], path: Path) -> str:
    """The obs column that holds the lab's sample ids; `InputRejected` if there is none."""
    if SAMPLE_COLUMN in adata.obs.columns:
        return SAMPLE_COLUMN
    for column in adata.obs.columns:
        series = adata.obs[column]
        if _is_text(series) and set(series.dropna().astype(str)) & set(samples):
            return str(column)
    raise InputRejected(
        path, f"no obs column ('{SAMPLE_COLUMN}' or another) holds the sample ids of samples.csv"
    )


def _clean_obs(
    ctx: IngestContext,
    obs: pd.DataFrame,
    *,
    column: str,
    sample_ids: pd.Series,
    labels: dict[str, tuple[str, str]],
    forbidden: Forbidden,
) -> pd.DataFrame:
    """Pseudonyms first, then the allow-listed columns that name no sample or patient."""
    patients = [labels[s][0] for s in sample_ids]
    sample_names = [labels[s][1] for s in sample_ids]
    clean = pd.DataFrame(
        {
            PATIENT: pd.Categorical(patients, categories=sorted(set(patients))),
            SAMPLE: pd.Categorical(sample_names, categories=sorted(set(sample_names))),
        },
        index=pd.Index(_cell_names(sample_names)),
    )
    dropped = 0
    for name in obs.columns:
        if name == column:
            continue
        series = obs[name]
        if not _obs_allowed(str(name)) or (_is_text(series) and _mentions(series, forbidden)):
            dropped += 1
            continue
        clean[str(name)] = series.values  # by position: source cell names may repeat
    if dropped:
        ctx.report.removed["single-cell: obs columns not on the allow-list"] += dropped
    return clean


def _cell_names(sample_names: list[str]) -> list[str]:
    """`<sample>_<n>`, n counting the sample's cells in file order from 1."""
    counts: dict[str, int] = defaultdict(int)
    names = []
    for sample in sample_names:
        counts[sample] += 1
        names.append(f"{sample}_{counts[sample]}")
    return names


def check_genes(adata: anndata.AnnData, forbidden: Forbidden, path: Path) -> None:
    """Gene names and raw gene annotations must name no sample or patient."""
    frames = [adata.var] + ([adata.raw.var] if adata.raw is not None else [])
    for frame in frames:
        if _mentions(pd.Series(frame.index.astype(str)), forbidden):
            raise InputRejected(path, "gene names mention a sample or patient id")
    if adata.raw is not None:
        raw_var = adata.raw.var
        if any(_is_text(raw_var[c]) and _mentions(raw_var[c], forbidden) for c in raw_var.columns):
            raise InputRejected(path, "raw gene annotations mention a sample or patient id")


def _clean_var(
    ctx: IngestContext, cells: anndata.AnnData, forbidden: Forbidden, excluded: bool
) -> None:
    """Drop gene columns naming samples, and gene-level statistics computed with excluded cells."""
    dropped = [
        name
        for name in cells.var.columns
        if (excluded and name not in GENE_COLUMNS)
        or (_is_text(cells.var[name]) and _mentions(cells.var[name], forbidden))
    ]
    if dropped:
        cells.var = cells.var.drop(columns=dropped)
        ctx.report.removed["single-cell: var columns"] += len(dropped)


def _clean_uns(
    ctx: IngestContext, cells: anndata.AnnData, forbidden: Forbidden, excluded: bool
) -> None:
    """Keep allow-listed analysis entries that mention no sample or patient; count the rest."""
    kept_columns = set(cells.obs.columns)
    dropped = summaries = 0
    for key in list(cells.uns.keys()):
        colours = key.endswith(UNS_COLOR_SUFFIX)
        allowed = (
            key.removesuffix(UNS_COLOR_SUFFIX) in kept_columns
            if colours
            else key in UNS_KEYS or key.startswith(UNS_PREFIXES)
        )
        if allowed and excluded and not colours:
            summaries += 1
            del cells.uns[key]
        elif not allowed or any(forbidden.search(text) for text in _strings(cells.uns[key])):
            dropped += 1
            del cells.uns[key]
    if dropped:
        ctx.report.removed["single-cell: uns entries not on the allow-list"] += dropped
    if summaries:
        ctx.report.removed[_SUMMARY] += summaries


def _clean_matrices(ctx: IngestContext, cells: anndata.AnnData, excluded: bool) -> None:
    """Only numeric matrices stay; cell-cell graphs and loadings go with opted-out cells."""
    removed = ctx.report.removed
    for mapping, cohort_level in (
        (cells.obsm, False),
        (cells.layers, False),
        (cells.varm, True),
        (cells.obsp, True),
    ):
        for key in list(mapping.keys()):
            if cohort_level and excluded:
                removed[_SUMMARY] += 1
                del mapping[key]
            elif not _numeric(mapping[key]):
                removed["single-cell: non-numeric matrices"] += 1
                del mapping[key]


# -- helpers ------------------------------------------------------------------------------


class Forbidden:
    """Finds lab sample ids and hospital ids in text.

    The ids of samples.csv are found anywhere in a text; the (possibly very many) ids of
    the patient index are found as whole words, by set lookup rather than one huge regex.
    """

    _WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")

    def __init__(self, samples: Mapping[str, LabSample], known: Iterable[str]) -> None:
        near = {t for t in set(samples) | {s.patient_id for s in samples.values()} if t}
        ordered = sorted(near, key=len, reverse=True)
        self._near = re.compile("|".join(map(re.escape, ordered))) if ordered else None
        self._known = frozenset(known)

    def search(self, text: str) -> bool:
        if self._near is not None and self._near.search(text):
            return True
        return any(word in self._known for word in self._WORD.findall(text))


def _forbidden(samples: Mapping[str, LabSample], ctx: IngestContext) -> Forbidden:
    return Forbidden(samples, ctx.patients.known)


def _obs_allowed(name: str) -> bool:
    return name in OBS_COLUMNS or name.startswith(OBS_PREFIXES)


def _is_text(series: pd.Series) -> bool:
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return not pd.api.types.is_numeric_dtype(dtype.categories.dtype)
    return bool(pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype))


def _mentions(series: pd.Series, forbidden: Forbidden) -> bool:
    values = series.cat.categories if isinstance(series.dtype, pd.CategoricalDtype) else series
    return any(forbidden.search(str(v)) for v in pd.unique(np.asarray(values, dtype=object)))


def _strings(value: Any) -> Iterator[str]:
    """Every text inside an uns entry: keys, strings, text arrays and field names."""
    if isinstance(value, str | bytes):
        yield value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, pd.DataFrame):
        yield from (str(c) for c in value.columns)
        yield from (str(i) for i in value.index)
        for column in value.columns:
            yield from _strings(value[column].to_numpy())
    elif isinstance(value, np.ndarray):
        if value.dtype.names:
            yield from value.dtype.names
            for field in value.dtype.names:
                yield from _strings(value[field])
        elif value.dtype.kind in "OSU":
            for item in value.ravel():
                yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def _numeric(value: Any) -> bool:
    if sparse.issparse(value):
        return bool(np.issubdtype(value.dtype, np.number) or value.dtype == np.bool_)
    if isinstance(value, np.ndarray):
        return bool(np.issubdtype(value.dtype, np.number) or value.dtype == np.bool_)
    return False
