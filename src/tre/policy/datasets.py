"""Catalogue entries for datasets: HealthDCAT-AP metadata, immutable versions, restrictions.

A dataset version, once listed with a manifest checksum, names one immutable
folder of pseudonymised files; a new extraction is always a new version.
"""

from __future__ import annotations

import re
from datetime import date
from enum import StrEnum

from pydantic import Field, field_validator, model_validator

from .base import NonEmptyText, PolicyModel, Sha256Hex, Slug
from .ehds import EHDS_ELI, HealthCategory, Purpose


class Modality(StrEnum):
    """The kinds of source a dataset comes from; each has its own ingest module."""

    emr = "emr"
    dicom = "dicom"
    nifti = "nifti"
    vcf = "vcf"
    bam = "bam"
    tissue = "tissue"
    single_cell = "single-cell"


class AccessRights(StrEnum):
    """dct:accessRights, from the EU access-right vocabulary."""

    public = "PUBLIC"
    restricted = "RESTRICTED"
    non_public = "NON_PUBLIC"


class RestrictionKind(StrEnum):
    """Why reuse is limited beyond what the permit says."""

    intellectual_property = "intellectual_property"
    sponsor_contract = "sponsor_contract"
    consent = "consent"
    publication_embargo = "publication_embargo"
    other = "other"


class Restriction(PolicyModel):
    """A clause that limits reuse (e.g. a sponsor's IP clause): permits must acknowledge it."""

    id: Slug
    kind: RestrictionKind
    holder: NonEmptyText = Field(description="Who imposes the restriction (sponsor, data holder).")
    summary: NonEmptyText = Field(description="What the clause means for a user of the data.")
    clause: str | None = Field(default=None, description="Reference to the contract clause.")
    prohibited_purposes: tuple[Purpose, ...] = Field(
        default=(), description="Purposes for which the data may not be used at all."
    )
    until: date | None = Field(default=None, description="Date the restriction lapses, if any.")


class Period(PolicyModel):
    """A closed or open-ended period (dct:PeriodOfTime)."""

    start: date
    end: date | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Period:
        if self.end is not None and self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        return self


class DateHandling(StrEnum):
    """How ingest treats dates: shift per patient (intervals kept) or generalise."""

    shift = "shift"
    month = "month"
    year = "year"


class DicomOption(StrEnum):
    """Options of the DICOM PS3.15 Basic Application Level Confidentiality Profile.

    Each names an option column of PS3.15 Table E.1-1 and has a code in CID 7050.
    """

    clean_graphics = "clean_graphics"
    clean_structured_content = "clean_structured_content"
    clean_descriptors = "clean_descriptors"
    retain_longitudinal_full_dates = "retain_longitudinal_full_dates"
    retain_longitudinal_modified_dates = "retain_longitudinal_modified_dates"
    retain_patient_characteristics = "retain_patient_characteristics"
    retain_device_identity = "retain_device_identity"
    retain_uids = "retain_uids"
    retain_safe_private = "retain_safe_private"
    retain_institution_identity = "retain_institution_identity"


class BurnedInTextHandling(StrEnum):
    """What ingest does with an image that may carry burned-in text."""

    quarantine = "quarantine"
    mask = "mask"


