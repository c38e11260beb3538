"""Which glioblastoma patient appears in which modality, under which lab and slide ids.

Every glioblastoma patient has imaging and at least one more non-EMR modality; the
first few ("core") patients appear in every modality, so patient-level linkage across
all silos exists. The plan is a pure function of the seed and the clinical history.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from . import seeds
from .emr import ClinicalHistory
from .timeline import at

CORE_SIZE = 3
"""Patients present in every modality (if the cohort is that large)."""

MPRAGE_PATIENTS = 2
"""The real Philips MPRAGE file is 23 MB: only this many patients get a copy."""

VCF_MAX_SAMPLES = 158
"""The source VCF has 158 sample columns; one per sequenced patient at most."""

SINGLE_CELL_PATIENTS = 4
"""pbmc68k_reduced's 700 cells are shared out among this many patients."""


@dataclass(frozen=True)
class LabSample:
    """A tumour sample as the sequencing lab knows it: by its own id."""

    sample_id: str
    patient_id: str
    collected_on: date
    received_on: date


@dataclass(frozen=True)
class Slide:
    """A scanned pathology slide of a resection specimen."""

    slide_id: str
    patient_id: str
    block: str
    cut_on: date
    scanned_at: datetime


@dataclass(frozen=True)
class ModalityPlan:
    core: tuple[str, ...]
    dicom: tuple[str, ...]
    mprage: tuple[str, ...]
    nifti: tuple[str, ...]
    dna_samples: tuple[LabSample, ...]
    """Sequenced patients (VCF columns), sorted by lab sample id."""
    bam_samples: tuple[LabSample, ...]
    """The sequenced patients that also get a BAM, at most one per source BAM."""
    slides: tuple[Slide, ...]
    single_cell_samples: tuple[LabSample, ...]

    def modalities_of(self, patient_id: str) -> set[str]:
        found = set()
        for name, patients in (
            ("dicom", self.dicom),
            ("nifti", self.nifti),
            ("vcf", tuple(s.patient_id for s in self.dna_samples)),
            ("bam", tuple(s.patient_id for s in self.bam_samples)),
            ("tissue", tuple(s.patient_id for s in self.slides)),
            ("single-cell", tuple(s.patient_id for s in self.single_cell_samples)),
        ):
            if patient_id in patients:
                found.add(name)
        return found


def _lab_ids(prefix: str, days: list[date], numbers: list[int]) -> list[str]:
    return [f"{prefix}{day:%y}-{number:04d}" for day, number in zip(days, numbers, strict=True)]


def plan_modalities(seed: int, history: ClinicalHistory, bam_count: int) -> ModalityPlan:
    """Share the glioblastoma cohort out over the modalities."""
    rng = seeds.rng(seed, "cohort")
    cohort = list(history.glioblastoma)
    rng.shuffle(cohort)
    core = cohort[:CORE_SIZE]
    others = cohort[CORE_SIZE:]

    nifti = core + [p for p in others if rng.random() < 0.5]
    sequenced = (core + [p for p in others if rng.random() < 0.6])[:VCF_MAX_SAMPLES]
    tissue = core + [p for p in others if rng.random() < 0.7]
    single_cell = (core + others[:1])[:SINGLE_CELL_PATIENTS]
    for patient in others:  # imaging alone is not enough to link a patient
        if patient not in nifti and patient not in sequenced and patient not in tissue:
            tissue.append(patient)

    def collected(patient: str) -> date:
        return history.tumour[patient].surgery_on

    dna_numbers = rng.sample(range(1, 10_000), len(sequenced))
    dna_ids = _lab_ids("GL", [collected(p) for p in sequenced], dna_numbers)
    dna = sorted(
        (
            LabSample(sample_id, p, collected(p), collected(p) + timedelta(days=rng.randint(1, 4)))
            for sample_id, p in zip(dna_ids, sequenced, strict=True)
        ),
        key=lambda s: s.sample_id,
    )
    by_patient = {s.patient_id: s for s in dna}
    bam = [by_patient[p] for p in sequenced[:bam_count]]

    sc_numbers = rng.sample(range(1, 10_000), len(single_cell))
    sc_ids = _lab_ids("SC", [collected(p) for p in single_cell], sc_numbers)
    sc = sorted(
        (
            LabSample(sample_id, p, collected(p), collected(p))
            for sample_id, p in zip(sc_ids, single_cell, strict=True)
        ),
        key=lambda s: s.sample_id,
    )

    slide_numbers = rng.sample(range(1, 100_000), len(tissue))
    slides = sorted(
        (
            Slide(
                slide_id=f"S{collected(p):%y}-{number:05d}",
                patient_id=p,
                block=f"{rng.choice('AB')}{rng.randint(1, 6)}",
                cut_on=collected(p) + timedelta(days=rng.randint(2, 5)),
                scanned_at=at(
                    collected(p) + timedelta(days=rng.randint(6, 9)),
                    rng.randint(7, 18),
                    rng.randint(0, 59),
                )
                + timedelta(seconds=rng.randint(0, 59)),
            )
            for number, p in zip(slide_numbers, tissue, strict=True)
        ),
        key=lambda s: s.slide_id,
    )
    return ModalityPlan(
        core=tuple(sorted(core)),
        dicom=tuple(sorted(cohort)),
        mprage=tuple(sorted(core[:MPRAGE_PATIENTS])),
        nifti=tuple(sorted(nifti)),
        dna_samples=tuple(dna),
        bam_samples=tuple(sorted(bam, key=lambda s: s.sample_id)),
        slides=tuple(slides),
        single_cell_samples=tuple(sc),
    )
