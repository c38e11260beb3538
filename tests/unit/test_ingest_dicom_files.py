"""Which source files DICOM ingest refuses, and why (in words that quote nothing from them),
on pydicom's own broken sample files and on truncations of good ones."""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from tre.ingest.dicom import check_complete, read_dicom, trim_pixel_data
from tre.ingest.errors import InputRejected

NAME = Path("silo/MRN0000001/AZD1/001/IM00001")


def sample_bytes(name: str) -> bytes:
    path = get_testdata_file(name)
    assert path is not None, f"{name} is not in the installed pydicom"
    return Path(path).read_bytes()


def rejection(data: bytes) -> str:
    with pytest.raises(InputRejected) as caught:
        check_complete(NAME, read_dicom(NAME, data))
    assert caught.value.path == NAME
    return caught.value.problem


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"PATIENT: Jansen, Piet\n", "not a DICOM file (no DICM prefix after the preamble)"),
        (bytes(128) + b"DICM", "holds no data set"),
        (sample_bytes("MR_truncated.dcm"), "is truncated: the file ends inside an element"),
        (sample_bytes("rtplan_truncated.dcm"), "is truncated: the file ends inside an element"),
        (
            sample_bytes("MR_small_jp2klossless.dcm")[:-500],
            "is truncated: the file ends inside a sequence or pixel data",
        ),
        (sample_bytes("DICOMDIR"), "SOPClassUID is missing or empty (not a stored instance)"),
        (sample_bytes("badVR.dcm"), "pixel data without valid Rows, Columns, Bits or frames"),
    ],
)
def test_broken_files_are_rejected_with_a_problem_that_quotes_nothing(
    data: bytes, problem: str
) -> None:
    assert rejection(data) == problem


def test_pixel_data_shorter_than_the_image_is_truncation() -> None:
    ds = pydicom.dcmread(io.BytesIO(sample_bytes("CT_small.dcm")))
    ds.PixelData = ds.PixelData[:-1000]  # a well-formed element with too few pixels
    buffer = io.BytesIO()
    ds.save_as(buffer)
    assert rejection(buffer.getvalue()) == (
        "is truncated: pixel data hold 31768 bytes, Rows x Columns x samples x bits "
        "allocated x frames needs 32768"
    )


def test_bytes_after_the_last_frame_are_cut() -> None:
    ds = read_dicom(NAME, sample_bytes("MR_small_padded.dcm"))
    expected = check_complete(NAME, ds)
    assert expected == 64 * 64 * 2
    assert trim_pixel_data(ds, expected) == 128
    assert len(ds.PixelData) == expected
    assert trim_pixel_data(ds, expected) == 0


def test_compressed_pixel_data_are_not_measured() -> None:
    ds = read_dicom(NAME, sample_bytes("MR_small_jp2klossless.dcm"))
    assert check_complete(NAME, ds) is None
