"""DICOM ingest end to end on the demo PACS silo and pydicom's own sample files: planted
identifiers gone, the profile at every level, pseudonyms and UIDs keyed per project,
opt-outs, rejects and burned-in text."""

from __future__ import annotations

import io
import json
import re
import shutil
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

from tests.support import DEMO_POLICY, DEMO_TODAY
from tre.ingest import IngestError, IngestResult, InputRejected, ingest_version, project_keys
from tre.ingest import dicom as dicom_ingest
from tre.ingest.context import IngestContext
from tre.ingest.dicom_profile import Action, compile_profile, raw_text
from tre.ingest.patients import PatientIndex
from tre.policy import Policy
from tre.policy.datasets import BurnedInTextHandling, DicomOption
from tre.pseudonym import (
    OptOutRegister,
    create_master_key,
    default_master_key_path,
    default_register_path,
)
from tre.settings import Settings

GBM_MRI = ("gbm-linkage", "gbm-mri", "1")
ADDED = {0x00100010, 0x00100020, 0x00120062, 0x00120063, 0x00120064, 0x00280303}
ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.1"


@dataclass(frozen=True)
class Ingested:
    settings: Settings
    result: IngestResult


def make_site(root: Path, silos: Path, *, key_from: Settings | None = None) -> Settings:
    var = root / "var"
    var.mkdir(parents=True)
    (var / "silos").symlink_to(silos, target_is_directory=True)
    settings = Settings(policy_dir=DEMO_POLICY, var_dir=var)
    key = default_master_key_path(settings.keys_dir)
    if key_from is None:
        create_master_key(key)
    else:
        settings.keys_dir.mkdir(mode=0o700)
        shutil.copy2(default_master_key_path(key_from.keys_dir), key)
    return settings


@pytest.fixture(scope="module")
def mri(
    tmp_path_factory: pytest.TempPathFactory, demo_silos: Path, demo_policy: Policy
) -> Ingested:
    """The demo PACS silo ingested once for the module's read-only checks."""
    settings = make_site(tmp_path_factory.mktemp("dicom-site"), demo_silos)
    return Ingested(settings, ingest_version(settings, demo_policy, *GBM_MRI, today=DEMO_TODAY))


def read(path: Path) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # what we write must read back cleanly
        return pydicom.dcmread(path)


def walk(ds: Dataset) -> Iterator[tuple[int, Any]]:
    for tag in list(ds.keys()):
        element = ds[tag]
        yield int(tag), element
        if element.VR == "SQ":
            for item in element.value:
                yield from walk(item)


def outputs(version_dir: Path) -> list[Path]:
    return sorted(version_dir.rglob("*.dcm"))


def patient_folders(silos: Path) -> list[Path]:
    return sorted(p for p in (silos / "dicom").iterdir() if p.is_dir())


def with_options(policy: Policy, **changes: Any) -> Policy:
    dataset = policy.dataset("gbm-mri")
    assert dataset is not None
    deid = dataset.deidentification.model_copy(update=changes)
    changed = dataset.model_copy(update={"deidentification": deid})
    datasets = tuple(changed if d.id == "gbm-mri" else d for d in policy.datasets)
    return policy.model_copy(update={"datasets": datasets})


# -- the demo silo, ingested once --------------------------------------------------------


