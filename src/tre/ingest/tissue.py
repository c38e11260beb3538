"""Tissue image ingest: scanned slides `<slide id>_<hospital id>_<scan time>.tif` + `slides.csv`.

Invariant: an output slide `<pseudonym>/<pseudonym>_slide<n>.tif` holds only the main
image's pixels, unchanged, and only the structural TIFF tags in `ALLOWED_TAGS` (checked
on the written file); label, macro, thumbnail and any other extra image never reach
the version — they are quarantined for review. A slide whose patient is not the same in
its file name and in `slides.csv` is refused.

tifffile decodes and writes the images (zlib, no timestamp, no software tag), so the
output bytes depend on the pixels and the key alone. `slides.csv` in the version lists
each slide's pseudonym, number, block, stain and dates (shifted or generalised).
"""

from __future__ import annotations

import csv
import io
import re
import zlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import tifffile
from numpy.typing import NDArray

from .context import IngestContext
from .errors import IngestError, InputRejected
from .linkage import read_linkage_table

SLIDES_CSV = "slides.csv"
EXTENSIONS = frozenset({".tif", ".tiff", ".svs"})
SCAN_TIME = re.compile(r"[0-9]{8}(?:T[0-9]{4,6})?")
"""The optional last part of a file name: when the slide was scanned (dropped)."""

ALLOWED_TAGS: dict[int, str] = {
    256: "ImageWidth",
    257: "ImageLength",
    258: "BitsPerSample",
    259: "Compression",
    262: "PhotometricInterpretation",
    273: "StripOffsets",
    277: "SamplesPerPixel",
    278: "RowsPerStrip",
    279: "StripByteCounts",
    282: "XResolution",
    283: "YResolution",
    284: "PlanarConfiguration",
    296: "ResolutionUnit",
    317: "Predictor",
    320: "ColorMap",
    322: "TileWidth",
    323: "TileLength",
    324: "TileOffsets",
    325: "TileByteCounts",
    338: "ExtraSamples",
    339: "SampleFormat",
}
"""Every tag an output TIFF may carry: what a reader needs to decode the pixels, and the
physical resolution. Everything else (ImageDescription, DateTime, Artist, HostComputer,
DocumentName, PageName, Software, EXIF/GPS IFDs, XMP, IPTC, ICC profiles, private and
vendor tags, SubIFDs) is dropped."""

PHOTOMETRICS = frozenset(
    {
        tifffile.PHOTOMETRIC.MINISWHITE,
        tifffile.PHOTOMETRIC.MINISBLACK,
        tifffile.PHOTOMETRIC.RGB,
        tifffile.PHOTOMETRIC.PALETTE,
        tifffile.PHOTOMETRIC.SEPARATED,
    }
)
_REASONS = {
    "label": "slide label image: may show the patient's name, ids or a barcode",
    "macro": "macro (overview) image of the whole slide: may show its label",
    "thumbnail": "thumbnail of the whole slide: may show its label",
    "image": "additional image in the file: not known to be free of identifiers",
}
_MPP = re.compile(r"\bMPP\s*=\s*([0-9]*\.?[0-9]+)")
"""Aperio's microns per pixel, kept as a resolution when the description is dropped."""


@dataclass(frozen=True)
class SlideRow:
    """One row of the hospital's `slides.csv`."""

    slide_id: str
    patient_id: str
    block: str
    stain: str
    cut_on: str
    scanned_at: str


@dataclass(frozen=True)
class SlideFile:
    path: Path
    row: SlideRow


@dataclass(frozen=True)
class Page:
    """One decoded image and what a clean copy needs to be written."""

    pixels: NDArray[Any]
    options: dict[str, Any]
    dropped_tags: int


def ingest(ctx: IngestContext) -> None:
    """Ingest every TIFF of the source folder, one output slide each."""
    table = ctx.source_dir / SLIDES_CSV
    rows = read_slides(ctx, table)
    paths = sorted(p for p in ctx.source_dir.rglob("*") if p.is_file() and p != table)
    slides, problems = plan_slides(paths, rows)
    numbers = number_slides(slides.values())
    written: list[tuple[str, int, SlideRow]] = []

    def one(path: Path) -> None:
        if path in problems:
            raise problems[path]
        slide = slides[path]
        result = ingest_slide(ctx, slide, numbers[path])
        if result is not None:
            written.append((*result, slide.row))

    ctx.process(paths, "tissue", one)
    ctx.report.tools["tifffile"] = tifffile.__version__
    ctx.report.tools["zlib"] = zlib.ZLIB_RUNTIME_VERSION
    if written:
        write_slides(ctx, sorted(written, key=lambda item: (item[0], item[1])))


