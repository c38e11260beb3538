"""What an ingest run records: a manifest that travels with the version, and a private record.

`VersionManifest` is written into the immutable version folder and may be read
by researchers, so it holds checksums, counts and kinds of change but no source
path, patient id or quoted identifier. `IngestRecord` stays on the ingest host
and names the source files that were rejected or quarantined.
"""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict, Field

MANIFEST_NAME = "MANIFEST.json"
RECORD_NAME = "INGEST-RECORD.json"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileEntry(_Model):
    path: str = Field(description="Path inside the version folder (POSIX).")
    sha256: str
    size: int


class Rejected(_Model):
    source_sha256: str | None = Field(description="Checksum of the rejected source file.")
    problem: str


class Counts(_Model):
    source_files: int
    output_files: int
    patients: int = Field(description="Distinct patients (pseudonyms) in the output.")
    excluded_opt_out: int = Field(description="Patients left out because they opted out.")
    rejected: int
    quarantined: int


class VersionManifest(_Model):
    """MANIFEST.json of one pseudonymised dataset version for one project."""

    format: int = 1
    project: str
    dataset: str
    version: str
    modality: str
    key_id: str = Field(description="Id of the master key used; never the key.")
    deidentification: dict[str, object] = Field(description="The dataset's options in force.")
    source_digest: str = Field(
        description="SHA-256 over the sorted (checksum) list of source files read."
    )
    counts: Counts
    removed: dict[str, int] = Field(default_factory=dict, description="What was removed, by kind.")
    changed: dict[str, int] = Field(
        default_factory=dict, description="What was replaced, shifted, masked or redacted."
    )
    rejected: tuple[Rejected, ...] = ()
    tools: dict[str, str] = Field(default_factory=dict, description="Versions of the tools used.")
    files: tuple[FileEntry, ...]


class RecordEntry(_Model):
    source: str
    reason: str


class IngestRecord(_Model):
    """INGEST-RECORD.json, kept on the ingest host beside the quarantine."""

    project: str
    dataset: str
    version: str
    manifest_sha256: str
    rejected: tuple[RecordEntry, ...] = ()
    quarantined: tuple[RecordEntry, ...] = ()


def dump(model: BaseModel) -> bytes:
    """Deterministic JSON: sorted keys, two-space indent, trailing newline."""
    return (json.dumps(model.model_dump(mode="json"), indent=2, sort_keys=True) + "\n").encode()
