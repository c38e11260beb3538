"""Figures always go to a person; their embedded text is searched for identifiers.

Invariant: a figure's verdict is at least review (no automated check can say a plot is
safe), and block when its text (SVG text and comments, PDF text and metadata, PNG text
chunks) holds an identifier. Hand-written: ACRO's only figure rule is that it refuses
`.svg` as a custom output (default.yaml `blocked_extensions`), which we report.
"""

from __future__ import annotations

import html
import re
import zlib
from pathlib import Path
from typing import Any

from .identifiers import IdentifierIndex, scan_text
from .model import Finding, Verdict

MAX_FIGURE_BYTES = 64 << 20
ACRO_BLOCKED_SUFFIXES = (".svg", ".gph")
"""ACRO 1.0.2 default.yaml `blocked_extensions`."""

_SVG_SIZE = re.compile(r"<svg\b[^>]*?\bwidth=\"([^\"]+)\"[^>]*?\bheight=\"([^\"]+)\"", re.S)
_PDF_STREAM = re.compile(rb"stream\r?\n(.*?)\r?\nendstream", re.S)
_PDF_STRING = re.compile(rb"\((?:\\.|[^\\)])*\)")
_PDF_MEDIABOX = re.compile(rb"/MediaBox\s*\[\s*([\d.\s-]+)\]")


def figure_findings(path: Path, identifiers: IdentifierIndex) -> list[Finding]:
    suffix = path.suffix.lower()
    try:
        size = path.stat().st_size
        if size == 0:
            return [_unreadable("the file is empty")]
        if size > MAX_FIGURE_BYTES:
            return [_unreadable(f"the file is {size >> 20} MiB; a figure should be far smaller")]
        data = path.read_bytes()
    except OSError as exc:
        return [_unreadable(f"the file cannot be read ({exc.strerror})")]
    facts: dict[str, Any] = {"format": suffix.lstrip("."), "bytes": size}
    text = ""
    if suffix == ".svg":
        text, problem = _svg(data, facts)
    elif suffix == ".pdf":
        text, problem = _pdf(data, facts)
    else:
        text, problem = _raster(path, facts)
    if problem:
        return [_unreadable(problem)]
    message = "figures need a person to look at them: check axes, labels, small groups, outliers"
    if suffix in ACRO_BLOCKED_SUFFIXES:
        message += "; note that ACRO refuses this format as an output (its blocked_extensions)"
    findings = [
        Finding(check="manual-review", verdict=Verdict.review, message=message, details=facts)
    ]
    findings += scan_text(text, identifiers)
    return findings


def _unreadable(message: str) -> Finding:
    return Finding(check="readable", verdict=Verdict.fail, message=message)


def _svg(data: bytes, facts: dict[str, Any]) -> tuple[str, str | None]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "", "the SVG is not UTF-8 text"
    if "<svg" not in text:
        return "", "the file is not an SVG image (no <svg> element)"
    size = _SVG_SIZE.search(text)
    if size:
        facts["width"], facts["height"] = size.group(1), size.group(2)
    # Matplotlib draws text as paths and keeps the words in comments; both are scanned.
    return html.unescape(text), None


def _pdf(data: bytes, facts: dict[str, Any]) -> tuple[str, str | None]:
    if not data.startswith(b"%PDF-"):
        return "", "the file is not a PDF"
    facts["pages"] = len(re.findall(rb"/Type\s*/Page\b", data))
    box = _PDF_MEDIABOX.search(data)
    if box:
        numbers = box.group(1).split()
        if len(numbers) == 4:
            facts["width_pt"] = float(numbers[2]) - float(numbers[0])
            facts["height_pt"] = float(numbers[3]) - float(numbers[1])
    parts = [data]
    for stream in _PDF_STREAM.findall(data):
        try:
            parts.append(zlib.decompressobj().decompress(stream, 32 << 20))
        except zlib.error:
            continue
    strings = [_pdf_string(s) for part in parts for s in _PDF_STRING.findall(part)]
    # Only the strings are searched (text shown, metadata): compressed bytes and font
    # programs would match number patterns by chance. TJ arrays split words into pieces,
    # so the pieces are also searched joined up.
    return "\n".join(strings) + "\n" + "".join(strings), None


def _pdf_string(literal: bytes) -> str:
    body = literal[1:-1]
    body = re.sub(rb"\\([()\\])", rb"\1", body)
    return body.decode("latin-1")


def _raster(path: Path, facts: dict[str, Any]) -> tuple[str, str | None]:
    from PIL import Image, UnidentifiedImageError  # noqa: PLC0415

    try:
        with Image.open(path) as image:
            facts["width"], facts["height"] = image.size
            facts["mode"] = image.mode
            facts["image_format"] = image.format
            text = "\n".join(f"{k}: {v}" for k, v in image.info.items() if isinstance(v, str))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        return "", f"the file is not a readable image ({exc})"
    return text, None