def test_every_planted_dicom_identifier_is_gone(
    mri: Ingested, demo_silos: Path, demo_policy: Policy
) -> None:
    planted = json.loads((demo_silos / "PLANTED.json").read_text(encoding="utf-8"))
    dicom = [i for i in planted["identifiers"] if i["file"].startswith("dicom/")]
    kinds = {(i["location"], i["kind"]) for i in dicom}
    assert ("dicom:(0033,1001) JUPYTER-TRE DEMO", "national_number") in kinds
    assert ("dicom:(0008,0090)", "clinician_name") in kinds
    assert ("dicom:(DA/DT inside sequences)", "visit_date") in kinds
    shift_days = demo_policy.site.date_shift_max_days
    keys = project_keys(mri.settings, "gbm-linkage", max_shift_days=shift_days)
    content: dict[str, bytes] = {}
    for identifier in dicom:
        pid = identifier["patient_id"]
        pseudonym = keys.pseudonymiser.pseudonym(pid)
        if pseudonym not in content:
            files = outputs(mri.result.version_dir / pseudonym)
            assert files, f"no output for {pseudonym}"
            names = "\n".join(str(f.relative_to(mri.result.version_dir)) for f in files)
            raw = names.encode() + b"".join(f.read_bytes() for f in files)
            # A patient's visits are days apart, so one visit shifted by the patient's
            # offset can land on the real day of another: that is the shift doing its
            # job, not a leak. Mask the legitimately shifted days before looking.
            visits = {
                i["value"] for i in dicom if i["patient_id"] == pid and i["kind"] == "visit_date"
            }
            for day in visits:
                moved = keys.dates.shift(datetime.strptime(day, "%Y%m%d").date(), pid)
                raw = raw.replace(f"{moved:%Y%m%d}".encode(), b"<shifted>")
            content[pseudonym] = raw
        value = identifier["value"].encode()
        assert value not in content[pseudonym], (identifier["location"], identifier["kind"])
    manifest = (mri.result.version_dir / "MANIFEST.json").read_text(encoding="utf-8")
    # Hospital numbers (MRN + 7 digits) and accession numbers (AZD + 9 digits); the letters
    # alone may occur inside a keyed pseudonym by chance.
    assert re.search(r"MRN\d{7}|AZD\d{9}", manifest) is None


def test_every_output_follows_the_profile_at_every_nesting_level(
    mri: Ingested, demo_silos: Path, demo_policy: Policy
) -> None:
    keys = project_keys(mri.settings, "gbm-linkage")
    dataset = demo_policy.dataset("gbm-mri")
    assert dataset is not None
    profile = compile_profile(dataset.deidentification.dicom_options)
    sources = sorted(p for p in (demo_silos / "dicom").rglob("*") if p.is_file())
    assert len(sources) == mri.result.manifest.counts.output_files
    for source_path in sources:
        source = pydicom.dcmread(source_path)
        values: dict[int, set[str]] = {}
        for tag, element in walk(source):
            if element.VR != "SQ":
                values.setdefault(tag, set()).update(raw_text(element).split("\\"))
        uids = [keys.uids.remap(str(source[k].value)) for k in (0x0020000D, 0x0020000E)]
        sop = keys.uids.remap(str(source.SOPInstanceUID))
        pseudonym = keys.pseudonymiser.pseudonym(str(source.PatientID))
        out = read(mri.result.version_dir / pseudonym / uids[0] / uids[1] / f"{sop}.dcm")
        for tag, element in walk(out):
            assert not tag >> 16 & 1, f"{source_path.name}: private {tag:08X}"
            if tag in ADDED or element.VR == "SQ":
                continue
            action = profile.rule(tag).action
            assert action is not Action.REMOVE, f"{tag:08X} should be gone"
            if action is not Action.KEEP:
                for value in raw_text(element).split("\\"):
                    kept = value.strip() and value in values.get(tag, set())
                    assert not kept or value.startswith("1.2.840.10008."), f"{tag:08X} kept"
        assert out.PatientID == out.PatientName == pseudonym
        assert (out.StudyInstanceUID, out.SeriesInstanceUID, out.SOPInstanceUID) == (*uids, sop)
        assert out.file_meta.MediaStorageSOPInstanceUID == sop
        assert out.PatientIdentityRemoved == "YES"
        codes = [c.CodeValue for c in out.DeidentificationMethodCodeSequence]
        assert codes == ["113100", "113105", "113107"]


