"""The digital pathology silo: scikit-image's IHC sample as each patient's scanned slide.

Each TIFF holds a patient-specific crop of `skimage.data.immunohistochemistry()` and a
slide label page with the patient's name drawn on it; its name embeds slide id,
hospital id and scan time, and its tags carry identifiers as scanner exports do.
"""

from __future__ import annotations

from importlib.metadata import version
from random import Random
from typing import Any

import numpy as np
import tifffile
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFont

from . import seeds
from .build import SiloBuild
from .cohort import ModalityPlan, Slide
from .files import write_csv
from .people import Patient, People, ascii_fold
from .planted import IdentifierKind
from .timeline import HOSPITAL

SLIDES_PATH = "pathology/slides.csv"
STAIN = "Ki-67 (DAB, haematoxylin counterstain)"
_CROP_SIDES = (224, 256, 288, 320)
_LABEL_SIZE = (360, 140)
_SOFTWARE = "DemoScan 2.1"


def _source_label() -> str:
    return f"scikit-image {version('scikit-image')}: data.immunohistochemistry()"


def _label_lines(slide: Slide, patient: Patient) -> tuple[str, ...]:
    return (
        f"{HOSPITAL} - Pathology",
        f"{slide.slide_id}  block {slide.block}",
        f"{ascii_fold(patient.last_name).upper()} {ascii_fold(patient.first_name)}",
        patient.patient_id,
        f"DOB {patient.birth_date:%d/%m/%Y}",
    )


def _label_image(lines: tuple[str, ...]) -> NDArray[np.uint8]:
    """The slide label as a scanner photographs it: black text on white."""
    image = Image.new("L", _LABEL_SIZE, 255)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=18)
    for row, line in enumerate(lines):
        draw.text((10, 6 + row * 26), line, fill=0, font=font)
    return np.asarray(image, dtype=np.uint8)


def _crop(source: NDArray[np.uint8], rng: Random) -> NDArray[np.uint8]:
    """A different field of view per slide."""
    side = rng.choice(_CROP_SIDES)
    top = rng.randint(0, source.shape[0] - side)
    left = rng.randint(0, source.shape[1] - side)
    crop = source[top : top + side, left : left + side]
    if rng.random() < 0.5:  # slides go into the scanner either way round
        crop = crop[::-1, ::-1]
    return np.ascontiguousarray(crop)


def _write_slide(
    build: SiloBuild, slide: Slide, patient: Patient, crop: NDArray[np.uint8], pathologist: str
) -> str:
    """Write one slide's TIFF; return its relative path."""
    pid = patient.patient_id
    stamp = f"{slide.scanned_at:%Y%m%dT%H%M%S}"
    path = f"pathology/{slide.slide_id}_{pid}_{stamp}.tif"
    last, first = ascii_fold(patient.last_name), ascii_fold(patient.first_name)
    name = f"{last}^{first}"
    dob = f"{patient.birth_date:%Y-%m-%d}"
    scanned = f"{slide.scanned_at:%Y:%m:%d %H:%M:%S}"
    description = (
        f"{_SOFTWARE} slide export|SlideID = {slide.slide_id}|Block = {slide.block}"
        f"|Patient = {name}|MRN = {pid}|DOB = {dob}|Stain = {STAIN}"
        f"|ScanDate = {scanned}|User = {pathologist}"
    )
    original = (  # the scanner's own file name, as a Windows share path
        f"\\\\pathscan01\\export\\{slide.scanned_at:%Y}\\{last}_{first}_{slide.slide_id}.svs"
    )
    lines = _label_lines(slide, patient)
    with tifffile.TiffWriter(build.path(path)) as tiff:
        tiff.write(
            crop,
            photometric="rgb",
            compression="zlib",
            description=description,
            datetime=scanned,
            software=_SOFTWARE,
            metadata=None,
            extratags=[(315, "s", 0, pathologist, True), (269, "s", 0, original, True)],
        )
        tiff.write(
            _label_image(lines),
            photometric="minisblack",
            compression="zlib",
            subfiletype=1,
            description=f"label {slide.slide_id} {pid}",
            software=_SOFTWARE,
            metadata=None,
        )
    build.plant_path(path, "slide_id", slide.slide_id, pid)
    build.plant_path(path, "patient_id", pid, pid)
    build.plant_path(path, "visit_date", stamp, pid)
    planted: tuple[tuple[str, IdentifierKind, str], ...] = (
        ("page0.ImageDescription", "slide_id", slide.slide_id),
        ("page0.ImageDescription", "name", name),
        ("page0.ImageDescription", "patient_id", pid),
        ("page0.ImageDescription", "birth_date", dob),
        ("page0.ImageDescription", "visit_date", scanned),
        ("page0.ImageDescription", "clinician_name", pathologist),
        ("page0.DateTime", "visit_date", scanned),
        ("page0.Artist", "clinician_name", pathologist),
        ("page0.DocumentName", "file_path", original),
        ("page0.DocumentName", "name", f"{last}_{first}"),
        ("page1.ImageDescription", "slide_id", slide.slide_id),
        ("page1.ImageDescription", "patient_id", pid),
        ("page1.pixels", "slide_id", slide.slide_id),
        ("page1.pixels", "name", lines[2]),
        ("page1.pixels", "patient_id", pid),
        ("page1.pixels", "birth_date", lines[4].removeprefix("DOB ")),
    )
    for location, kind, value in planted:
        build.plant(path, f"tiff:{location}", kind, value, pid)
    return path


def write_tissue(build: SiloBuild, people: People, plan: ModalityPlan) -> None:
    """One two-page TIFF per slide, and `pathology/slides.csv` linking slides to patients."""
    from skimage import data  # noqa: PLC0415 - heavy import, only when building silos

    samples: Any = data  # untyped
    source = np.asarray(samples.immunohistochemistry(), dtype=np.uint8)
    label = _source_label()
    rng = seeds.rng(build.seed, "tissue")
    rows = []
    for slide in plan.slides:
        patient = people.patient(slide.patient_id)
        crop = _crop(source, rng)
        pathologist = ascii_fold(people.staff[rng.randrange(len(people.staff))].name)
        path = _write_slide(build, slide, patient, crop, pathologist)
        build.record(path, "tissue", label, [patient.patient_id])
        rows.append(
            (slide.slide_id, patient.patient_id, slide.block, STAIN, f"{slide.cut_on:%Y-%m-%d}",
             f"{slide.scanned_at:%Y-%m-%dT%H:%M:%S}", path)
        )  # fmt: skip
    write_csv(
        build.path(SLIDES_PATH),
        ["slide_id", "patient_id", "block", "stain", "cut_on", "scanned_at", "file"],
        rows,
    )
    build.record(SLIDES_PATH, "tissue", "synthetic", (s.patient_id for s in plan.slides))
    build.plant_column(SLIDES_PATH, "slide_id", "slide_id")
    build.plant_column(SLIDES_PATH, "patient_id", "patient_id")
    build.plant_column(SLIDES_PATH, "cut_on", "visit_date")
    build.plant_column(SLIDES_PATH, "scanned_at", "visit_date")
    build.plant_column(SLIDES_PATH, "file", "file_path")
