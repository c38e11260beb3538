"""DICOM ingest: PS3.15 basic profile (with the dataset's options) at every nesting level.

Invariant: every file under the source folder is either written de-identified, held in
quarantine (possible burned-in text), skipped (its patient opted out) or rejected by
name; a written file names the patient only by pseudonym, carries only keyed UIDs
(unless retain_uids), shifted or generalised dates (unless full dates are retained), no
private element outside the allow-list, and says how it was de-identified in
PatientIdentityRemoved, DeidentificationMethod and (0012,0064).
"""

from __future__ import annotations

import io
import re
import struct
import warnings
from collections import Counter
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import cast

import pydicom
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.pixels.utils import get_expected_length
from pydicom.sequence import Sequence
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID

from tre.policy.datasets import BurnedInTextHandling, DateHandling, DicomOption
from tre.pseudonym import PatientIdError

from . import burned_in
from .context import IngestContext
from .dicom_profile import (
    PROFILE_SOURCE,
    TEXT_VRS,
    Action,
    CompiledProfile,
    SafePrivate,
    compile_profile,
    dummy_value,
    raw_text,
)
from .errors import InputRejected

LABEL = "dicom"
STANDARD_UID_ROOT = "1.2.840.10008."
"""UIDs the standard defines (SOP classes, transfer syntaxes, well-known frames of
reference) identify no one and are never remapped."""

OPTION_CODES: dict[DicomOption, Code] = {
    DicomOption.clean_graphics: codes.DCM.CleanGraphicsOption,
    DicomOption.clean_structured_content: codes.DCM.CleanStructuredContentOption,
    DicomOption.clean_descriptors: codes.DCM.CleanDescriptorsOption,
    DicomOption.retain_longitudinal_full_dates: (
        codes.DCM.RetainLongitudinalTemporalInformationFullDatesOption
    ),
    DicomOption.retain_longitudinal_modified_dates: (
        codes.DCM.RetainLongitudinalTemporalInformationModifiedDatesOption
    ),
    DicomOption.retain_patient_characteristics: codes.DCM.RetainPatientCharacteristicsOption,
    DicomOption.retain_device_identity: codes.DCM.RetainDeviceIdentityOption,
    DicomOption.retain_uids: codes.DCM.RetainUidsOption,
    DicomOption.retain_safe_private: codes.DCM.RetainSafePrivateOption,
    DicomOption.retain_institution_identity: codes.DCM.RetainInstitutionIdentityOption,
}

# Counter kinds in the manifest: short and free of identifiers.
REMOVED = "dicom: attributes removed"
PRIVATE = "dicom: private elements"
EMPTIED = "dicom: attributes emptied"
DUMMIED = "dicom: attributes given dummy values"
UIDS = "dicom: UIDs remapped"
PSEUDONYMISED = "dicom: patient ids and names pseudonymised"
MASKED = "dicom: images masked"
TRIMMED = "dicom: pixel data cut to the image size"

