"""Constants and types the tests share (fixtures live in conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tre.ingest import IngestResult
    from tre.policy import Policy
    from tre.settings import Settings

REPO = Path(__file__).resolve().parent.parent
DEMO_POLICY = REPO / "policies" / "demo"
DEMO_TODAY = date(2026, 11, 23)
"""The date the demo policy is written for (its permits carry fixed legal dates)."""

Edit = Callable[[str, str, str], None]
"""edit(file, old, new): replace exactly one occurrence of old in a file of the copied site."""


def ingest_for_gbm(
    settings: Settings,
    policy: Policy,
    dataset: str,
    source: Path,
    *,
    continue_on_error: bool = False,
) -> IngestResult:
    """Ingest version 1 of `dataset` for project gbm-linkage from `source`, as of DEMO_TODAY."""
    from tre.ingest import ingest_version

    return ingest_version(
        settings,
        policy,
        "gbm-linkage",
        dataset,
        "1",
        source=source,
        continue_on_error=continue_on_error,
        today=DEMO_TODAY,
    )


def gbm_version_dir(settings: Settings, dataset: str) -> Path:
    return settings.datasets_dir / "gbm-linkage" / dataset / "1"


def hospital_ids(silos: Path) -> list[str]:
    """The hospital patient ids of the demo EMR, in file order."""
    import csv

    with (silos / "emr" / "patients.csv").open(encoding="utf-8") as handle:
        return [row["patient_id"] for row in csv.DictReader(handle)]
