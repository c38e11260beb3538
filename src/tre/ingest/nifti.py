"""NIfTI ingest: converted MRI volumes named `<hospital id>_<YYYYMMDD>_<suffix>.nii[.gz]`.

Invariant: every output volume keeps the source's voxel bytes and spatial header
exactly (unless the dataset asks for defacing, which zeroes the face and nothing
else), has no free-text header field and no header extension, and is named
`<pseudonym>/<pseudonym>_<session>_<suffix>.nii.gz`: no hospital id, no date. The
session number counts the patient's acquisition dates in order; the dates themselves
(shifted or generalised as the dataset says) go to `sessions.csv`.

nibabel reads and writes the header; the voxel bytes are copied, never decoded and
re-encoded, so scaling, data type and byte order cannot change. Output is gzipped
with mtime 0 and no file name, so the bytes depend on the input and key alone.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
import zlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import nibabel
import numpy as np

from .context import IngestContext
from .errors import InputRejected

_nib: Any = nibabel  # nibabel's partial annotations do not cover the header API used here

SOURCE_NAME = re.compile(
    r"(?P<patient>[A-Za-z0-9]+)_(?P<day>[0-9]{8})_(?P<suffix>[A-Za-z0-9]+)\.nii(?P<gz>\.gz)?"
)
"""A converter's file name: hospital id, acquisition date, BIDS suffix."""

SUFFIXES = frozenset(
    {
        # anat
        "T1w", "T2w", "PDw", "T2starw", "FLAIR", "inplaneT1", "inplaneT2", "PDT2",
        "angio", "T1map", "T2map", "T2starmap", "R1map", "R2map", "R2starmap", "PDmap",
        "MTRmap", "MTsat", "UNIT1", "T1rho", "MP2RAGE", "MESE", "MEGRE", "VFA", "IRT1",
        # func, dwi, perf, fmap, pet
        "bold", "cbv", "sbref", "dwi", "asl", "m0scan", "pet", "phasediff", "phase1",
        "phase2", "magnitude", "magnitude1", "magnitude2", "fieldmap", "epi",
    }
)  # fmt: skip
"""BIDS suffixes kept in output names; any other suffix is refused (it could be free text)."""

TEXT_FIELDS = ("descrip", "aux_file", "intent_name", "data_type", "db_name", "unused_str")
"""Free-text header fields (NIfTI-1 and NIfTI-2): converters put names, ids and dates there."""
LEGACY_FIELDS = ("session_error", "extents", "glmin", "glmax")
"""Unused ANALYZE-era numbers: meaningless to readers, room for an id; zeroed."""

SESSIONS_CSV = "sessions.csv"
_NIFTI1_SIZE, _NIFTI2_SIZE = 348, 540
_SINGLE_FILE_MAGIC = {_NIFTI1_SIZE: b"n+1", _NIFTI2_SIZE: b"n+2"}


@dataclass(frozen=True)
class Scan:
    """What a source file's name says."""

    path: Path
    patient: str
    acquired: date
    suffix: str


@dataclass(frozen=True)
class Volume:
    """A parsed single-file NIfTI: its header and the exact voxel bytes."""

    header: Any
    voxels: bytes
    trailing: int
    """Bytes after the voxel data (dropped)."""


def ingest(ctx: IngestContext) -> None:
    """Ingest every file of the source folder (any file that is not NIfTI is rejected)."""
    paths = sorted(p for p in ctx.source_dir.rglob("*") if p.is_file())
    scans, problems = plan_scans(paths)
    sessions = number_sessions(scans.values())
    defacer = None
    if ctx.options.deface:
        from .deface import Defacer  # noqa: PLC0415 - SimpleITK only when defacing

        defacer = Defacer()
        ctx.report.tools.update(defacer.tools)
    rows: set[tuple[str, int, str]] = set()

    def one(path: Path) -> None:
        if path in problems:
            raise problems[path]
        scan = scans[path]
        session = sessions[(scan.patient, scan.acquired)]
        row = ingest_scan(ctx, scan, session, defacer)
        if row is not None:
            rows.add(row)

    ctx.process(paths, "nifti", one)
    ctx.report.tools["nibabel"] = str(nibabel.__version__)
    ctx.report.tools["zlib"] = zlib.ZLIB_RUNTIME_VERSION
    if rows:
        _write_sessions(ctx, sorted(rows))


