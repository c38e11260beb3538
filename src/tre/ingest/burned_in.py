"""Which DICOM images may carry burned-in text, and masking where a rule is known.

Invariant: a file that any rule flags is never released as it came: either a masking
rule covers every reason it was flagged for and the pixels are masked, or the caller
quarantines it. Rules look only at attributes (no OCR), so they err towards flagging.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels.utils import get_expected_length

from .dicom_profile import raw_text

CAPTURE_SOP_PREFIXES = (
    "1.2.840.10008.5.1.4.1.1.7",  # secondary capture, and its multi-frame variants (.7.x)
    "1.2.840.10008.5.1.4.1.1.104.",  # encapsulated PDF, CDA, STL, ... documents
    "1.2.840.10008.5.1.4.1.1.77.1.",  # visible light: endoscopy, photographs, video
)
TEXT_MODALITIES = frozenset({"US", "XA", "RF", "OT", "SC", "DOC", "ES", "XC", "GM", "SM"})
"""Modalities whose images commonly carry burned-in text (or faces, labels)."""
MASKABLE_MODALITIES = frozenset({"US"})
"""Where a region rule is known: ultrasound keeps only the data regions its
SequenceOfUltrasoundRegions lists (patient, institution and dates sit outside them)."""
CAPTURE_MARKERS = re.compile(
    r"SCREEN|CAPTURE|REPORT|DOSE[ _]?(INFO|REPORT|SUMMARY)|(PATIENT|EXAM) PROTOCOL",
    re.IGNORECASE,
)
"""Words in ImageType or SeriesDescription that mark screen captures and report pages
(GE "SCREEN SAVE", Siemens "CSA REPORT" and "Patient Protocol", Philips "DOSE_INFO");
"low dose" alone is a scan, not a report."""

_OVERLAY_GROUPS = range(0x6000, 0x6020, 2)
MODALITY = 0x00080060
BURNED_IN_ANNOTATION = 0x00280301
SOP_CLASS_UID = 0x00080016
IMAGE_TYPE = 0x00080008
SERIES_DESCRIPTION = 0x0008103E
ULTRASOUND_REGIONS = 0x00186011


@dataclass(frozen=True)
class Finding:
    """Why an image may carry burned-in text, and why masking cannot deal with it (if so)."""

    reasons: tuple[str, ...]
    mask_problem: str | None
    overlays: tuple[int, ...]
    """Overlay groups present (their planes are removed in any case)."""
    embedded_overlays: bool = False
    """Some overlay has no Overlay Data: its bits sit in the pixel data's unused bits."""

    @property
    def maskable(self) -> bool:
        return self.mask_problem is None

    @property
    def reason(self) -> str:
        return "possible burned-in text: " + "; ".join(self.reasons)


def assess(ds: Dataset) -> Finding | None:
    """Flag `ds` (the source dataset, before de-identification) or return None."""
    reasons: list[str] = []
    problems: list[str] = []
    modality = _text(ds, MODALITY).strip().upper()
    if _text(ds, BURNED_IN_ANNOTATION).strip().upper() == "YES":
        reasons.append("BurnedInAnnotation is YES")
    if modality in TEXT_MODALITIES:
        reasons.append(f"modality {modality} often carries burned-in text")
    needs_pixels = bool(reasons)
    if reasons and modality not in MASKABLE_MODALITIES:
        problems.append(f"no masking rule for modality {modality or '(none)'}")
    elif reasons and ULTRASOUND_REGIONS not in ds:
        problems.append("ultrasound without SequenceOfUltrasoundRegions: text area unknown")
    capture = []
    if _text(ds, SOP_CLASS_UID).strip().startswith(CAPTURE_SOP_PREFIXES):
        capture.append("secondary capture, document or photograph SOP class")
    if CAPTURE_MARKERS.search(_text(ds, IMAGE_TYPE)):
        capture.append("ImageType marks a screen capture or report")
    if CAPTURE_MARKERS.search(_text(ds, SERIES_DESCRIPTION)):
        capture.append("SeriesDescription marks a screen capture or report")
    if capture:
        reasons += capture
        problems.append("screen captures, reports and documents are not masked")
    groups = {int(t) >> 16 for t in ds.keys()}  # noqa: SIM118 - iterating ds converts elements
    overlays = tuple(g for g in _OVERLAY_GROUPS if g in groups)
    embedded = False
    if overlays:
        reasons.append("overlay planes present")
        # Overlay bits embedded in the pixel data (no Overlay Data) stay when the
        # overlay group goes, so they must be cleared from the pixels.
        embedded = any((g << 16 | 0x3000) not in ds for g in overlays)
        needs_pixels |= embedded
    if not reasons:
        return None
    if needs_pixels and not _native(ds):
        problems.append("compressed or unusual pixel data cannot be masked here")
    return Finding(tuple(reasons), "; ".join(problems) or None, overlays, embedded)


