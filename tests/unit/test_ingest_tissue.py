"""Tissue image ingest on scikit-image's IHC sample and broken or mislabelled files."""

from __future__ import annotations

import csv
import io
import json
import struct
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from tests.support import DEMO_TODAY, gbm_version_dir, hospital_ids, ingest_for_gbm
from tre.ingest import IngestError, IngestResult, InputRejected, UnknownPatient
from tre.ingest.tissue import ALLOWED_TAGS
from tre.policy import Policy
from tre.pseudonym import OptOutRegister, default_register_path
from tre.settings import Settings

DATASET = "gbm-pathology"
PIXELS = np.random.default_rng(7).integers(0, 256, (96, 128, 3), dtype=np.uint8)
LABEL = np.full((30, 60), 255, dtype=np.uint8)


def run(
    settings: Settings, policy: Policy, source: Path, *, continue_on_error: bool = False
) -> IngestResult:
    return ingest_for_gbm(settings, policy, DATASET, source, continue_on_error=continue_on_error)


def version_dir(settings: Settings) -> Path:
    return gbm_version_dir(settings, DATASET)


def patients(silos: Path) -> list[str]:
    return hospital_ids(silos)


def write_slides_csv(source: Path, rows: list[tuple[str, str, str]]) -> None:
    """slides.csv rows: (slide id, patient id, scanned at)."""
    with (source / "slides.csv").open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(["slide_id", "patient_id", "block", "stain", "cut_on", "scanned_at"])
        for slide, patient, scanned in rows:
            out.writerow([slide, patient, "A1", "H&E", scanned[:10], scanned])


def add_ifd(data: bytes, placeholder: int, pointer_tag: int, entries: dict[int, str]) -> bytes:
    """Append a real IFD of ASCII entries; turn tag `placeholder` into `pointer_tag` to it.

    tifffile refuses to write EXIF/GPS pointers, so a placeholder tag numbered just above
    (keeping the IFD's order) is written and then patched, as a scanner would have written it.
    """
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        page = tif.pages[0]
        assert isinstance(page, tifffile.TiffPage)
        slot = page.tags[placeholder].valueoffset
    start = len(data) + len(data) % 2
    values = [text.encode() + b"\0" for text in entries.values()]
    ifd = struct.pack("<H", len(entries))
    offset = start + 2 + 12 * len(entries) + 4
    for code, value in zip(entries, values, strict=True):
        ifd += struct.pack("<HHII", code, 2, len(value), offset)
        offset += len(value)
    ifd += b"\0\0\0\0" + b"".join(values)
    patched = bytearray(data + b"\0" * (start - len(data)) + ifd)
    patched[slot - 8 : slot - 6] = struct.pack("<H", pointer_tag)
    patched[slot : slot + 4] = struct.pack("<I", start)
    return bytes(patched)


def identifying_slide(mrn: str) -> bytes:
    """A slide as a scanner exports it: ids in tags, EXIF, GPS, XMP, IPTC, a private tag,
    then a label, a macro, a thumbnail and an unexplained extra page."""
    out = io.BytesIO()
    with tifffile.TiffWriter(out) as tif:
        tif.write(
            PIXELS,
            photometric="rgb",
            compression="zlib",
            description=f"Aperio Image Library v12 |MPP = 0.25|Patient = Doe^Jane|MRN = {mrn}",
            datetime="2022:05:25 18:55:26",
            software="C:\\Scanner\\scan.exe",
            metadata=None,
            extratags=[
                (315, "s", 0, "Dr. Who", True),
                (316, "s", 0, "pathpc-01", True),
                (269, "s", 0, f"\\\\share\\{mrn}.svs", True),
                (285, "s", 0, mrn, True),
                (700, "B", 0, f"<x:xmpmeta>{mrn}</x:xmpmeta>".encode(), True),
                (33723, "B", 0, f"IPTC {mrn}".encode(), True),
                (65000, "s", 0, f"private {mrn}", True),
                (34666, "I", 1, 0, True),  # becomes the EXIF IFD pointer (34665)
                (34854, "I", 1, 0, True),  # becomes the GPS IFD pointer (34853)
            ],
        )
        for description in (f"label {mrn}", f"macro {mrn}", "thumbnail", "stain key"):
            tif.write(LABEL, photometric="minisblack", description=description, metadata=None)
    data = add_ifd(out.getvalue(), 34666, 34665, {0xA430: f"owner {mrn}", 0x9003: "2022:05:25"})
    return add_ifd(data, 34854, 34853, {0x001D: "2022:05:25", 0x001B: f"{mrn} gps"})


def plain_slide() -> bytes:
    out = io.BytesIO()
    tifffile.imwrite(out, PIXELS, photometric="rgb", metadata=None)
    return out.getvalue()