def plan_scans(paths: list[Path]) -> tuple[dict[Path, Scan], dict[Path, InputRejected]]:
    """Parse every file name; a name that cannot be used becomes that file's rejection."""
    scans: dict[Path, Scan] = {}
    problems: dict[Path, InputRejected] = {}
    seen: set[tuple[str, date, str]] = set()
    for path in paths:
        try:
            scan = parse_name(path)
        except InputRejected as error:
            problems[path] = error
            continue
        key = (scan.patient, scan.acquired, scan.suffix)
        if key in seen:
            problems[path] = InputRejected(
                path, "another file has the same patient, date and suffix (.nii and .nii.gz?)"
            )
            continue
        seen.add(key)
        scans[path] = scan
    return scans, problems


def parse_name(path: Path) -> Scan:
    """The patient, date and suffix in a file name; `InputRejected` if it has no such parts."""
    match = SOURCE_NAME.fullmatch(path.name)
    if match is None:
        raise InputRejected(
            path,
            "file name is not '<hospital id>_<YYYYMMDD>_<suffix>.nii' or '.nii.gz', so the "
            "patient cannot be recognised",
        )
    day = match["day"]
    try:
        acquired = date(int(day[:4]), int(day[4:6]), int(day[6:]))
    except ValueError:
        raise InputRejected(path, "the date in the file name is not a valid date") from None
    if match["suffix"] not in SUFFIXES:
        raise InputRejected(path, "the suffix in the file name is not a known BIDS suffix")
    return Scan(path, match["patient"], acquired, match["suffix"])


def number_sessions(scans: Iterable[Scan]) -> dict[tuple[str, date], int]:
    """Session numbers per patient: 1 for the earliest acquisition date, then 2, ..."""
    days: dict[str, set[date]] = defaultdict(set)
    for scan in scans:
        days[scan.patient].add(scan.acquired)
    return {
        (patient, day): n
        for patient, dates in days.items()
        for n, day in enumerate(sorted(dates), start=1)
    }


def ingest_scan(
    ctx: IngestContext, scan: Scan, session: int, defacer: Any = None
) -> tuple[str, int, str] | None:
    """Write one cleaned volume; return its sessions.csv row, or None if opted out.

    The file is checked (and defaced) before the patient is admitted, so a rejected
    file's patient is not counted among the version's patients.
    """
    raw = ctx.read_source(scan.path)
    data = gunzip(raw, scan.path) if scan.path.name.endswith(".gz") else raw
    volume = read_volume(data, scan.path)
    voxels = volume.voxels
    if defacer is not None:
        voxels = deface_voxels(defacer, volume.header, voxels, scan.path)
    pseudonym = ctx.admit(scan.patient, source=scan.path, where="the file name's hospital id")
    if pseudonym is None:
        return None
    header = clean_header(ctx, volume.header)
    if volume.trailing:
        ctx.report.removed["nifti: bytes after the voxel data"] += volume.trailing
    if defacer is not None:
        ctx.report.changed["nifti: volumes defaced"] += 1
    out = ctx.output(f"{pseudonym}/{pseudonym}_{session}_{scan.suffix}.nii.gz")
    out.write_bytes(gzip.compress(assemble(header, voxels), compresslevel=6, mtime=0))
    acquired = ctx.transform_date(scan.acquired, scan.patient)
    return (pseudonym, session, acquired.isoformat())


def gunzip(data: bytes, path: Path) -> bytes:
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error):
        raise InputRejected(path, "not a complete gzip file (truncated or corrupt)") from None


