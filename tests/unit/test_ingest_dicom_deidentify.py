"""The DICOM de-identification of one dataset, in memory, on real files shipped by pydicom
and nibabel: the profile at every nesting level, dates, UIDs, private elements, encoding."""

from __future__ import annotations

import gzip
import io
import warnings
from collections import Counter
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import nibabel
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

from tre.ingest.context import IngestContext, ProjectKeys
from tre.ingest.dicom import DicomDeidentifier, encode, read_dicom
from tre.ingest.dicom_profile import Action, raw_text
from tre.ingest.patients import PatientIndex
from tre.policy import Policy
from tre.policy.datasets import DateHandling, DicomOption
from tre.pseudonym import DateShifter, MasterKey, Pseudonymiser, UidMapper, derive_project_key

MASTER = MasterKey(bytes(range(32)))
PATIENT = "MRN0000042"
NICOM = Path(nibabel.__file__).parent / "nicom" / "tests" / "data"
ADDED = {0x00100010, 0x00100020, 0x00120062, 0x00120063, 0x00120064, 0x00280303}
"""What de-identification writes itself (pseudonym, method, temporal flag)."""
PYDICOM_FILES = (
    "CT_small.dcm",
    "MR_small.dcm",
    "MR_small_bigendian.dcm",
    "examples_overlay.dcm",
    "rtplan.dcm",
    "rtdose.dcm",
    "reportsi.dcm",
    "test-SR.dcm",
    "waveform_ecg.dcm",
    "liver_1frame.dcm",
    "JPEG2000.dcm",
    "nested_priv_SQ.dcm",
    "priv_SQ.dcm",
    "MR_small_implicit.dcm",
    "image_dfl.dcm",  # deflated
    "SC_rgb_jpeg.dcm",  # declares explicit VR, is written in implicit VR
)


def deidentifier(
    policy: Policy, tmp_path: Path, *, project: str = "gbm-linkage", **options: Any
) -> DicomDeidentifier:
    dataset = policy.dataset("gbm-mri")
    assert dataset is not None
    if options:
        changed = dataset.deidentification.model_copy(update=options)
        dataset = dataset.model_copy(update={"deidentification": changed})
    key = derive_project_key(MASTER, project)
    ctx = IngestContext(
        project=project,
        dataset=dataset,
        version=dataset.versions[0],
        source_dir=tmp_path,
        out_dir=tmp_path / "out",
        quarantine_dir=tmp_path / "quarantine",
        keys=ProjectKeys(Pseudonymiser(key), DateShifter(key), UidMapper(key), MASTER.key_id),
        patients=PatientIndex(known=frozenset({PATIENT})),
    )
    return DicomDeidentifier(ctx)


def read(data: bytes | Path) -> Dataset:
    raw = data.read_bytes() if isinstance(data, Path) else data
    return pydicom.dcmread(io.BytesIO(raw))


def pydicom_file(name: str) -> Dataset:
    path = get_testdata_file(name)
    assert path is not None, f"{name} is not in the installed pydicom"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # some samples are broken on purpose
        return read_dicom(Path(path), Path(path).read_bytes())


def mprage() -> Dataset:
    return read(gzip.decompress((NICOM / "philips_mprage.dcm.gz").read_bytes()))