def page_tags(data: bytes) -> list[dict[int, Any]]:
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        return [{t.code: t.value for t in p.tags} for p in tif.pages]


# -- what is kept and what is removed --------------------------------------------------------


def test_only_structural_tags_and_the_main_image_are_released(
    tre_site: Settings, demo_policy: Policy, demo_silos: Path, tmp_path: Path
) -> None:
    mrn = patients(demo_silos)[0]
    source = tmp_path / "src"
    source.mkdir()
    data = identifying_slide(mrn)
    tags = page_tags(data)[0]
    assert isinstance(tags[34665], dict) and isinstance(tags[34853], dict)  # real IFDs
    (source / f"S22-00001_{mrn}_20220525T185526.tif").write_bytes(data)
    write_slides_csv(source, [("S22-00001", mrn, "2022-05-25T18:55:26")])

    result = run(tre_site, demo_policy, source)

    (slide,) = [f.path for f in result.manifest.files if f.path.endswith(".tif")]
    pseudonym = slide.split("/")[0]
    assert slide == f"{pseudonym}/{pseudonym}_slide1.tif"
    written = (result.version_dir / slide).read_bytes()
    for needle in (mrn, "Doe", "Who", "pathpc", "share", "Scanner", "2022", "xmpmeta", "IPTC"):
        assert needle.encode() not in written
    (tags,) = page_tags(written)
    assert set(tags) <= set(ALLOWED_TAGS)
    assert tags[296] == 3 and tags[282] == (40000, 1), "MPP 0.25 kept as 40,000 px/cm"
    with tifffile.TiffFile(io.BytesIO(written)) as tif:
        assert np.array_equal(tif.pages[0].asarray(), PIXELS)
    removed = result.manifest.removed["tiff: tags not on the allow-list"]
    assert removed == len(page_tags(data)[0]) - len(
        {c for c in page_tags(data)[0] if c in ALLOWED_TAGS}
    )


def test_label_macro_thumbnail_and_extra_pages_are_quarantined(
    tre_site: Settings, demo_policy: Policy, demo_silos: Path, tmp_path: Path
) -> None:
    mrn = patients(demo_silos)[1]
    source = tmp_path / "src"
    source.mkdir()
    (source / f"S22-00002_{mrn}.tif").write_bytes(identifying_slide(mrn))
    write_slides_csv(source, [("S22-00002", mrn, "2022-05-25T18:55:26")])

    result = run(tre_site, demo_policy, source)

    record = json.loads(result.record_path.read_text())
    kinds = {Path(e["source"]).stem.split("-")[-1]: e["reason"] for e in record["quarantined"]}
    assert set(kinds) == {"label", "macro", "thumbnail", "image"}
    assert "label" in kinds["label"] and "not known" in kinds["image"]
    assert result.manifest.counts.quarantined == 4
    assert len([f for f in result.manifest.files if f.path.endswith(".tif")]) == 1
    quarantine = tre_site.var_dir / "quarantine" / "gbm-linkage" / DATASET / "1"
    for entry in record["quarantined"]:
        held = (quarantine / entry["source"]).read_bytes()
        assert mrn.encode() not in held
        with tifffile.TiffFile(io.BytesIO(held)) as tif:
            assert np.array_equal(tif.pages[0].asarray(), LABEL)


def test_slides_are_numbered_by_scan_time_and_dates_shifted(
    tre_site: Settings, demo_policy: Policy, demo_silos: Path, tmp_path: Path
) -> None:
    mrn = patients(demo_silos)[2]
    source = tmp_path / "src"
    source.mkdir()
    rows = [("S23-00009", mrn, "2023-02-01T09:00:00"), ("S22-00010", mrn, "2022-11-30T16:30:00")]
    for slide, _, _ in rows:
        (source / f"{slide}.tif").write_bytes(plain_slide())
    write_slides_csv(source, rows)

    result = run(tre_site, demo_policy, source)

    table = list(csv.DictReader(io.StringIO((result.version_dir / "slides.csv").read_text())))
    assert [r["slide"] for r in table] == ["1", "2"]
    first, second = (datetime.fromisoformat(r["scanned_at"]) for r in table)
    assert second - first == datetime(2023, 2, 1, 9) - datetime(2022, 11, 30, 16, 30)
    assert first != datetime(2022, 11, 30, 16, 30)
    assert not any(slide in (result.version_dir / "slides.csv").read_text() for slide, _, _ in rows)


