"""The identifier index of a really ingested demo project finds its pseudonyms in outputs."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from tests.support import gbm_version_dir, ingest_for_gbm
from tre.policy import Policy
from tre.policy.disclosure import ACRO_DEFAULT
from tre.review.checks import FileKind, IdentifierIndex, Verdict, check_file
from tre.settings import Settings


def test_ingested_pseudonyms_block(
    tre_site: Settings, demo_policy: Policy, demo_silos: Path, tmp_path: Path
) -> None:
    ingest_for_gbm(tre_site, demo_policy, "clinical-records", demo_silos / "emr")
    patients = pq.read_table(gbm_version_dir(tre_site, "clinical-records") / "patients.parquet")
    pseudonyms = sorted(set(patients.column("pseudonym").to_pylist()))
    index = IdentifierIndex.for_project(tre_site, "gbm-linkage")
    assert set(pseudonyms) <= index.pseudonyms
    assert index.other, "keyed record ids (admissions, notes, ...) are indexed too"
    assert len(IdentifierIndex.for_project(tre_site, "hf-outcomes")) == 0

    leaked = tmp_path / "by_patient.csv"
    leaked.write_text(
        "patient,admissions\n" + "".join(f"{p},{12 + i}\n" for i, p in enumerate(pseudonyms[:3]))
    )
    result = check_file(leaked, kind=FileKind.table, profile=ACRO_DEFAULT, identifiers=index)
    assert result.verdict is Verdict.block
    found = next(f for f in result.findings if f.check == "project-pseudonyms")
    assert sorted(r for r, _ in found.cells) == pseudonyms[:3]

    safe = tmp_path / "by_sex.csv"
    safe.write_text("sex,patients\nF,100\nM,100\n")
    assert (
        check_file(safe, kind=FileKind.table, profile=ACRO_DEFAULT, identifiers=index).verdict
        is Verdict.passed
    )