def read_volume(data: bytes, path: Path) -> Volume:
    """Parse a single-file NIfTI-1 or NIfTI-2 image; `InputRejected` unless it is whole."""
    if len(data) < _NIFTI1_SIZE:
        raise InputRejected(path, "too short to be a NIfTI file (truncated?)")
    sizes = {int.from_bytes(data[:4], "little"), int.from_bytes(data[:4], "big")}
    if _NIFTI1_SIZE in sizes:
        klass, size = _nib.Nifti1Header, _NIFTI1_SIZE
    elif _NIFTI2_SIZE in sizes:
        klass, size = _nib.Nifti2Header, _NIFTI2_SIZE
    else:
        raise InputRejected(path, "not a NIfTI-1 or NIfTI-2 file (header size is wrong)")
    try:
        header = klass.from_fileobj(io.BytesIO(data), check=False)
        if bytes(header["magic"]).rstrip(b"\0") != _SINGLE_FILE_MAGIC[size]:
            raise InputRejected(
                path, "not a single-file NIfTI (.hdr/.img pairs and ANALYZE are not accepted)"
            )
        shape = tuple(int(n) for n in header.get_data_shape())
        dtype = np.dtype(header.get_data_dtype())
        offset = int(header.get_data_offset())
    except InputRejected:
        raise
    except Exception:  # nibabel fails on malformed headers with many error types: refuse
        raise InputRejected(path, "the NIfTI header cannot be read") from None
    if offset < header.single_vox_offset:
        raise InputRejected(path, "the header's voxel offset points inside the header")
    if not shape or min(shape) < 1:
        raise InputRejected(path, "the header declares an image with no voxels")
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) < offset + nbytes:
        raise InputRejected(path, "the voxel data are shorter than the header declares (truncated)")
    return Volume(header, data[offset : offset + nbytes], len(data) - offset - nbytes)


def clean_header(ctx: IngestContext, source: Any) -> Any:
    """A copy of the header without free text, legacy numbers or extensions."""
    header = source.copy()
    fields = set(header.keys())
    for name in TEXT_FIELDS:
        if name in fields:
            if bytes(header[name]).strip(b"\0 "):
                ctx.report.removed["nifti: header text fields"] += 1
            header[name] = b""
    for name in LEGACY_FIELDS:
        if name in fields:
            if np.any(np.asarray(header[name]) != 0):
                ctx.report.removed["nifti: legacy header fields"] += 1
            header[name] = 0
    if len(header.extensions):
        ctx.report.removed["nifti: header extensions"] += len(header.extensions)
    header.extensions = type(header.extensions)()
    header["vox_offset"] = header.single_vox_offset
    return header


def assemble(header: Any, voxels: bytes) -> bytes:
    """Header, the empty extension flag, then the voxel bytes at `vox_offset`."""
    out = io.BytesIO()
    header.write_to(out)
    out.write(b"\0" * (int(header["vox_offset"]) - out.tell()))
    out.write(voxels)
    return out.getvalue()


def deface_voxels(defacer: Any, header: Any, voxels: bytes, path: Path) -> bytes:
    """The voxel bytes with the face set to zero; `InputRejected` if the face is not found."""
    from .deface import DefacingFailed  # noqa: PLC0415 - SimpleITK only when defacing

    shape = tuple(int(n) for n in header.get_data_shape())
    dtype = np.dtype(header.get_data_dtype())
    array = np.frombuffer(voxels, dtype=dtype).reshape(shape, order="F")
    if array.ndim not in (3, 4):
        raise InputRejected(path, f"cannot deface a {array.ndim}-D image (3-D or 4-D only)")
    try:
        face = defacer.face(array, header.get_best_affine())
    except DefacingFailed as exc:
        raise InputRejected(path, f"defacing failed: {exc}") from None
    defaced = array.copy()
    defaced[face] = 0  # raw zero, as pydeface; with a scl_inter it reads as that intercept
    return defaced.tobytes(order="F")


def _write_sessions(ctx: IngestContext, rows: list[tuple[str, int, str]]) -> None:
    with ctx.output(SESSIONS_CSV).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["patient", "session", "acquired_on"])
        writer.writerows(rows)
    ctx.report.changed[f"nifti: acquisition dates ({ctx.options.dates.value})"] += len(rows)
