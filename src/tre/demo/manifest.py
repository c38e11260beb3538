"""`MANIFEST.json`: what the demo silos hold, file by file, with checksums.

The manifest is a pure function of the silo contents: paths are relative posix paths,
entries are sorted, and nothing records when or where the silos were written.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Modality = Literal["emr", "dicom", "nifti", "vcf", "bam", "tissue", "single-cell"]
MODALITIES: tuple[Modality, ...] = ("emr", "dicom", "nifti", "vcf", "bam", "tissue", "single-cell")

GENERATOR_NAME = "jupyter-tre demo silos"
GENERATOR_VERSION = "1"
"""Bumped whenever the same seed would give different bytes."""

MANIFEST_FILE = "MANIFEST.json"
PLANTED_FILE = "PLANTED.json"

_SHA256 = r"^[0-9a-f]{64}$"
_RELATIVE = r"^[^/].*$"


class Generator(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    version: str


class SiloFile(BaseModel):
    """One file of the silos."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str = Field(pattern=_RELATIVE)
    """Relative posix path from the silo root."""
    sha256: str = Field(pattern=_SHA256)
    size: int = Field(ge=0)
    modality: Modality
    source: str
    """Where the content comes from: `"synthetic"` or `"<package> <version>: <file>"`."""
    patient_ids: tuple[str, ...]
    """Hospital patient ids of everyone the file concerns, sorted."""


class PlantedChecksum(BaseModel):
    """Checksum of `PLANTED.json`, which belongs to no modality."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    sha256: str = Field(pattern=_SHA256)
    size: int = Field(ge=0)


class SilosManifest(BaseModel):
    """The manifest written as `MANIFEST.json` at the silo root."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    generator: Generator
    seed: int
    patients: int = Field(ge=1)
    files: tuple[SiloFile, ...]
    planted: PlantedChecksum

    def for_modality(self, modality: Modality) -> tuple[SiloFile, ...]:
        return tuple(entry for entry in self.files if entry.modality == modality)