class Deidentification(PolicyModel):
    """How ingest de-identifies this dataset, beyond what every dataset gets."""

    dates: DateHandling = Field(
        default=DateHandling.shift,
        description="shift: per-patient offset, intervals kept; month/year: generalised.",
    )
    dicom_options: tuple[DicomOption, ...] = Field(
        default=(DicomOption.clean_descriptors, DicomOption.retain_longitudinal_modified_dates),
        description="PS3.15 profile options applied on top of the basic profile.",
    )
    safe_private_tags: tuple[str, ...] = Field(
        default=(),
        description=(
            "Private DICOM elements kept with retain_safe_private, as "
            "'<private creator>/<gggg>,xx<ee>' (e.g. 'SIEMENS CSA HEADER/0029,xx08')."
        ),
    )
    burned_in_text: BurnedInTextHandling = Field(
        default=BurnedInTextHandling.quarantine,
        description="Images that may carry burned-in text: quarantined for review, or masked.",
    )
    deface: bool = Field(default=False, description="Deface head MRI volumes (NIfTI).")

    @field_validator("safe_private_tags")
    @classmethod
    def _private_tag_form(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            if not re.fullmatch(r"[^/]+/[0-9A-Fa-f]{4},xx[0-9A-Fa-f]{2}", entry):
                raise ValueError(
                    f"{entry!r} is not '<private creator>/<gggg>,xx<ee>', "
                    "e.g. 'SIEMENS CSA HEADER/0029,xx08'"
                )
            if int(entry.split("/")[-1][:4], 16) % 2 == 0:
                raise ValueError(f"{entry!r}: private groups are odd numbers")
        return value

    @model_validator(mode="after")
    def _dates_consistent(self) -> Deidentification:
        both = {
            DicomOption.retain_longitudinal_full_dates,
            DicomOption.retain_longitudinal_modified_dates,
        }
        if both <= set(self.dicom_options):
            raise ValueError(
                "dicom_options: retain_longitudinal_full_dates and "
                "retain_longitudinal_modified_dates exclude each other"
            )
        return self


LOCATION_FIELDS = frozenset({"project", "dataset", "version"})


class DatasetVersion(PolicyModel):
    """One immutable extraction of a dataset."""

    id: NonEmptyText = Field(description="Version label, e.g. '1' or '2026-11'.")
    created: date
    description: str | None = None
    source: str | None = Field(
        default=None,
        description="Folder under the silos directory this version is extracted from.",
    )
    location: str = Field(
        default="{project}/{dataset}/{version}",
        description=(
            "Folder under the datasets directory; may use {project}, {dataset} and "
            "{version}. Pseudonyms differ per project, so each project gets its own copy."
        ),
    )
    manifest_sha256: Sha256Hex | None = Field(
        default=None,
        description="SHA-256 of the version's MANIFEST.json, recorded when ingest sealed it.",
    )
    number_of_records: int | None = Field(default=None, ge=0)
    number_of_unique_individuals: int | None = Field(default=None, ge=0)

    @field_validator("source")
    @classmethod
    def _source_relative(cls, value: str | None) -> str | None:
        if value is not None:
            _check_relative(value, "silos")
        return value

    @field_validator("location")
    @classmethod
    def _relative_inside(cls, value: str) -> str:
        names = set(re.findall(r"{([^{}]*)}", value))
        unknown = names - LOCATION_FIELDS
        if unknown:
            raise ValueError(
                f"unknown placeholder {{{sorted(unknown)[0]}}}; allowed: "
                + ", ".join(f"{{{n}}}" for n in sorted(LOCATION_FIELDS))
            )
        _check_relative(value, "datasets")
        return value

    def folder(self, dataset: str, project: str) -> str:
        """The version's folder for one project, relative to the datasets directory."""
        return self.location.format(project=project, dataset=dataset, version=self.id)


class Dataset(PolicyModel):
    """A catalogue entry, carrying the HealthDCAT-AP properties the EHDS asks for (Art. 77)."""

    id: Slug
    title: NonEmptyText = Field(description="dct:title")
    description: NonEmptyText = Field(description="dct:description")
    identifier: str | None = Field(default=None, description="dct:identifier; defaults to id.")
    modality: Modality
    data_holder: NonEmptyText = Field(description="The health data holder that supplies the data.")
    access_rights: AccessRights = Field(
        default=AccessRights.non_public, description="dct:accessRights"
    )
    applicable_legislation: tuple[str, ...] = Field(
        default=(EHDS_ELI,), description="dcatap:applicableLegislation (ELI URIs)."
    )
    hdab: NonEmptyText = Field(description="healthdcatap:hdab: the health data access body.")
    health_category: tuple[HealthCategory, ...] = Field(
        min_length=1, description="healthdcatap:healthCategory (EHDS Art. 51 categories)."
    )
    health_theme: tuple[str, ...] = Field(
        default=(), description="healthdcatap:healthTheme (e.g. Wikidata or MeSH URIs)."
    )
    has_coding_system: tuple[str, ...] = Field(
        default=(), description="healthdcatap:hasCodingSystem (e.g. SNOMED CT, ATC, DICOM)."
    )
    number_of_records: int | None = Field(
        default=None, ge=0, description="healthdcatap:numberOfRecords"
    )
    number_of_unique_individuals: int | None = Field(
        default=None, ge=0, description="healthdcatap:numberOfUniqueIndividuals"
    )
    min_typical_age: int | None = Field(
        default=None, ge=0, le=150, description="healthdcatap:minTypicalAge"
    )
    max_typical_age: int | None = Field(
        default=None, ge=0, le=150, description="healthdcatap:maxTypicalAge"
    )
    temporal: Period | None = Field(default=None, description="dct:temporal")
    spatial: str | None = Field(default=None, description="dct:spatial, e.g. an ISO country code.")
    retention_period: Period | None = Field(
        default=None, description="healthdcatap:retentionPeriod"
    )
    has_personal_data: tuple[str, ...] = Field(
        default=(), description="dpv:hasPersonalData (personal data categories)."
    )
    has_purpose: tuple[Purpose, ...] = Field(default=(), description="dpv:hasPurpose")
    has_legal_basis: tuple[str, ...] = Field(
        default=(), description="dpv:hasLegalBasis, e.g. 'GDPR Art. 9(2)(j)'."
    )
    restrictions: tuple[Restriction, ...] = Field(
        default=(), description="IP, sponsor-contract or consent clauses that limit reuse."
    )
    deidentification: Deidentification = Field(
        default_factory=Deidentification, description="How ingest de-identifies this dataset."
    )
    versions: tuple[DatasetVersion, ...] = Field(default=(), description="Immutable versions.")

    @model_validator(mode="after")
    def _consistent(self) -> Dataset:
        if (
            self.min_typical_age is not None
            and self.max_typical_age is not None
            and self.min_typical_age > self.max_typical_age
        ):
            raise ValueError(
                f"min_typical_age {self.min_typical_age} is above "
                f"max_typical_age {self.max_typical_age}"
            )
        _require_unique("versions", [v.id for v in self.versions])
        _require_unique("restrictions", [r.id for r in self.restrictions])
        return self

    def version(self, version_id: str) -> DatasetVersion | None:
        return next((v for v in self.versions if v.id == version_id), None)

    def restriction(self, restriction_id: str) -> Restriction | None:
        return next((r for r in self.restrictions if r.id == restriction_id), None)


def _check_relative(value: str, below: str) -> None:
    parts = value.replace("\\", "/").split("/")
    if value.startswith("/") or ".." in parts or "" in parts:
        raise ValueError(
            f"must be a relative path below the {below} directory, without '..' or '//'"
        )


def _require_unique(what: str, ids: list[str]) -> None:
    seen: set[str] = set()
    for i in ids:
        if i in seen:
            raise ValueError(f"{what}: id '{i}' appears more than once")
        seen.add(i)
