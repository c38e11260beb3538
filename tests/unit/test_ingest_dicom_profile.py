"""PS3.15 Table E.1-1 compiled into actions: the table as shipped, options, and the stricter
rules for attributes the table does not list."""

from __future__ import annotations

import pytest
from pydicom.datadict import DicomDictionary, dictionary_keyword
from pydicom.tag import Tag

from tre.ingest.dicom_profile import (
    NOT_IMPLEMENTED,
    OPTION_COLUMNS,
    Action,
    SafePrivate,
    compile_profile,
    load_table,
)
from tre.ingest.errors import IngestError
from tre.policy.datasets import DicomOption

Opt = DicomOption
DEFAULT = (Opt.clean_descriptors, Opt.retain_longitudinal_modified_dates)


def tag(keyword: str) -> int:
    return int(Tag(keyword))


def action(keyword: str, *options: DicomOption, shifted: bool = True) -> Action:
    return compile_profile(options, dates_shifted=shifted).rule(tag(keyword)).action


def test_the_packaged_table_is_table_e1_1_with_every_option_column() -> None:
    table = load_table()
    assert len(table) == 621
    codes = {e["basicProfile"] for e in table}
    assert codes == {"X", "D", "U", "Z", "X/D", "X/Z", "X/Z/D", "Z/D", "X/Z/U*"}
    columns = {k for e in table for k in e if k.endswith("Opt")}
    assert columns == set(OPTION_COLUMNS.values())
    assert set(OPTION_COLUMNS) == set(DicomOption)
    masks = {e["tag"] for e in table if "X" in e["tag"][1:] or "G" in e["tag"]}
    assert masks == {"(50XX,XXXX)", "(60XX,4000)", "(60XX,3000)", "(GGGG,EEEE) WHERE GGGG IS ODD"}


@pytest.mark.parametrize(
    ("keyword", "expected"),
    [
        ("PatientName", Action.EMPTY),  # Z
        ("PatientBirthDate", Action.EMPTY),  # Z, not a longitudinal date
        ("PatientAddress", Action.REMOVE),  # X
        ("StudyInstanceUID", Action.UID),  # U
        ("ReferencedSOPInstanceUID", Action.UID),
        ("MediaStorageSOPInstanceUID", Action.UID),
        ("InstitutionName", Action.DUMMY),  # X/Z/D: the last, for the strictest IOD
        ("ContentDate", Action.DUMMY),  # Z/D
        ("AcquisitionDate", Action.EMPTY),  # X/Z
        ("StudyDate", Action.EMPTY),
        ("SeriesDescription", Action.REMOVE),
        ("ReferencedImageSequence", Action.RECURSE),  # X/Z/U*: references kept, remapped
        ("InstitutionCodeSequence", Action.EMPTY),  # X/Z/D on a sequence: no made-up item
        ("OtherPatientIDsSequence", Action.REMOVE),
        ("PersonIdentificationCodeSequence", Action.EMPTY),  # D on a sequence
        ("AnnotationGroupUID", Action.UID),  # D on a UID: a keyed UID is the dummy
    ],
)
def test_basic_profile_actions(keyword: str, expected: Action) -> None:
    assert action(keyword) is expected


def test_modified_dates_shift_dates_and_keep_times_only_when_shifting() -> None:
    profile = compile_profile([Opt.retain_longitudinal_modified_dates])
    study_date = profile.rule(tag("StudyDate"))
    assert (study_date.action, study_date.fallback) == (Action.DATE, Action.EMPTY)
    assert profile.rule(tag("FrameAcquisitionDateTime")).action is Action.DATE
    assert action("StudyTime", Opt.retain_longitudinal_modified_dates) is Action.KEEP
    generalised = action("StudyTime", Opt.retain_longitudinal_modified_dates, shifted=False)
    assert generalised is Action.EMPTY
    assert action("TimezoneOffsetFromUTC", Opt.retain_longitudinal_modified_dates) is Action.REMOVE
    assert action("StudyDate", Opt.retain_longitudinal_full_dates) is Action.KEEP
    assert action("TimezoneOffsetFromUTC", Opt.retain_longitudinal_full_dates) is Action.KEEP


def test_a_date_option_decides_dates_even_where_another_option_keeps_them() -> None:
    both = (Opt.retain_device_identity, Opt.retain_longitudinal_modified_dates)
    assert action("DateOfLastDetectorCalibration", *both) is Action.DATE
    assert action("DateOfLastDetectorCalibration", Opt.retain_device_identity) is Action.DUMMY
    assert action("DeviceSerialNumber", Opt.retain_device_identity) is Action.KEEP


