"""Which module ingests which modality. Modules are imported only when their modality runs.

Each module exposes `ingest(ctx: IngestContext) -> None`, reads `ctx.source_dir`,
writes into `ctx.output(...)`, and reports through `ctx.report`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from tre.policy import Modality

if TYPE_CHECKING:
    from .context import IngestContext

MODULES: dict[Modality, str] = {
    Modality.emr: "tre.ingest.emr",
    Modality.dicom: "tre.ingest.dicom",
    Modality.nifti: "tre.ingest.nifti",
    Modality.vcf: "tre.ingest.vcf",
    Modality.bam: "tre.ingest.bam",
    Modality.tissue: "tre.ingest.tissue",
    Modality.single_cell: "tre.ingest.single_cell",
}


def ingester(modality: Modality) -> Callable[[IngestContext], None]:
    module = importlib.import_module(MODULES[modality])
    return cast("Callable[[IngestContext], None]", module.ingest)