def run(d: DicomDeidentifier, ds: Dataset, patient: str = PATIENT) -> Dataset:
    """De-identify, encode and read back, as a researcher would open the file."""
    d.deidentify(ds, patient, d.ctx.keys.pseudonymiser.pseudonym(patient), Counter())
    d._describe(ds, masked=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return read(encode(ds))


def walk(ds: Dataset) -> Iterator[tuple[int, Any]]:
    """(tag, element) at every nesting level, without skipping private elements."""
    for tag in list(ds.keys()):
        element = ds[tag]
        yield int(tag), element
        if element.VR == "SQ":
            for item in element.value:
                yield from walk(item)


def source_values(ds: Dataset) -> dict[int, set[str]]:
    """Every value of every tag at any level (on a copy: reading converts elements)."""
    values: dict[int, set[str]] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # some sample files break VR rules on purpose
        for tag, element in walk(read(encode_as_is(ds))):
            for text in raw_text(element).split("\\") if element.VR != "SQ" else ():
                if text.strip():
                    values.setdefault(tag, set()).add(text.strip())
    return values


def encode_as_is(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds)
    return buffer.getvalue()


def assert_profile_applied(d: DicomDeidentifier, source: dict[int, set[str]], out: Dataset) -> None:
    """Nothing the profile removes or replaces survives with a source value, at any level."""
    for tag, element in walk(out):
        assert not tag >> 16 & 1, f"private element {tag:08X} survived"
        if tag in ADDED or element.VR == "SQ":
            continue
        rule = d.profile.rule(tag)
        assert rule.action is not Action.REMOVE, f"{tag:08X} should have been removed"
        if rule.action is Action.KEEP:
            continue
        for text in raw_text(element).split("\\"):
            value = text.strip()
            if value and not value.startswith("1.2.840.10008."):
                assert value not in source.get(tag, set()), f"{tag:08X} kept its value"


@pytest.mark.parametrize("name", PYDICOM_FILES)
def test_the_profile_applies_at_every_nesting_level(
    name: str, demo_policy: Policy, tmp_path: Path
) -> None:
    d = deidentifier(demo_policy, tmp_path)
    ds = pydicom_file(name)
    source = source_values(ds)
    out = run(d, ds)
    assert_profile_applied(d, source, out)
    pseudonym = d.ctx.keys.pseudonymiser.pseudonym(PATIENT)
    assert out.PatientID == pseudonym
    assert out.PatientName == pseudonym
    assert out.PatientIdentityRemoved == "YES"
    assert [c.CodeValue for c in out.DeidentificationMethodCodeSequence] == [
        "113100",
        "113105",
        "113107",
    ]
    assert out.LongitudinalTemporalInformationModified == "MODIFIED"
    assert out.file_meta.MediaStorageSOPInstanceUID == out.get("SOPInstanceUID", "")
    assert out.preamble == bytes(128)


def test_the_philips_mprage_loses_all_6407_private_elements(
    demo_policy: Policy, tmp_path: Path
) -> None:
    d = deidentifier(demo_policy, tmp_path)
    ds = mprage()
    source = source_values(ds)
    private = sum(1 for tag, _ in walk(ds) if tag >> 16 & 1)
    assert private >= 6407
    counts: Counter[str] = Counter()
    d.deidentify(ds, PATIENT, "P", counts)
    assert counts["dicom: private elements"] >= 1  # whole private sequences go unread
    assert not any(tag >> 16 & 1 for tag, _ in walk(ds))
    assert_profile_applied(d, source, ds)


def test_dates_in_nested_sequences_move_with_the_patients_offset(
    demo_policy: Policy, tmp_path: Path
) -> None:
    d = deidentifier(demo_policy, tmp_path)
    ds = mprage()
    before = [str(first_frame(ds).FrameAcquisitionDateTime), str(ds.StudyDate)]
    out = run(d, ds)
    after = [str(first_frame(out).FrameAcquisitionDateTime), str(out.StudyDate)]
    offset = timedelta(days=d.ctx.keys.dates.offset_days(PATIENT))
    moved = [date(int(v[:4]), int(v[4:6]), int(v[6:8])) + offset for v in before]
    assert after[0] == f"{moved[0]:%Y%m%d}" + before[0][8:]  # time of day kept
    assert after[1] == f"{moved[1]:%Y%m%d}"


def first_frame(ds: Dataset) -> Dataset:
    frame: Dataset = ds.PerFrameFunctionalGroupsSequence[0].FrameContentSequence[0]
    return frame


def dated() -> Dataset:
    ds = pydicom_file("CT_small.dcm")
    ds.StudyDate = "20220315"
    ds.StudyTime = "101500"
    ds.AcquisitionDateTime = "20220315101500.123+0100"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.ContentDate = "2022-13-45"  # not a date: the basic profile's action instead
    ds.PatientBirthDate = "19600101"
    return ds


@pytest.mark.parametrize(
    ("handling", "study_date", "acquired", "study_time"),
    [
        (DateHandling.shift, None, None, "101500"),
        (DateHandling.month, "20220301", "202203", ""),
        (DateHandling.year, "20220101", "2022", ""),
    ],
)
def test_dates_are_shifted_or_generalised_as_the_dataset_says(
    demo_policy: Policy,
    tmp_path: Path,
    handling: DateHandling,
    study_date: str | None,
    acquired: str | None,
    study_time: str,
) -> None:
    d = deidentifier(demo_policy, tmp_path, dates=handling)
    out = run(d, dated())
    if handling is DateHandling.shift:
        shifted = date(2022, 3, 15) + timedelta(days=d.ctx.keys.dates.offset_days(PATIENT))
        study_date, acquired = f"{shifted:%Y%m%d}", f"{shifted:%Y%m%d}101500.123"
    assert out.StudyDate == study_date
    assert out.AcquisitionDateTime == acquired  # time kept only with whole-day shifts
    assert out.get("StudyTime", "") == study_time
    assert out.ContentDate == "19000101"  # Z/D: unparseable, so the dummy
    assert out.PatientBirthDate == ""


def test_without_date_options_dates_get_the_basic_profile(
    demo_policy: Policy, tmp_path: Path
) -> None:
    d = deidentifier(demo_policy, tmp_path, dicom_options=())
    out = run(d, dated())
    assert out.StudyDate == ""
    assert out.StudyTime == ""
    assert "AcquisitionDateTime" in out and out.AcquisitionDateTime == "19000101000000"
    assert out.LongitudinalTemporalInformationModified == "REMOVED"
    assert [c.CodeValue for c in out.DeidentificationMethodCodeSequence] == ["113100"]


def test_full_dates_and_uids_are_kept_only_when_asked(demo_policy: Policy, tmp_path: Path) -> None:
    options = (DicomOption.retain_longitudinal_full_dates, DicomOption.retain_uids)
    d = deidentifier(demo_policy, tmp_path, dicom_options=options)
    ds = dated()
    study_uid = str(ds.StudyInstanceUID)
    out = run(d, ds)
    assert out.StudyDate == "20220315"
    assert out.StudyInstanceUID == study_uid
    assert out.LongitudinalTemporalInformationModified == "UNMODIFIED"
    assert [c.CodeValue for c in out.DeidentificationMethodCodeSequence] == [
        "113100",
        "113106",
        "113110",
    ]


def test_uids_map_the_same_within_a_project_and_differently_across_projects(
    demo_policy: Policy, tmp_path: Path
) -> None:
    ours = deidentifier(demo_policy, tmp_path)
    theirs = deidentifier(demo_policy, tmp_path, project="other-project")
    first, second = pydicom_file("CT_small.dcm"), pydicom_file("CT_small.dcm")
    second.SOPInstanceUID = first.SOPInstanceUID + ".2"
    second.ReferencedImageSequence = [Dataset()]
    second.ReferencedImageSequence[0].ReferencedSOPClassUID = first.SOPClassUID
    second.ReferencedImageSequence[0].ReferencedSOPInstanceUID = first.SOPInstanceUID
    study, sop_class = str(first.StudyInstanceUID), str(first.SOPClassUID)
    a, b, c = run(ours, first), run(ours, second), run(theirs, pydicom_file("CT_small.dcm"))
    assert a.StudyInstanceUID == b.StudyInstanceUID != study
    assert a.SeriesInstanceUID == b.SeriesInstanceUID
    assert a.SOPInstanceUID != b.SOPInstanceUID
    assert b.ReferencedImageSequence[0].ReferencedSOPInstanceUID == a.SOPInstanceUID
    assert b.ReferencedImageSequence[0].ReferencedSOPClassUID == sop_class
    assert c.StudyInstanceUID not in (a.StudyInstanceUID, study)
    assert a.StudyInstanceUID.startswith("2.25.")
    assert a.SOPClassUID == sop_class
    assert a.PatientID != c.PatientID


def test_only_allow_listed_private_elements_survive_with_retain_safe_private(
    demo_policy: Policy, tmp_path: Path
) -> None:
    ds = read(gzip.decompress((NICOM / "siemens_dwi_0.dcm.gz").read_bytes()))
    block = ds.private_block(0x0029, "SIEMENS CSA HEADER")
    csa = bytes(block[0x10].value)
    d = deidentifier(
        demo_policy,
        tmp_path,
        dicom_options=(DicomOption.retain_safe_private,),
        safe_private_tags=("SIEMENS CSA HEADER/0029,xx10",),
    )
    out = run(d, ds)
    private = {tag for tag, _ in walk(out) if tag >> 16 & 1}
    kept = out.private_block(0x0029, "SIEMENS CSA HEADER")
    assert private == {kept.get_tag(0x10), 0x0029 << 16 | kept.block_start >> 8}
    assert bytes(out[kept.get_tag(0x10)].value) == csa
    assert "113111" in [c.CodeValue for c in out.DeidentificationMethodCodeSequence]
    # the same list without the option keeps nothing private
    plain = deidentifier(demo_policy, tmp_path, safe_private_tags=("SIEMENS CSA HEADER/0029,xx10",))
    ds = read(gzip.decompress((NICOM / "siemens_dwi_0.dcm.gz").read_bytes()))
    assert not any(tag >> 16 & 1 for tag, _ in walk(run(plain, ds)))


def test_file_meta_is_rebuilt_and_the_bytes_are_deterministic(
    demo_policy: Policy, tmp_path: Path
) -> None:
    d = deidentifier(demo_policy, tmp_path)
    encoded = []
    for _ in range(2):
        ds = pydicom_file("MR_small.dcm")
        ds.file_meta.SourceApplicationEntityTitle = "RADIOLOGY_PACS"
        ds.preamble = b"II*\0" + bytes(124)  # a TIFF header, say
        d.deidentify(ds, PATIENT, "P", Counter())
        d._describe(ds, masked=False)
        encoded.append(encode(ds))
    assert encoded[0] == encoded[1]
    assert encoded[0][:132] == bytes(128) + b"DICM"
    out = read(encoded[0])
    assert "SourceApplicationEntityTitle" not in out.file_meta
    assert out.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
