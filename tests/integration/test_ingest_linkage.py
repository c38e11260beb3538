"""Acceptance of ingest as a whole, on the demo silos' real sample files.

One patient links across every modality by one pseudonym; two projects get
unlinkable pseudonyms; an opted-out patient is in no output; and no planted
direct identifier survives anywhere in any sealed version.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.support import DEMO_TODAY
from tre.ingest import granted_versions, ingest_version, project_keys
from tre.policy import Policy
from tre.pseudonym import OptOutRegister, create_master_key, default_master_key_path
from tre.settings import Settings

MODALITIES = ("emr", "dicom", "nifti", "vcf", "bam", "tissue", "single-cell")
HIGH_ENTROPY_KINDS = frozenset(
    {
        "patient_id",
        "name",
        "clinician_name",
        "phone",
        "national_number",
        "accession_number",
        "address",
        "email",
        "slide_id",
        "lab_sample_id",
        "file_path",
        "institution",
    }
)


@dataclass(frozen=True)
class Ingested:
    settings: Settings
    linked: str
    """Hospital id of a patient present in every modality."""
    opted_out: str
    """Hospital id of a patient in several modalities who opted out before ingest."""


def patients_by_modality(silos: Path) -> dict[str, set[str]]:
    manifest = json.loads((silos / "MANIFEST.json").read_text(encoding="utf-8"))
    found: dict[str, set[str]] = {}
    for entry in manifest["files"]:
        found.setdefault(entry["modality"], set()).update(entry["patient_ids"])
    return found


@pytest.fixture(scope="module")
def ingested(
    tmp_path_factory: pytest.TempPathFactory, demo_silos: Path, demo_policy: Policy
) -> Ingested:
    var = tmp_path_factory.mktemp("linkage") / "var"
    var.mkdir()
    (var / "silos").symlink_to(demo_silos, target_is_directory=True)
    settings = Settings(policy_dir=Path("policies/demo"), var_dir=var)
    create_master_key(default_master_key_path(settings.keys_dir))

    by_modality = patients_by_modality(demo_silos)
    in_all = sorted(set.intersection(*(by_modality[m] for m in MODALITIES)))
    assert len(in_all) >= 2, "the demo silos should have patients in every modality"
    linked, opted_out = in_all[0], in_all[1]
    OptOutRegister.in_keys_dir(settings.keys_dir).record_opt_out(
        opted_out, recorded_by="test", effective=DEMO_TODAY
    )
    for project in ("gbm-linkage", "hf-outcomes"):
        for dataset, version, _ in granted_versions(settings, demo_policy, project, DEMO_TODAY):
            ingest_version(settings, demo_policy, project, dataset, version, today=DEMO_TODAY)
    return Ingested(settings, linked, opted_out)


def output_files(root: Path) -> Iterator[Path]:
    yield from (p for p in sorted(root.rglob("*")) if p.is_file())


def readable(path: Path) -> bytes:
    """A file's content as text-searchable bytes (decompressed, Parquet cells rendered)."""
    if path.suffix == ".parquet":
        rows = pq.read_table(path).to_pylist()
        return json.dumps(rows, default=str, ensure_ascii=False).encode()
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":  # gzip and BGZF (VCF, BAM, .nii.gz)
        return gzip.decompress(data)
    return data


def mentions(root: Path, needle: str) -> list[str]:
    raw = needle.encode()
    return [
        p.relative_to(root).as_posix()
        for p in output_files(root)
        if needle in p.relative_to(root).as_posix() or raw in readable(p)
    ]


def test_one_patient_links_across_every_modality(ingested: Ingested, demo_policy: Policy) -> None:
    keys = project_keys(ingested.settings, "gbm-linkage")
    pseudonym = keys.pseudonymiser.pseudonym(ingested.linked)
    project_root = ingested.settings.datasets_dir / "gbm-linkage"
    datasets_with_patient = {path.split("/")[0] for path in mentions(project_root, pseudonym)}
    assert datasets_with_patient == {
        "clinical-records",
        "gbm-mri",
        "gbm-mri-nifti",
        "gbm-variants",
        "gbm-alignments",
        "gbm-pathology",
        "gbm-single-cell",
    }


def test_two_projects_get_unlinkable_pseudonyms(ingested: Ingested) -> None:
    gbm = project_keys(ingested.settings, "gbm-linkage").pseudonymiser.pseudonym(ingested.linked)
    hf = project_keys(ingested.settings, "hf-outcomes").pseudonymiser.pseudonym(ingested.linked)
    assert gbm != hf
    hf_root = ingested.settings.datasets_dir / "hf-outcomes"
    assert mentions(hf_root, gbm) == []
    assert mentions(hf_root, hf) != []


def test_an_opted_out_patient_is_in_no_output(ingested: Ingested) -> None:
    root = ingested.settings.datasets_dir
    for project in ("gbm-linkage", "hf-outcomes"):
        pseudonym = project_keys(ingested.settings, project).pseudonymiser.pseudonym(
            ingested.opted_out
        )
        assert mentions(root / project, pseudonym) == []
    assert mentions(root, ingested.opted_out) == []
    manifests = [json.loads(p.read_text()) for p in root.rglob("MANIFEST.json")]
    assert all(m["counts"]["excluded_opt_out"] == 1 for m in manifests)


def test_no_planted_identifier_survives_anywhere(ingested: Ingested, demo_silos: Path) -> None:
    planted = json.loads((demo_silos / "PLANTED.json").read_text(encoding="utf-8"))
    needles = sorted(
        {
            i["value"]
            for i in planted["identifiers"]
            if i["kind"] in HIGH_ENTROPY_KINDS and len(i["value"]) >= 6
        }
    )
    assert len(needles) > 500
    haystack = {
        p: readable(p) for root in (ingested.settings.datasets_dir,) for p in output_files(root)
    }
    names = "\n".join(p.as_posix() for p in haystack)
    survivors = [
        (n, str(p)) for n in needles for p, data in haystack.items() if n.encode() in data
    ] + [(n, "file name") for n in needles if n in names]
    assert survivors == []


def test_quarantine_and_records_stay_outside_the_versions(ingested: Ingested) -> None:
    var = ingested.settings.var_dir
    versions = var / "datasets"
    assert not any(p.name == "INGEST-RECORD.json" for p in versions.rglob("*"))
    for record in (var / "ingest").rglob("INGEST-RECORD.json"):
        assert record.stat().st_mode & 0o077 == 0
