"""The register of direct identifiers the demo deliberately plants (`PLANTED.json`).

Each entry says which file, where in it, what kind of identifier, its exact text and
whose it is; a de-identifier must find every one of them.

Locations are prefixed by the format they address:
`path` (the file's own relative path), `csv:<key column>=<key>/<column>`,
`dicom:(gggg,eeee)` (private tags add the creator: `dicom:(0011,1001) CREATOR`),
`nifti:<header field>`, `vcf:header <line key>`, `vcf:#CHROM column <n>`,
`bam:@RG[<i>].<tag>`, `bam:@PG[<i>].CL`, `bam:@CO[<i>]`,
`tiff:page<n>.<tag name>`, `tiff:page<n>.pixels` (rendered text),
`h5ad:obs/<column>`, `h5ad:obs_names`, `h5ad:uns/<key>/<key>`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

IdentifierKind = Literal[
    "patient_id",
    "name",
    "first_name",
    "last_name",
    "birth_date",
    "national_number",
    "address",
    "phone",
    "email",
    "clinician_name",
    "visit_date",
    "accession_number",
    "lab_sample_id",
    "slide_id",
    "institution",
    "file_path",
]


class PlantedIdentifier(BaseModel):
    """One direct identifier written into one place of one file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    file: str
    """Relative posix path of the file inside the silos."""
    location: str
    """Where in the file (see the module docstring for the syntax)."""
    kind: IdentifierKind
    value: str
    """The exact text as written (for rendered pixels: the text drawn)."""
    patient_id: str
    """The hospital patient id of the person this identifier points at."""

    def sort_key(self) -> tuple[str, str, str, str, str]:
        return (self.file, self.location, self.kind, self.value, self.patient_id)


class PlantedColumn(BaseModel):
    """A CSV column every value of which is a direct identifier of the row's patient."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    file: str
    column: str
    kind: IdentifierKind

    def sort_key(self) -> tuple[str, str, str]:
        return (self.file, self.column, self.kind)


class PlantedRegister(BaseModel):
    """Everything planted, sorted; written as `PLANTED.json` at the silo root.

    Structured CSV columns are declared once in `columns`; every other occurrence
    (free text, file headers, tags, pixels, paths) is listed in `identifiers`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int
    columns: tuple[PlantedColumn, ...]
    identifiers: tuple[PlantedIdentifier, ...]