def mask(ds: Dataset, finding: Finding) -> None:
    """Mask the pixels of a de-identified `ds` as the finding's rules say (call only when
    `finding.maskable`): overlay bits embedded in the pixel data are cleared, and an
    ultrasound image keeps only its data regions."""
    if not finding.maskable:
        raise ValueError("no masking rule covers this image")
    if not _native(ds):
        return  # only separate overlay planes, which de-identification removed
    data = bytearray(ds.PixelData)
    if finding.embedded_overlays:
        _clear_unused_bits(ds, data)
    if str(ds.get("Modality", "")).strip().upper() in MASKABLE_MODALITIES:
        _blank_outside_regions(ds, data)
    ds.PixelData = bytes(data)


def _clear_unused_bits(ds: Dataset, data: bytearray) -> None:
    allocated, stored = int(ds.BitsAllocated), int(ds.BitsStored)
    if allocated not in (16, 32) or stored >= allocated:
        return
    high = int(ds.get("HighBit", stored - 1))
    keep = ((1 << stored) - 1) << (high - stored + 1)
    order = ">" if _big_endian(ds) else "<"
    itemsize = allocated // 8
    pixels = np.frombuffer(data, dtype=f"{order}u{itemsize}", count=len(data) // itemsize)
    pixels &= keep  # in place: the array is a view of `data`


def _blank_outside_regions(ds: Dataset, data: bytearray) -> None:
    rows, cols = int(ds.Rows), int(ds.Columns)
    keep = np.zeros((rows, cols), dtype=bool)
    regions = _values(ds.get("SequenceOfUltrasoundRegions"))
    for region in regions:
        x0, y0 = int(region.RegionLocationMinX0), int(region.RegionLocationMinY0)
        x1, y1 = int(region.RegionLocationMaxX1), int(region.RegionLocationMaxY1)
        keep[max(y0, 0) : y1 + 1, max(x0, 0) : x1 + 1] = True
    samples = int(ds.get("SamplesPerPixel", 1))
    planar = samples > 1 and int(ds.get("PlanarConfiguration", 0)) == 1
    depth = int(ds.BitsAllocated) // 8
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    planes = samples if planar else 1
    per_pixel = depth * (1 if planar else samples)
    count = frames * planes * rows * cols * per_pixel
    pixels = np.frombuffer(data, dtype=np.uint8, count=count)
    pixels.reshape(frames, planes, rows, cols * per_pixel)[
        :, :, ~np.repeat(keep, per_pixel, axis=1)
    ] = 0


def _native(ds: Dataset) -> bool:
    """Uncompressed pixel data whose layout we can address byte by byte."""
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if syntax is None or syntax.is_compressed or "PixelData" not in ds:
        return False
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if int(ds.get("BitsAllocated", 0)) % 8 or (
        photometric.startswith("YBR") and "422" in photometric
    ):
        return False
    try:
        return len(ds.PixelData) >= get_expected_length(ds, "bytes")
    except (AttributeError, KeyError, TypeError, ValueError):
        return False


def _big_endian(ds: Dataset) -> bool:
    return str(ds.file_meta.TransferSyntaxUID) == "1.2.840.10008.1.2.2"


def _text(ds: Dataset, tag: int) -> str:
    return raw_text(ds.get_item(tag))


def _values(value: object) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, Iterable) and not isinstance(value, str | bytes):
        return list(value)
    return [value]
