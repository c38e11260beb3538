"""Burned-in text rules and masking, on real ultrasound, secondary capture and overlay files
shipped by pydicom."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

from tre.ingest import burned_in


def sample(name: str) -> Dataset:
    path = get_testdata_file(name)
    assert path is not None, f"{name} is not in the installed pydicom"
    return pydicom.dcmread(io.BytesIO(Path(path).read_bytes()))


@pytest.mark.parametrize(
    "name", ["CT_small.dcm", "MR_small.dcm", "rtdose.dcm", "liver_1frame.dcm", "4467"]
)
def test_scanner_images_without_text_markers_pass(name: str) -> None:
    # MR_small and the DICOMDIR MR series are DERIVED\SECONDARY reformats and projections:
    # those words alone do not make a screen capture.
    assert burned_in.assess(sample(name)) is None


@pytest.mark.parametrize(
    ("name", "reason", "problem"),
    [
        ("examples_rgb_color.dcm", "modality US", "without SequenceOfUltrasoundRegions"),
        ("examples_jpeg2k.dcm", "modality US", "compressed"),
        ("SC_rgb_small_odd.dcm", "secondary capture", "not masked"),
        ("SC_rgb_jpeg_dcmtk.dcm", "secondary capture", "not masked"),
        ("JPEG2000.dcm", "secondary capture", "not masked"),
        ("image_dfl.dcm", "modality OT", "no masking rule for modality OT"),
    ],
)
def test_text_prone_images_are_flagged_and_say_why_they_cannot_be_masked(
    name: str, reason: str, problem: str
) -> None:
    finding = burned_in.assess(sample(name))
    assert finding is not None
    assert reason in finding.reason
    assert not finding.maskable
    assert finding.mask_problem is not None and problem in finding.mask_problem


def test_attribute_markers_flag_any_modality() -> None:
    ds = sample("CT_small.dcm")
    ds.BurnedInAnnotation = "YES"
    finding = burned_in.assess(ds)
    assert finding is not None and finding.reason.endswith("BurnedInAnnotation is YES")
    assert finding.mask_problem == "no masking rule for modality CT"
    for image_type in (
        ["DERIVED", "SECONDARY", "SCREEN SAVE"],
        ["DERIVED", "SECONDARY", "DOSE INFO"],
    ):
        ds = sample("CT_small.dcm")
        ds.ImageType = image_type
        finding = burned_in.assess(ds)
        assert finding is not None and "ImageType marks a screen capture" in finding.reason
    ds = sample("CT_small.dcm")
    ds.SeriesDescription = "Dose Report"
    assert burned_in.assess(ds) is not None
    ds.SeriesDescription = "LOW DOSE CHEST"  # a scan, not a report
    assert burned_in.assess(ds) is None


def test_an_ultrasound_keeps_only_its_data_regions() -> None:
    ds = sample("examples_palette.dcm")  # a real Philips ultrasound with its header text
    finding = burned_in.assess(ds)
    assert finding is not None and finding.maskable
    before = ds.pixel_array.copy()
    regions = [
        (r.RegionLocationMinX0, r.RegionLocationMinY0, r.RegionLocationMaxX1, r.RegionLocationMaxY1)
        for r in ds.SequenceOfUltrasoundRegions
    ]
    burned_in.mask(ds, finding)
    after = pydicom.dcmread(io.BytesIO(_encoded(ds))).pixel_array
    inside = np.zeros(before.shape, dtype=bool)
    for x0, y0, x1, y1 in regions:
        inside[y0 : y1 + 1, x0 : x1 + 1] = True
    assert before[~inside].any()  # the header (date, time, institution) was there
    assert not after[~inside].any()
    assert (after[inside] == before[inside]).all()


def test_an_overlay_plane_is_flagged_and_maskable_by_removal() -> None:
    ds = sample("examples_overlay.dcm")
    finding = burned_in.assess(ds)
    assert finding is not None
    assert finding.reasons == ("overlay planes present",)
    assert finding.maskable and finding.overlays == (0x6000,)
    assert not finding.embedded_overlays


def test_overlay_bits_embedded_in_the_pixel_data_are_cleared() -> None:
    ds = sample("MR_small.dcm")  # 16 bits allocated, 16 stored: make room for an overlay
    ds.BitsStored, ds.HighBit = 12, 11
    pixels = np.frombuffer(ds.PixelData, dtype="<u2") & 0x0FFF
    ds.PixelData = (pixels | 0x8000).astype("<u2").tobytes()  # overlay in bit 15
    ds.add_new(0x60000010, "US", ds.Rows)
    ds.add_new(0x60000100, "US", 1)
    ds.add_new(0x60000102, "US", 15)  # Overlay Bit Position: no Overlay Data
    finding = burned_in.assess(ds)
    assert finding is not None and finding.embedded_overlays and finding.maskable
    burned_in.mask(ds, finding)
    assert (np.frombuffer(ds.PixelData, dtype="<u2") == pixels).all()


def test_masking_refuses_what_no_rule_covers() -> None:
    ds = sample("SC_rgb_small_odd.dcm")
    finding = burned_in.assess(ds)
    assert finding is not None
    with pytest.raises(ValueError, match="no masking rule"):
        burned_in.mask(ds, finding)


def _encoded(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds)
    return buffer.getvalue()
