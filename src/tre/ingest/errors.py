"""Errors of ingest. A rejected input names its file; its `problem` never quotes identifiers.

The problem text goes into the dataset version's manifest, which researchers
can read, so it must describe what is wrong without repeating what is in the file.
"""

from __future__ import annotations

from pathlib import Path


class IngestError(Exception):
    """Ingest cannot go on; nothing was written."""


class InputRejected(IngestError):
    """One source file cannot be ingested."""

    def __init__(self, path: Path, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class UnknownPatient(InputRejected):
    """A file refers to a patient the hospital's patient index does not know."""

    def __init__(self, path: Path, where: str) -> None:
        super().__init__(path, f"{where} refers to a patient not in the patient index")
