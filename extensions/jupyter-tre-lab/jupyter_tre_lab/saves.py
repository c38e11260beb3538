"""The `file_saved` record of a file: what was written, identified by its SHA-256.

Code files also carry their text so that what was run can be recovered from the log;
when the text would not fit in one record it is left out and the record says why.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from dataclasses import dataclass
from typing import Any

from .audit_client import encode_record

CODE_EXTENSIONS = frozenset(
    {".py", ".ipynb", ".r", ".sql", ".sh", ".jl", ".md", ".txt", ".json", ".yaml", ".yml"}
    | {".toml", ".cfg"}
)
"""Lower-cased; `.R` matches `.r`."""

_HASH_BLOCK = 1024 * 1024


@dataclass(frozen=True)
class FileDigest:
    sha256: str
    size: int
    text: str | None
    """The file's UTF-8 text when it is a code file no larger than the record limit."""


def digest_file(os_path: str, api_path: str, max_record_bytes: int) -> FileDigest:
    """Hash the file at `os_path` (blocking; run it in a thread) and keep the text of code files."""
    sha = hashlib.sha256()
    size = 0
    keep = is_code_file(api_path)
    kept: list[bytes] = []
    with open(os_path, "rb") as f:  # noqa: PTH123 - a plain binary read of our own staging file
        while block := f.read(_HASH_BLOCK):
            sha.update(block)
            size += len(block)
            if keep and size <= max_record_bytes:
                kept.append(block)
            else:
                keep = False
                kept = []
    text = None
    if keep:
        try:
            text = b"".join(kept).decode("utf-8")
        except UnicodeDecodeError:
            text = None
    return FileDigest(sha256=sha.hexdigest(), size=size, text=text)


def is_code_file(api_path: str) -> bool:
    return posixpath.splitext(api_path)[1].lower() in CODE_EXTENSIONS


def file_saved_detail(
    api_path: str, digest: FileDigest, *, upload: bool, max_record_bytes: int
) -> dict[str, Any]:
    """The `detail` of a `file_saved` record, never larger than `max_record_bytes` once encoded."""
    detail: dict[str, Any] = {
        "path": api_path,
        "sha256": digest.sha256,
        "size": digest.size,
        "upload": upload,
    }
    if not is_code_file(api_path):
        return detail
    if digest.text is None:
        detail["content_omitted"] = (
            f"larger than {max_record_bytes} bytes or not UTF-8 text; the sha256 identifies it"
        )
        return detail
    for kind, text in _candidate_texts(api_path, digest.text):
        trial = {**detail, "content": text}
        if kind != "full":
            trial["content_kind"] = kind
        if len(encode_record("file_saved", trial)) <= max_record_bytes:
            return trial
    detail["content_omitted"] = (
        f"the text does not fit in one record of {max_record_bytes} bytes; the sha256 identifies it"
    )
    return detail


def _candidate_texts(api_path: str, text: str) -> list[tuple[str, str]]:
    """The full text, then (for notebooks, whose outputs can be large) the notebook without
    its outputs."""
    candidates = [("full", text)]
    if api_path.lower().endswith(".ipynb"):
        stripped = _without_outputs(text)
        if stripped is not None:
            candidates.append(("notebook_without_outputs", stripped))
    return candidates


def _without_outputs(text: str) -> str | None:
    try:
        nb = json.loads(text)
    except ValueError:
        return None
    cells = nb.get("cells") if isinstance(nb, dict) else None
    if not isinstance(cells, list):
        return None
    for cell in cells:
        if isinstance(cell, dict):
            if "outputs" in cell:
                cell["outputs"] = []
            cell.pop("attachments", None)
    return json.dumps(nb, ensure_ascii=False, indent=1)
