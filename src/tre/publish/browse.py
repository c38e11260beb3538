"""The browsable catalogue: each dataset with its access conditions and restrictions, in
plain words, for the catalogue page and `catalogue.json`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date

from pydantic import BaseModel, ConfigDict, TypeAdapter

from tre.policy import Dataset, Modality, PermitStatus, Policy, RestrictionKind
from tre.policy.datasets import AccessRights, Period
from tre.policy.ehds import HealthCategory, Purpose

from .catalogue import (
    ACCESS_LABELS,
    dataset_counts,
    health_category_label,
    health_category_uri,
    restriction_in_words,
)


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CategoryEntry(_Entry):
    code: HealthCategory
    article: str
    label: str
    uri: str


class PurposeEntry(_Entry):
    code: Purpose
    article: str
    label: str


class AccessConditions(_Entry):
    """How to get access, in plain words."""

    access_body: str
    how_to_apply: str
    legal_basis: tuple[str, ...]
    permitted_purposes: tuple[PurposeEntry, ...]


class RestrictionEntry(_Entry):
    id: str
    kind: RestrictionKind
    holder: str
    summary: str
    clause: str | None
    prohibited_purposes: tuple[PurposeEntry, ...]
    until: date | None
    in_force: bool
    in_words: str


class VersionEntry(_Entry):
    id: str
    created: date
    description: str | None
    number_of_records: int | None
    number_of_unique_individuals: int | None


class CatalogueEntry(_Entry):
    """One dataset as the catalogue page shows it, as of a given day."""

    id: str
    identifier: str
    title: str
    description: str
    data_holder: str
    modality: Modality
    health_categories: tuple[CategoryEntry, ...]
    access_rights: AccessRights
    access_rights_label: str
    access_conditions: AccessConditions
    restrictions: tuple[RestrictionEntry, ...]
    versions: tuple[VersionEntry, ...]
    number_of_records: int | None
    number_of_unique_individuals: int | None
    min_typical_age: int | None
    max_typical_age: int | None
    period: Period | None
    active_permits: int


def catalogue_entries(policy: Policy, today: date) -> list[CatalogueEntry]:
    """Every dataset of the policy, with the permits active `today` that name it."""
    return [_entry(policy, dataset, today) for dataset in policy.datasets]


def _entry(policy: Policy, dataset: Dataset, today: date) -> CatalogueEntry:
    in_force = [r for r in dataset.restrictions if r.until is None or today <= r.until]
    prohibited = {p for r in in_force for p in r.prohibited_purposes}
    offered = dataset.has_purpose or tuple(Purpose)
    records, individuals = dataset_counts(dataset)
    return CatalogueEntry(
        id=dataset.id,
        identifier=dataset.identifier or dataset.id,
        title=dataset.title,
        description=dataset.description,
        data_holder=dataset.data_holder,
        modality=dataset.modality,
        health_categories=tuple(
            CategoryEntry(
                code=c,
                article=c.article,
                label=health_category_label(c),
                uri=str(health_category_uri(c)),
            )
            for c in dataset.health_category
        ),
        access_rights=dataset.access_rights,
        access_rights_label=ACCESS_LABELS[dataset.access_rights],
        access_conditions=AccessConditions(
            access_body=dataset.hdab,
            how_to_apply=(
                f"Apply to {dataset.hdab} for a data permit (EHDS Art. 68). The data are "
                f"used only inside {policy.site.name}, and only outputs that pass review "
                "leave it."
            ),
            legal_basis=dataset.has_legal_basis,
            permitted_purposes=_purposes(
                p for p in Purpose if p in offered and p not in prohibited
            ),
        ),
        restrictions=tuple(
            RestrictionEntry(
                id=r.id,
                kind=r.kind,
                holder=r.holder,
                summary=r.summary,
                clause=r.clause,
                prohibited_purposes=_purposes(r.prohibited_purposes),
                until=r.until,
                in_force=r in in_force,
                in_words=restriction_in_words(r),
            )
            for r in dataset.restrictions
        ),
        versions=tuple(
            VersionEntry(
                id=v.id,
                created=v.created,
                description=v.description,
                number_of_records=v.number_of_records,
                number_of_unique_individuals=v.number_of_unique_individuals,
            )
            for v in dataset.versions
        ),
        number_of_records=records,
        number_of_unique_individuals=individuals,
        min_typical_age=dataset.min_typical_age,
        max_typical_age=dataset.max_typical_age,
        period=dataset.temporal,
        active_permits=sum(
            1
            for permit in policy.permits
            if permit.status(today) is PermitStatus.active
            and any(grant.dataset == dataset.id for grant in permit.datasets)
        ),
    )


def _purposes(purposes: Iterable[Purpose]) -> tuple[PurposeEntry, ...]:
    return tuple(PurposeEntry(code=p, article=p.article, label=p.label) for p in purposes)


_ENTRIES = TypeAdapter(list[CatalogueEntry])


def catalogue_json(entries: Sequence[CatalogueEntry]) -> str:
    return _ENTRIES.dump_json(list(entries), indent=2).decode("utf-8") + "\n"