def test_pseudonyms_are_the_projects_and_studies_keep_their_series(
    mri: Ingested, demo_silos: Path
) -> None:
    keys = project_keys(mri.settings, "gbm-linkage")
    folders = patient_folders(demo_silos)
    expected = {keys.pseudonymiser.pseudonym(p.name): p for p in folders}
    version = mri.result.version_dir
    assert {p.name for p in version.iterdir() if p.is_dir()} == set(expected)
    for pseudonym, source in expected.items():
        studies = list((version / pseudonym).iterdir())
        assert len(studies) == len(list(source.iterdir()))  # one per accession
        for study in studies:
            seen = {(read(f).StudyInstanceUID, read(f).PatientID) for f in study.rglob("*.dcm")}
            assert seen == {(study.name, pseudonym)}
    assert mri.result.manifest.counts.patients == len(folders)


def test_the_philips_mprage_comes_out_without_private_elements(mri: Ingested) -> None:
    found = 0
    for path in outputs(mri.result.version_dir):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if ds.SOPClassUID == ENHANCED_MR:
            found += 1
            assert not [t for t, _ in walk(ds) if t >> 16 & 1]
            assert ds.LongitudinalTemporalInformationModified == "MODIFIED"
    assert found >= 1


def test_another_project_gets_other_pseudonyms_and_uids(
    mri: Ingested, demo_silos: Path, demo_policy: Policy, tmp_path: Path
) -> None:
    source = patient_folders(demo_silos)[0]
    dataset = demo_policy.dataset("gbm-mri")
    assert dataset is not None
    ctx = IngestContext(
        project="other-project",
        dataset=dataset,
        version=dataset.versions[0],
        source_dir=source,
        out_dir=tmp_path / "out",
        quarantine_dir=tmp_path / "quarantine",
        keys=project_keys(mri.settings, "other-project"),
        patients=PatientIndex(known=frozenset({source.name})),
    )
    dicom_ingest.ingest(ctx)
    theirs = {read(f).StudyInstanceUID for f in outputs(tmp_path / "out")}
    ours_pseudonym = project_keys(mri.settings, "gbm-linkage").pseudonymiser.pseudonym(source.name)
    ours = {read(f).StudyInstanceUID for f in outputs(mri.result.version_dir / ours_pseudonym)}
    assert len(theirs) == len(ours) == 2
    assert not theirs & ours
    assert ours_pseudonym not in {p.name for p in (tmp_path / "out").iterdir()}


def test_same_inputs_and_key_give_byte_identical_versions(
    mri: Ingested, demo_silos: Path, demo_policy: Policy, tmp_path: Path
) -> None:
    other = make_site(tmp_path, demo_silos, key_from=mri.settings)
    again = ingest_version(other, demo_policy, *GBM_MRI, today=DEMO_TODAY)
    assert again.manifest_sha256 == mri.result.manifest_sha256


# -- small sources, built per test -------------------------------------------------------


def copy_patients(demo_silos: Path, target: Path, count: int) -> list[str]:
    ids = []
    for folder in patient_folders(demo_silos)[:count]:
        shutil.copytree(folder, target / folder.name)
        ids.append(folder.name)
    return ids


def relabelled(name: str, patient_id: str | None) -> bytes:
    """A pydicom sample file given one of the demo hospital's patients (or no patient)."""
    path = get_testdata_file(name)
    assert path is not None, f"{name} is not in the installed pydicom"
    ds = pydicom.dcmread(path)
    if patient_id is None:
        del ds.PatientID
    else:
        ds.PatientID = patient_id
    buffer = io.BytesIO()
    ds.save_as(buffer)
    return buffer.getvalue()