def test_an_opted_out_patient_leaves_no_slide_and_no_quarantine(
    tre_site: Settings, demo_policy: Policy, demo_silos: Path, tmp_path: Path
) -> None:
    kept, opted = patients(demo_silos)[3:5]
    OptOutRegister(default_register_path(tre_site.keys_dir)).record_opt_out(
        opted, recorded_by="test", effective=DEMO_TODAY
    )
    source = tmp_path / "src"
    source.mkdir()
    (source / f"S1_{kept}.tif").write_bytes(plain_slide())
    (source / f"S2_{opted}.tif").write_bytes(identifying_slide(opted))
    write_slides_csv(source, [("S1", kept, ""), ("S2", opted, "")])

    result = run(tre_site, demo_policy, source)

    assert result.manifest.counts.excluded_opt_out == 1
    assert result.manifest.counts.patients == 1
    assert result.manifest.counts.quarantined == 0
    assert not (tre_site.var_dir / "quarantine" / "gbm-linkage" / DATASET / "1").exists()


# -- bad input --------------------------------------------------------------------------------


def _demo_slide(silos: Path) -> tuple[str, str, bytes]:
    """(slide id, patient id, bytes) of the first slide of the demo pathology silo."""
    with (silos / "pathology" / "slides.csv").open(encoding="utf-8") as handle:
        row = next(csv.DictReader(handle))
    return row["slide_id"], row["patient_id"], (silos / row["file"]).read_bytes()


CASES = {
    "truncated": ("truncated", lambda d: d[: len(d) // 2], None, None),
    "cut in the header": ("not a readable TIFF", lambda d: d[:100], None, None),
    "not a tiff": ("not a readable TIFF", lambda d: b"\x89PNG\r\n\x1a\n" + d[8:], None, None),
    "slide not in slides.csv": ("not in slides.csv", lambda d: d, "S99-99999", None),
    "ids disagree": ("differs from slides.csv", lambda d: d, None, "other"),
    "wrong extension": ("not a TIFF file name", lambda d: d, None, ".png"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_rejected_and_nothing_written(
    tre_site: Settings, demo_policy: Policy, demo_silos: Path, tmp_path: Path, case: str
) -> None:
    problem, mangle, other_slide, variant = CASES[case]
    slide, mrn, data = _demo_slide(demo_silos)
    other = patients(demo_silos)[-1] if patients(demo_silos)[-1] != mrn else patients(demo_silos)[0]
    source = tmp_path / "src"
    source.mkdir()
    name_patient = other if variant == "other" else mrn
    extension = variant if variant and variant.startswith(".") else ".tif"
    path = source / f"{other_slide or slide}_{name_patient}_20220525T185526{extension}"
    path.write_bytes(mangle(data))
    write_slides_csv(source, [(slide, mrn, "2022-05-25T18:55:26")])

    with pytest.raises(InputRejected) as caught:
        run(tre_site, demo_policy, source)

    assert caught.value.path == path
    assert problem in caught.value.problem
    assert mrn not in caught.value.problem and slide not in caught.value.problem
    assert not version_dir(tre_site).exists()


def test_a_patient_unknown_to_the_hospital_is_rejected(
    tre_site: Settings, demo_policy: Policy, tmp_path: Path
) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "S1.tif").write_bytes(plain_slide())
    write_slides_csv(source, [("S1", "MRN0000000", "")])
    with pytest.raises(UnknownPatient):
        run(tre_site, demo_policy, source)


def test_a_source_without_slides_csv_is_refused(
    tre_site: Settings, demo_policy: Policy, tmp_path: Path
) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "S1.tif").write_bytes(plain_slide())
    with pytest.raises(IngestError, match=r"slides\.csv"):
        run(tre_site, demo_policy, source)
    assert not version_dir(tre_site).exists()


def test_continue_on_error_ingests_the_good_and_lists_the_bad(
    tre_site: Settings, demo_policy: Policy, demo_silos: Path, tmp_path: Path
) -> None:
    good, bad = patients(demo_silos)[5:7]
    source = tmp_path / "src"
    source.mkdir()
    (source / f"S1_{good}.tif").write_bytes(plain_slide())
    (source / f"S2_{bad}.tif").write_bytes(b"II*\0 not really")
    (source / f"S3_{bad}.tif").write_bytes(plain_slide())
    write_slides_csv(source, [("S1", good, ""), ("S2", bad, ""), ("S3", good, "")])

    result = run(tre_site, demo_policy, source, continue_on_error=True)

    assert result.manifest.counts.rejected == 2
    assert result.manifest.counts.patients == 1
    assert [p.problem for p in result.manifest.rejected] == [
        "the TIFF holds no image",
        "the hospital id in the file name differs from slides.csv's patient",
    ]
    record = json.loads(result.record_path.read_text())
    assert [r["source"] for r in record["rejected"]] == [f"S2_{bad}.tif", f"S3_{bad}.tif"]
    assert bad not in (result.version_dir / "MANIFEST.json").read_text()