def test_cleaning_free_text_removes_it_and_wins_over_keeping() -> None:
    # C of clean descriptors, patient characteristics and device identity: removed
    # where the profile allows (X), else emptied (Z), else a dummy.
    assert action("SeriesDescription", Opt.clean_descriptors) is Action.REMOVE
    assert action("ContrastBolusAgent", Opt.clean_descriptors) is Action.EMPTY
    assert action("Allergies", Opt.retain_patient_characteristics) is Action.REMOVE
    assert action("PatientSex", Opt.retain_patient_characteristics) is Action.KEEP
    assert action("PatientAge", Opt.retain_patient_characteristics) is Action.KEEP
    assert action("StationAETitle", Opt.retain_device_identity) is Action.REMOVE
    assert action("InstitutionName", Opt.retain_institution_identity) is Action.KEEP
    assert action("StudyInstanceUID", Opt.retain_uids) is Action.KEEP
    assert action("ReferencedStudySequence", Opt.retain_uids) is Action.RECURSE


def test_options_we_cannot_honour_fall_back_to_the_basic_profile_and_are_not_claimed() -> None:
    assert {Opt.clean_graphics, Opt.clean_structured_content} == NOT_IMPLEMENTED
    profile = compile_profile(
        [Opt.clean_graphics, Opt.clean_structured_content, Opt.clean_descriptors]
    )
    assert profile.rule(tag("GraphicAnnotationSequence")).action is Action.EMPTY
    assert profile.rule(tag("ContentSequence")).action is Action.EMPTY
    assert profile.claimed_options == (Opt.clean_descriptors,)
    assert compile_profile(DEFAULT).claimed_options == DEFAULT


def test_curves_overlays_and_group_lengths_go_by_group() -> None:
    profile = compile_profile(DEFAULT)
    for t in (0x50000010, 0x501E3000, 0x60003000, 0x60004000, 0x60000010, 0x601E0102):
        assert profile.rule(t).action is Action.REMOVE, hex(t)
    assert profile.rule(0x00080000).action is Action.REMOVE
    assert profile.rule(0x00200000).action is Action.REMOVE
    assert profile.rule(0x00F00010).action is Action.REMOVE  # unknown public attribute


def test_every_person_name_date_and_instance_uid_in_the_dictionary_is_acted_on() -> None:
    """Stricter than the table: PN, DA/DT and instance UIDs it does not list are not kept."""
    none = compile_profile(())
    modified = compile_profile([Opt.retain_longitudinal_modified_dates])
    for t, entry in DicomDictionary.items():
        vr = entry[0]
        if t >> 16 == 0x0002 or t & 0xFFFF == 0 or vr not in ("PN", "DA", "DT", "UI"):
            continue
        if vr == "PN":
            assert none.rule(t).action is not Action.KEEP, hex(t)
        elif vr in ("DA", "DT"):
            assert none.rule(t).action is not Action.KEEP, hex(t)
            assert modified.rule(t).action is not Action.KEEP, hex(t)
        elif not dictionary_keyword(t).removesuffix("InFile").endswith(("ClassUID", "SyntaxUID")):
            assert none.rule(t).action in (Action.UID, Action.REMOVE), hex(t)
    assert modified.rule(tag("DateOfSecondaryCapture")).action is Action.DATE
    assert modified.rule(tag("PatientBirthDate")).action is Action.EMPTY  # not longitudinal
    assert none.rule(tag("SOPClassUID")).action is Action.KEEP
    assert none.rule(tag("ReferencedSOPClassUID")).action is Action.KEEP
    assert none.rule(tag("TransferSyntaxUID")).action is Action.KEEP


def test_safe_private_tags_are_parsed_only_with_the_option() -> None:
    entry = "SIEMENS CSA HEADER/0029,xx10"
    assert SafePrivate.parse(entry) == SafePrivate("SIEMENS CSA HEADER", 0x0029, 0x10)
    assert compile_profile(DEFAULT, safe_private_tags=[entry]).safe_private == frozenset()
    kept = compile_profile([Opt.retain_safe_private], safe_private_tags=[entry])
    assert kept.safe_private == {SafePrivate("SIEMENS CSA HEADER", 0x0029, 0x10)}


@pytest.mark.parametrize(
    "entry", ["SIEMENS CSA HEADER", "0029,xx10", "X/0028,xx10", "X/0029,1010", "X/0007,xx10"]
)
def test_a_malformed_safe_private_tag_names_itself_and_the_format(entry: str) -> None:
    with pytest.raises(IngestError, match=f"safe_private_tags: '{entry}' is not"):
        SafePrivate.parse(entry)