PATIENT_ID = 0x00100020
PATIENT_NAME = 0x00100010
SOP_CLASS_UID = 0x00080016
SOP_INSTANCE_UID = 0x00080018
PIXEL_DATA = 0x7FE00010
_PATH_UIDS = (
    ("StudyInstanceUID", 0x0020000D),
    ("SeriesInstanceUID", 0x0020000E),
    ("SOPInstanceUID", SOP_INSTANCE_UID),
)
_IMAGE_TAGS = (0x00280002, 0x00280004, 0x00280008, 0x00280010, 0x00280011, 0x00280100)
"""SamplesPerPixel, PhotometricInterpretation, NumberOfFrames, Rows, Columns, BitsAllocated."""
_NATIVE_SYNTAXES = frozenset(
    {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"}
)
_UNDEFINED_LENGTH = 0xFFFFFFFF
_PARSE_ERRORS = (
    ValueError,
    TypeError,
    KeyError,
    AttributeError,
    IndexError,
    EOFError,
    OverflowError,
    NotImplementedError,
    struct.error,
)
_DA = re.compile(r"(\d{4})\.?(\d{2})\.?(\d{2})")
_DT = re.compile(r"(\d{4})(\d{2})(\d{2})(\d{0,6}(?:\.\d{1,6})?)([+-]\d{4})?")


def ingest(ctx: IngestContext) -> None:
    """De-identify every file under `ctx.source_dir` into the version being staged."""
    deidentifier = DicomDeidentifier(ctx)
    ctx.report.tools["pydicom"] = pydicom.__version__
    ctx.report.tools["dicom confidentiality profile"] = PROFILE_SOURCE
    ctx.process(source_files(ctx.source_dir), LABEL, deidentifier.ingest_file)


def source_files(source_dir: Path) -> Iterator[Path]:
    """Every file below `source_dir` (DICOM files often have no extension)."""
    return (p for p in source_dir.rglob("*") if p.is_file())


class DicomDeidentifier:
    """De-identifies one file at a time for one ingest run (profile compiled once)."""

    def __init__(self, ctx: IngestContext) -> None:
        self.ctx = ctx
        options = ctx.options
        self.dates = DateHandling(options.dates)
        self.profile: CompiledProfile = compile_profile(
            options.dicom_options,
            dates_shifted=self.dates is DateHandling.shift,
            safe_private_tags=options.safe_private_tags,
        )
        self.dates_kind = (
            "dicom: dates shifted"
            if self.dates is DateHandling.shift
            else "dicom: dates generalised"
        )
        self._uids: dict[str, str] = {}
        self._targets: set[str] = set()
        self._method: dict[tuple[bool, bool, bool], list[RawDataElement]] = {}

    # -- one file -------------------------------------------------------------------

    def ingest_file(self, path: Path) -> None:
        """Read, de-identify and write (or quarantine) one source file."""
        data = self.ctx.read_source(path)
        with warnings.catch_warnings():
            # pydicom warns about source values that break VR rules; they are
            # de-identified like any other value, and must not stop the run.
            warnings.simplefilter("ignore")
            self._ingest(path, data)

    def _ingest(self, path: Path, data: bytes) -> None:
        # The patient is admitted first: an opted-out patient's file is skipped before any
        # check, even if broken, so that no reject in the record points at them.
        ds = read_dicom(path, data)
        patient_id = _patient_id(path, ds)
        try:
            pseudonym = self.ctx.admit(patient_id, source=path, where="PatientID (0010,0020)")
        except PatientIdError:
            raise InputRejected(path, "PatientID (0010,0020) is missing or empty") from None
        if pseudonym is None:
            return  # opted out: nothing of this patient leaves ingest
        expected = check_complete(path, ds)
        finding = burned_in.assess(ds)
        relative = self._target(path, ds, pseudonym)
        counts: Counter[str] = Counter()
        try:
            if expected is not None and trim_pixel_data(ds, expected):
                counts[TRIMMED] += 1
            self.deidentify(ds, patient_id, pseudonym, counts)
        except _PARSE_ERRORS as exc:
            raise InputRejected(path, f"cannot be parsed as DICOM ({type(exc).__name__})") from exc
        masked = False
        mask_mode = self.ctx.options.burned_in_text == BurnedInTextHandling.mask
        problem = finding.mask_problem if finding is not None else None
        if finding is not None and problem is None and mask_mode:
            try:
                burned_in.mask(ds, finding)
                masked = True
                counts[MASKED] += 1
            except (ValueError, IndexError):
                problem = "the pixel data do not fit the masking rule"
        self._describe(ds, masked=masked)
        encoded = encode(ds)
        if finding is not None and not masked:
            why = finding.reason + (f"; not masked: {problem}" if mask_mode else "")
            self.ctx.quarantine(relative, encoded, why)
        else:
            self.ctx.output(relative).write_bytes(encoded)
        self._count(counts)

    def _target(self, path: Path, ds: Dataset, pseudonym: str) -> str:
        parts = []
        for keyword, tag in _PATH_UIDS:
            uid = raw_text(ds.get_item(tag)).strip("\0 ")
            if not uid:
                raise InputRejected(path, f"{keyword} is missing or empty")
            parts.append(self._remap(uid, force=True))
        relative = f"{pseudonym}/{parts[0]}/{parts[1]}/{parts[2]}.dcm"
        if relative in self._targets:
            raise InputRejected(path, "has the same SOPInstanceUID as another source file")
        self._targets.add(relative)
        return relative

    def _count(self, counts: Counter[str]) -> None:
        report = self.ctx.report
        for kind, n in counts.items():
            if kind in (REMOVED, PRIVATE):
                report.removed[kind] += n
            else:
                report.changed[kind] += n

    # -- the profile ------------------------------------------------------------------

    def deidentify(
        self, ds: Dataset, patient_id: str, pseudonym: str, counts: Counter[str]
    ) -> None:
        """Apply the compiled profile to `ds` at every nesting level, then pseudonymise."""
        self._clean(ds, patient_id, counts)
        ds[PATIENT_ID] = DataElement(PATIENT_ID, "LO", pseudonym)
        ds[PATIENT_NAME] = DataElement(PATIENT_NAME, "PN", pseudonym)
        counts[PSEUDONYMISED] += 1
        # A new file meta group drops source AE titles and private file meta; a zero
        # preamble drops whatever the source put there (a TIFF header, say).
        meta = FileMetaDataset()
        meta.FileMetaInformationGroupLength = 0  # computed on writing
        meta.FileMetaInformationVersion = b"\0\1"
        meta.MediaStorageSOPClassUID = UID(raw_text(ds.get_item(SOP_CLASS_UID)))
        meta.MediaStorageSOPInstanceUID = UID(raw_text(ds.get_item(SOP_INSTANCE_UID)))
        meta.TransferSyntaxUID = ds.file_meta.TransferSyntaxUID
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        meta.ImplementationVersionName = f"PYDICOM {pydicom.__version__}"[:16]
        ds.file_meta = meta
        ds.preamble = b"\0" * 128

    def _clean(self, ds: Dataset, patient_id: str, counts: Counter[str]) -> None:
        rule_for = self.profile.rule
        private: list[int] = []
        for tag in list(ds.keys()):
            if tag >> 16 & 1:
                private.append(tag)
                continue
            rule = rule_for(tag)
            action = rule.action
            if action is Action.KEEP:
                continue
            if action is Action.REMOVE:
                del ds[tag]
                counts[REMOVED] += 1
                continue
            if action is Action.RECURSE:
                for item in ds[tag].value or ():
                    self._clean(item, patient_id, counts)
                continue
            element = ds.get_item(tag)
            text = raw_text(element)
            if action is Action.UID:
                if text:
                    values = [self._remap(v) for v in text.split("\\")]
                    _set_text(ds, tag, element, values, vr=rule.vr, pad=b"\0")
                    counts[UIDS] += len(values)
                continue
            if action is Action.DATE:
                if not text:
                    continue
                vr = rule.vr or ds[tag].VR
                moved = [self._move_date(vr, v, patient_id) for v in text.split("\\")]
                if None not in moved:
                    _set_text(ds, tag, element, cast(list[str], moved), vr=vr, pad=b" ")
                    counts[self.dates_kind] += len(moved)
                    continue
                action = rule.fallback
            _replace(ds, tag, element, action, vr=rule.vr, counts=counts)
        if private:
            self._drop_private(ds, private, counts)

    def _remap(self, uid: str, *, force: bool = False) -> str:
        uid = uid.strip("\0 ")
        if not uid or (uid.startswith(STANDARD_UID_ROOT) and not force):
            return uid
        new = self._uids.get(uid)
        if new is None:
            new = self._uids[uid] = self.ctx.keys.uids.remap(uid)
        return new

    def _move_date(self, vr: str, text: str, patient_id: str) -> str | None:
        text = text.strip()
        match = (_DA if vr == "DA" else _DT).fullmatch(text)
        if match is None:
            return None
        try:
            day = date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
            new = self.ctx.transform_date(day, patient_id)
        except ValueError:
            return None  # not a calendar date, or shifted out of range
        ymd = f"{new.year:04d}{new.month:02d}{new.day:02d}"
        if vr == "DA":
            return ymd
        # DT: keep the time of day when shifting by whole days, drop the UTC offset
        # (a hint of place); a generalised DT keeps only the precision it claims.
        if self.dates is DateHandling.shift:
            return ymd + match.group(4)
        return ymd[:6] if self.dates is DateHandling.month else ymd[:4]

    def _drop_private(self, ds: Dataset, tags: list[int], counts: Counter[str]) -> None:
        keep: set[int] = set()
        safe = self.profile.safe_private
        if safe:
            creators = {
                (t >> 16, t & 0xFF): str(ds[t].value).strip()
                for t in tags
                if 0x10 <= t & 0xFFFF <= 0xFF
            }
            for t in tags:
                group, element = t >> 16, t & 0xFFFF
                creator = creators.get((group, element >> 8)) if element >= 0x1000 else None
                if creator is not None and SafePrivate(creator, group, element & 0xFF) in safe:
                    keep.update((t, group << 16 | element >> 8))
        for t in tags:
            if t not in keep:
                del ds[t]
                counts[PRIVATE] += 1

    # -- what was done ------------------------------------------------------------------

    def _describe(self, ds: Dataset, *, masked: bool) -> None:
        """Say how `ds` was de-identified, with elements encoded once per run and transfer
        syntax (a new sequence costs more to write than the rest of a small file)."""
        syntax = ds.file_meta.TransferSyntaxUID
        key = (syntax.is_implicit_VR, syntax.is_little_endian, masked)
        elements = self._method.get(key)
        if elements is None:
            made = _method_elements(self.profile, masked=masked)
            elements = self._method[key] = _encoded(made, implicit=key[0], little=key[1])
        for element in elements:
            ds[element.tag] = element  # immutable, so shared between files


def read_dicom(path: Path, data: bytes) -> Dataset:
    """Parse a DICOM Part 10 file, or reject it without quoting its content."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = pydicom.dcmread(io.BytesIO(data), force=False)
    except InvalidDicomError:
        raise InputRejected(path, "not a DICOM file (no DICM prefix after the preamble)") from None
    except _PARSE_ERRORS as exc:
        raise InputRejected(path, f"cannot be parsed as DICOM ({type(exc).__name__})") from exc
    if any(str(w.message).startswith("End of file reached") for w in caught):
        # pydicom stops at the end of the data and keeps what it read (sometimes nothing)
        raise InputRejected(path, "is truncated: the file ends inside a sequence or pixel data")
    if not ds.keys():
        raise InputRejected(path, "holds no data set")
    _match_declared_encoding(ds)
    return ds


def _match_declared_encoding(ds: Dataset) -> None:
    """Some writers declare explicit VR and write implicit VR (pydicom reads both); such
    raw elements cannot be copied into the declared syntax, so convert them all."""
    syntax = ds.file_meta.get("TransferSyntaxUID")
    first = ds.get_item(next(iter(ds.keys())))
    if (
        isinstance(first, RawDataElement)
        and syntax is not None
        and syntax.is_transfer_syntax
        and first.is_implicit_VR != syntax.is_implicit_VR
    ):
        for tag in list(ds.keys()):
            ds[tag]  # converting is the point


def check_complete(path: Path, ds: Dataset) -> int | None:
    """Reject a file that ends inside an element or whose native pixel data are short;
    return the length native pixel data should have (None if not native)."""
    if not ds.file_meta.get("TransferSyntaxUID"):
        raise InputRejected(path, "file meta information has no TransferSyntaxUID")
    if not raw_text(ds.get_item(SOP_CLASS_UID)):
        raise InputRejected(path, "SOPClassUID is missing or empty (not a stored instance)")
    last = ds.get_item(list(ds.keys())[-1])  # the last element read
    if (
        isinstance(last, RawDataElement)
        and last.length != _UNDEFINED_LENGTH
        and isinstance(last.value, bytes)
        and len(last.value) < last.length
    ):
        raise InputRejected(path, "is truncated: the file ends inside an element")
    if PIXEL_DATA not in ds or str(ds.file_meta.TransferSyntaxUID) not in _NATIVE_SYNTAXES:
        return None  # encapsulated (compressed) frames have no fixed length
    image = Dataset()  # a copy of the image attributes, converted there, not in `ds`
    for tag in _IMAGE_TAGS:
        if (item := ds.get_item(tag)) is not None:
            image[tag] = item
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an invalid value is reported below instead
            expected = get_expected_length(image, "bytes")
    except _PARSE_ERRORS:
        expected = None
    if not isinstance(expected, int) or expected <= 0:
        raise InputRejected(path, "pixel data without valid Rows, Columns, Bits or frames")
    actual = _pixel_length(ds)
    if actual < expected:
        raise InputRejected(
            path,
            f"is truncated: pixel data hold {actual} bytes, Rows x Columns x samples x "
            f"bits allocated x frames needs {expected}",
        )
    return expected


def trim_pixel_data(ds: Dataset, expected: int) -> int:
    """Drop bytes after the last frame (they could hold anything); the number dropped."""
    padded = expected + expected % 2
    excess = _pixel_length(ds) - padded
    if excess <= 0:
        return 0
    ds.PixelData = ds.PixelData[:expected] + b"\0" * (expected % 2)
    return excess


def encode(ds: Dataset) -> bytes:
    """The dataset as a DICOM Part 10 file, in its own transfer syntax (the complete file
    meta group is built by `deidentify`, so pydicom need not re-validate it)."""
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds)
    return buffer.getvalue()


def _patient_id(path: Path, ds: Dataset) -> str:
    """PatientID decoded in the file's character set (converted: it is replaced anyway)."""
    try:
        return str(ds[PATIENT_ID].value or "") if PATIENT_ID in ds else ""
    except _PARSE_ERRORS:
        raise InputRejected(path, "PatientID (0010,0020) cannot be decoded") from None


def _pixel_length(ds: Dataset) -> int:
    value = getattr(ds.get_item(PIXEL_DATA), "value", None)
    return len(value) if isinstance(value, bytes) else 0


def _replace(
    ds: Dataset,
    tag: int,
    element: DataElement | RawDataElement,
    action: Action,
    *,
    vr: str,
    counts: Counter[str],
) -> None:
    if action is Action.REMOVE:
        del ds[tag]
        counts[REMOVED] += 1
        return
    if action is Action.EMPTY:
        counts[EMPTIED] += 1
        if isinstance(element, RawDataElement):
            ds[tag] = element._replace(value=b"", length=0)  # raw: also empties a sequence
        else:
            ds[tag] = DataElement(tag, element.VR, Sequence() if element.VR == "SQ" else None)
        return
    counts[DUMMIED] += 1
    vr = vr or ds[tag].VR
    value = dummy_value(vr)
    if isinstance(value, str) and vr in TEXT_VRS:
        _set_text(ds, tag, element, [value], vr=vr, pad=b" ")
    else:
        ds[tag] = DataElement(tag, vr, value)


def _set_text(
    ds: Dataset,
    tag: int,
    element: DataElement | RawDataElement,
    values: list[str],
    *,
    vr: str,
    pad: bytes,
) -> None:
    """Give a text element new ASCII values, keeping a raw element raw (copied on writing)."""
    text = "\\".join(values)
    if isinstance(element, RawDataElement):
        data = text.encode("ascii")
        if len(data) % 2:
            data += pad
        ds[tag] = element._replace(value=data, length=len(data))
    else:
        ds[tag] = DataElement(tag, vr or element.VR, values if len(values) > 1 else text)


def _method_elements(profile: CompiledProfile, *, masked: bool) -> list[DataElement]:
    """PatientIdentityRemoved, DeidentificationMethod, its code sequence and (0028,0303)."""
    used = [codes.DCM.BasicApplicationConfidentialityProfile]
    used += [OPTION_CODES[o] for o in profile.claimed_options]
    if masked:
        used.append(codes.DCM.CleanPixelDataOption)
    if DicomOption.retain_longitudinal_full_dates in profile.options:
        temporal = "UNMODIFIED"
    elif DicomOption.retain_longitudinal_modified_dates in profile.options:
        temporal = "MODIFIED"
    else:
        temporal = "REMOVED"
    return [
        DataElement(0x00120062, "CS", "YES"),
        DataElement(0x00120063, "LO", [c.meaning for c in used]),
        DataElement(0x00120064, "SQ", Sequence([_code_item(c) for c in used])),
        DataElement(0x00280303, "CS", temporal),
    ]


def _encoded(elements: list[DataElement], *, implicit: bool, little: bool) -> list[RawDataElement]:
    """`elements` as raw elements in one encoding, as if read from a file (pydicom copies
    raw elements when writing instead of encoding them again)."""
    holder = Dataset()
    for element in elements:
        holder[element.tag] = element
    buffer = DicomBytesIO()
    buffer.is_implicit_VR, buffer.is_little_endian = implicit, little
    write_dataset(buffer, holder)
    raw = read_dataset(io.BytesIO(buffer.getvalue()), implicit, little)
    return [cast(RawDataElement, raw.get_item(element.tag)) for element in elements]


def _code_item(code: Code) -> Dataset:
    item = Dataset()
    item.CodeValue = code.value
    item.CodingSchemeDesignator = code.scheme_designator
    item.CodeMeaning = code.meaning
    return item