def test_an_opted_out_patient_appears_nowhere(
    tre_site: Settings, demo_policy: Policy, demo_silos: Path, tmp_path: Path
) -> None:
    source = tmp_path / "pacs"
    kept, gone = copy_patients(demo_silos, source, 2)
    OptOutRegister(default_register_path(tre_site.keys_dir)).record_opt_out(
        gone, recorded_by="dpo", effective=DEMO_TODAY
    )
    result = ingest_version(tre_site, demo_policy, *GBM_MRI, today=DEMO_TODAY, source=source)
    keys = project_keys(tre_site, "gbm-linkage")
    names = {p.name for p in result.version_dir.iterdir() if p.is_dir()}
    assert names == {keys.pseudonymiser.pseudonym(kept)}
    assert result.manifest.counts.excluded_opt_out == 1
    assert result.manifest.counts.quarantined == 0
    everything = b"".join(f.read_bytes() for f in result.version_dir.rglob("*") if f.is_file())
    assert keys.pseudonymiser.pseudonym(gone).encode() not in everything
    assert gone.encode() not in everything


def test_bad_files_are_rejected_by_name_without_their_identifiers(
    tre_site: Settings, demo_policy: Policy, demo_silos: Path, tmp_path: Path
) -> None:
    source = tmp_path / "pacs"
    (patient,) = copy_patients(demo_silos, source, 1)
    good = sorted(p for p in (source / patient).rglob("*") if p.is_file())
    bad = source / "bad"
    bad.mkdir()
    whole = good[0].read_bytes()
    (bad / "truncated").write_bytes(whole[: len(whole) - 1000])
    (bad / "notes.txt").write_text(f"report for {patient}\n", encoding="utf-8")
    (bad / "stranger").write_bytes(relabelled("CT_small.dcm", "MRN9999999"))
    (bad / "nobody").write_bytes(relabelled("MR_small.dcm", None))
    (bad / "twice").write_bytes(whole)  # the same SOP instance as a file already read
    short = pydicom.dcmread(io.BytesIO(whole))
    short.PixelData = short.PixelData[:-1000]  # a consistent element, but too few pixels
    short.SOPInstanceUID = "1.2.3.4"
    short.save_as(bad / "short")
    expected = len(short.PixelData) + 1000

    with pytest.raises(InputRejected):
        ingest_version(tre_site, demo_policy, *GBM_MRI, today=DEMO_TODAY, source=source)
    assert not (tre_site.datasets_dir / "gbm-linkage" / "gbm-mri" / "1").exists()

    result = ingest_version(
        tre_site, demo_policy, *GBM_MRI, today=DEMO_TODAY, source=source, continue_on_error=True
    )
    record = json.loads(result.record_path.read_text(encoding="utf-8"))
    problems = {Path(r["source"]).name: r["reason"] for r in record["rejected"]}
    assert problems == {
        "notes.txt": "not a DICOM file (no DICM prefix after the preamble)",
        "nobody": "PatientID (0010,0020) is missing or empty",
        "stranger": "PatientID (0010,0020) refers to a patient not in the patient index",
        "truncated": "is truncated: the file ends inside an element",
        "short": f"is truncated: pixel data hold {expected - 1000} bytes, Rows x Columns x "
        f"samples x bits allocated x frames needs {expected}",
        "twice": "has the same SOPInstanceUID as another source file",
    }
    for problem in problems.values():
        assert "MRN" not in problem and patient not in problem
    assert result.manifest.counts.rejected == 6
    assert result.manifest.counts.output_files == len(good)


def burned_in_source(demo_silos: Path, target: Path) -> str:
    (patient,) = copy_patients(demo_silos, target, 1)
    for name in ("examples_palette.dcm", "examples_overlay.dcm", "SC_rgb_small_odd.dcm"):
        (target / patient / name).write_bytes(relabelled(name, patient))
    return patient


def quarantined(settings: Settings) -> dict[str, Dataset]:
    folder = settings.var_dir / "quarantine" / "gbm-linkage" / "gbm-mri" / "1"
    return {read(p).SOPClassUID.name: read(p) for p in folder.rglob("*.dcm")}