def read_slides(ctx: IngestContext, table: Path) -> dict[str, SlideRow]:
    """slide_id → row of `slides.csv`; an `IngestError` if it is missing or ambiguous."""
    if not table.is_file():
        raise IngestError(f"{table}: the pathology source needs slides.csv (slide_id → patient_id)")
    return {
        slide_id: SlideRow(
            slide_id,
            row["patient_id"],
            row.get("block", ""),
            row.get("stain", ""),
            row.get("cut_on", ""),
            row.get("scanned_at", ""),
        )
        for slide_id, row in read_linkage_table(ctx, table, "slide_id").items()
    }


def parse_name(path: Path) -> tuple[str, str | None]:
    """(slide id, hospital id or None) from `<slide id>[_<hospital id>][_<scan time>].tif`."""
    if path.suffix.lower() not in EXTENSIONS:
        raise InputRejected(path, "not a TIFF file name (.tif, .tiff or .svs)")
    parts = path.stem.split("_")
    if len(parts) > 1 and SCAN_TIME.fullmatch(parts[-1]):
        parts.pop()
    if len(parts) > 2 or not parts[0]:
        raise InputRejected(path, "file name is not '<slide id>[_<hospital id>][_<scan time>].tif'")
    return parts[0], (parts[1] if len(parts) == 2 else None)


def plan_slides(
    paths: list[Path], rows: dict[str, SlideRow]
) -> tuple[dict[Path, SlideFile], dict[Path, InputRejected]]:
    """Match each file to its slides.csv row; a file that does not match is rejected."""
    slides: dict[Path, SlideFile] = {}
    problems: dict[Path, InputRejected] = {}
    seen: set[str] = set()
    for path in paths:
        try:
            slide_id, patient_id = parse_name(path)
            row = rows.get(slide_id)
            if row is None:
                raise InputRejected(path, "the slide id in the file name is not in slides.csv")
            if patient_id is not None and patient_id != row.patient_id:
                raise InputRejected(
                    path, "the hospital id in the file name differs from slides.csv's patient"
                )
            if slide_id in seen:
                raise InputRejected(path, "another file holds the same slide")
        except InputRejected as error:
            problems[path] = error
            continue
        seen.add(slide_id)
        slides[path] = SlideFile(path, row)
    return slides, problems


def number_slides(slides: Iterable[SlideFile]) -> dict[Path, int]:
    """Slide numbers per patient, in order of scanning (then slide id)."""
    per_patient: dict[str, list[SlideFile]] = defaultdict(list)
    for slide in slides:
        per_patient[slide.row.patient_id].append(slide)
    numbers: dict[Path, int] = {}
    for group in per_patient.values():
        group.sort(key=lambda s: (s.row.scanned_at, s.row.slide_id))
        numbers.update({s.path: n for n, s in enumerate(group, start=1)})
    return numbers


def ingest_slide(ctx: IngestContext, slide: SlideFile, number: int) -> tuple[str, int] | None:
    """Write the main image, quarantine the others; None if the patient opted out.

    The file is decoded before the patient is admitted, so a rejected file's patient
    is not counted among the version's patients.
    """
    data = ctx.read_source(slide.path)
    main, extras, levels, subifds = read_slide(data, slide.path)
    pseudonym = ctx.admit(slide.row.patient_id, source=slide.path, where="slides.csv")
    if pseudonym is None:
        return None
    stem = f"{pseudonym}/{pseudonym}_slide{number}"
    out = write_tiff(main)
    for index, (kind, page) in extras:
        ctx.quarantine(f"{stem}_page{index}-{kind}.tif", write_tiff([page]), _REASONS[kind])
    ctx.output(f"{stem}.tif").write_bytes(out)
    removed = ctx.report.removed
    removed["tiff: tags not on the allow-list"] += sum(p.dropped_tags for p in main)
    if levels:
        removed["tiff: reduced-resolution levels"] += levels
    if subifds:
        removed["tiff: sub-IFD images"] += subifds
    return pseudonym, number


def read_slide(
    data: bytes, path: Path
) -> tuple[list[Page], list[tuple[int, tuple[str, Page]]], int, int]:
    """The main image's pages, the extra pages (index, kind), level and sub-IFD counts."""
    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            if not tif.series:
                raise InputRejected(path, "the TIFF holds no image")
            main_series = tif.series[0]
            if main_series.name.lower() in ("label", "macro"):
                raise InputRejected(path, "the first image is a label or macro image")
            main_indices = [int(p.index) for p in main_series.pages if p is not None]
            level_indices = {
                int(p.index)
                for level in main_series.levels[1:]
                for p in level.pages
                if p is not None
            }
            series_names = {
                int(p.index): s.name.lower() for s in tif.series for p in s.pages if p is not None
            }
            main: list[Page] = []
            extras: list[tuple[int, tuple[str, Page]]] = []
            subifds = 0
            for index in range(len(tif.pages)):
                page = tif.pages[index]
                if not isinstance(page, tifffile.TiffPage):
                    raise InputRejected(path, "a page of the TIFF cannot be read")
                subifds += len(page.subifds or ())
                if index in level_indices:
                    continue
                decoded = _decode(page, path)
                if index in main_indices:
                    main.append(decoded)
                else:
                    extras.append((index, (_kind(page, series_names.get(index, "")), decoded)))
    except InputRejected:
        raise
    except Exception:  # tifffile fails on malformed files with many error types: refuse
        raise InputRejected(path, "not a readable TIFF file (wrong format or truncated)") from None
    if not main:
        raise InputRejected(path, "the TIFF holds no main image")
    return main, extras, len(level_indices), subifds