def test_burned_in_candidates_are_quarantined_de_identified(
    tre_site: Settings, demo_policy: Policy, demo_silos: Path, tmp_path: Path
) -> None:
    patient = burned_in_source(demo_silos, tmp_path / "pacs")
    result = ingest_version(
        tre_site, demo_policy, *GBM_MRI, today=DEMO_TODAY, source=tmp_path / "pacs"
    )
    held = quarantined(tre_site)
    assert set(held) == {
        "Ultrasound Image Storage",
        "MR Image Storage",
        "Secondary Capture Image Storage",
    }
    pseudonym = project_keys(tre_site, "gbm-linkage").pseudonymiser.pseudonym(patient)
    for ds in held.values():
        assert ds.PatientID == pseudonym
        assert not [t for t, _ in walk(ds) if t >> 16 & 1]
        assert "InstitutionName" not in ds or ds.InstitutionName == "ANONYMIZED"
    released = {read(p).SOPClassUID.name for p in outputs(result.version_dir)}
    assert released.isdisjoint({"Secondary Capture Image Storage"})
    record = json.loads(result.record_path.read_text(encoding="utf-8"))
    reasons = sorted(r["reason"] for r in record["quarantined"])
    assert reasons == [
        "possible burned-in text: modality OT often carries burned-in text; "
        "secondary capture, document or photograph SOP class",
        "possible burned-in text: modality US often carries burned-in text",
        "possible burned-in text: overlay planes present",
    ]
    assert result.manifest.counts.quarantined == 3


def test_mask_mode_masks_what_a_rule_covers_and_quarantines_the_rest(
    tre_site: Settings, demo_policy: Policy, demo_silos: Path, tmp_path: Path
) -> None:
    burned_in_source(demo_silos, tmp_path / "pacs")
    policy = with_options(demo_policy, burned_in_text=BurnedInTextHandling.mask)
    result = ingest_version(tre_site, policy, *GBM_MRI, today=DEMO_TODAY, source=tmp_path / "pacs")
    held = quarantined(tre_site)
    assert set(held) == {"Secondary Capture Image Storage"}
    released = [read(p) for p in outputs(result.version_dir)]
    masked = [
        ds
        for ds in released
        if "113101" in [c.CodeValue for c in ds.DeidentificationMethodCodeSequence]
    ]
    assert sorted(ds.Modality for ds in masked) == ["MR", "US"]
    ultrasound, overlay = sorted(masked, key=lambda ds: ds.Modality != "US")
    assert not [t for t in overlay.keys() if 0x6000 <= t >> 16 <= 0x60FF]  # noqa: SIM118
    pixels = ultrasound.pixel_array
    header = np.ones(pixels.shape, dtype=bool)
    for r in ultrasound.SequenceOfUltrasoundRegions:
        header[r.RegionLocationMinY0 : r.RegionLocationMaxY1 + 1,
               r.RegionLocationMinX0 : r.RegionLocationMaxX1 + 1] = False  # fmt: skip
    assert not pixels[header].any()
    assert result.manifest.changed["dicom: images masked"] == 2
    record = json.loads(result.record_path.read_text(encoding="utf-8"))
    (reason,) = [r["reason"] for r in record["quarantined"]]
    assert reason == (
        "possible burned-in text: modality OT often carries burned-in text; secondary capture, "
        "document or photograph SOP class; not masked: no masking rule for modality OT; "
        "screen captures, reports and documents are not masked"
    )


def test_a_malformed_safe_private_tag_stops_the_run_before_any_file(
    tre_site: Settings, demo_policy: Policy, demo_silos: Path, tmp_path: Path
) -> None:
    copy_patients(demo_silos, tmp_path / "pacs", 1)
    policy = with_options(
        demo_policy, dicom_options=(DicomOption.retain_safe_private,), safe_private_tags=("oops",)
    )
    with pytest.raises(IngestError, match="safe_private_tags: 'oops' is not"):
        ingest_version(tre_site, policy, *GBM_MRI, today=DEMO_TODAY, source=tmp_path / "pacs")
    assert not tre_site.datasets_dir.exists()