def _decode(page: tifffile.TiffPage, path: Path) -> Page:
    photometric = page.photometric
    if photometric == tifffile.PHOTOMETRIC.YCBCR and page.compression in (
        tifffile.COMPRESSION.JPEG,
        tifffile.COMPRESSION.OJPEG,
    ):
        photometric = tifffile.PHOTOMETRIC.RGB  # the JPEG decoder returns RGB
    if photometric not in PHOTOMETRICS:
        raise InputRejected(path, f"colour model (photometric {int(photometric)}) is not supported")
    try:
        pixels = page.asarray()
    except (ValueError, NotImplementedError, RuntimeError, zlib.error) as exc:
        why = "truncated or corrupt"
        if "imagecodecs" in str(exc):
            why = "their compression needs the 'imagecodecs' package"
        raise InputRejected(path, f"the pixels cannot be decoded ({why})") from None
    options: dict[str, Any] = {
        "photometric": photometric,
        "planarconfig": page.planarconfig if page.samplesperpixel > 1 else None,
        "extrasamples": tuple(page.extrasamples) or None,
        "colormap": page.colormap if photometric == tifffile.PHOTOMETRIC.PALETTE else None,
    }
    options.update(_resolution(page))
    dropped = sum(1 for tag in page.tags if tag.code not in ALLOWED_TAGS)
    return Page(pixels, options, dropped)


def _resolution(page: tifffile.TiffPage) -> dict[str, Any]:
    """The page's physical resolution: its tags, or else an Aperio MPP (µm per pixel)."""
    tags = page.tags
    unit = tags.get(296)
    x, y = tags.get(282), tags.get(283)
    if x is not None and y is not None and (unit is None or int(unit.value) != 1):
        return {
            "resolution": (tuple(x.value), tuple(y.value)),
            "resolutionunit": int(unit.value) if unit is not None else 2,
        }
    match = _MPP.search(page.description or "")
    if match and float(match[1]) > 0:
        per_cm = 10_000 / float(match[1])
        return {"resolution": (per_cm, per_cm), "resolutionunit": 3}
    if x is not None and y is not None:
        return {"resolution": (tuple(x.value), tuple(y.value)), "resolutionunit": 1}
    return {}


def _kind(page: tifffile.TiffPage, series_name: str) -> str:
    text = f"{series_name} {page.description or ''}".lower()
    for kind in ("label", "macro", "thumbnail"):
        if kind in text:
            return kind
    if "overview" in text:
        return "macro"
    return "image"


def write_tiff(pages: list[Page]) -> bytes:
    """A TIFF of these pages with only allow-listed tags; checked after writing."""
    out = io.BytesIO()
    with tifffile.TiffWriter(out) as writer:
        for page in pages:
            writer.write(
                page.pixels,
                compression="zlib",
                compressionargs={"level": 6},
                software=False,
                metadata=None,
                **page.options,
            )
    data = out.getvalue()
    with tifffile.TiffFile(io.BytesIO(data)) as check:
        for written in check.pages:
            assert isinstance(written, tifffile.TiffPage)
            extra = sorted(tag.code for tag in written.tags if tag.code not in ALLOWED_TAGS)
            if extra:
                raise IngestError(f"tifffile wrote tags outside the allow-list: {extra}")
    return data


def write_slides(ctx: IngestContext, written: list[tuple[str, int, SlideRow]]) -> None:
    """The version's `slides.csv`: pseudonym, slide number, block, stain, dates transformed."""
    with ctx.output(SLIDES_CSV).open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle, lineterminator="\n")
        out.writerow(["patient", "slide", "file", "block", "stain", "cut_on", "scanned_at"])
        for pseudonym, number, row in written:
            out.writerow(
                [
                    pseudonym,
                    number,
                    f"{pseudonym}/{pseudonym}_slide{number}.tif",
                    row.block,
                    row.stain,
                    _date(ctx, row.cut_on, row.patient_id, date.fromisoformat),
                    _date(ctx, row.scanned_at, row.patient_id, datetime.fromisoformat),
                ]
            )
    ctx.report.changed[f"tissue: slide dates ({ctx.options.dates.value})"] += len(written)


def _date(ctx: IngestContext, text: str, patient_id: str, parse: Any) -> str:
    """A transformed date, or empty when slides.csv has none or an unreadable one."""
    if not text:
        return ""
    try:
        value = parse(text)
    except ValueError:
        ctx.report.removed["tissue: unreadable dates in slides.csv"] += 1
        return ""
    return str(ctx.transform_date(value, patient_id).isoformat())
