"""Clinical code tables of the demo EMR: SNOMED CT conditions and ATC drugs.

Every code is a real SNOMED CT concept id or WHO ATC code, with its usual term.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Drug:
    """A drug as a ward administers it: ATC code, dose, route, times per day."""

    atc_code: str
    name: str
    dose: str
    unit: str
    route: str
    times_per_day: int


@dataclass(frozen=True)
class Condition:
    """A condition with its SNOMED CT concept and how the hospital treats it."""

    snomed_code: str
    description: str
    ward: str
    drugs: tuple[Drug, ...]
    acute: bool
    death_risk: float
    stay_days: tuple[int, int]


TEMOZOLOMIDE = Drug("L01AX03", "temozolomide", "140", "mg", "oral", 1)
DEXAMETHASONE = Drug("H02AB02", "dexamethasone", "4", "mg", "intravenous", 2)
LEVETIRACETAM = Drug("N03AX14", "levetiracetam", "500", "mg", "oral", 2)
ONDANSETRON = Drug("A04AA01", "ondansetron", "8", "mg", "oral", 1)
FUROSEMIDE = Drug("C03CA01", "furosemide", "40", "mg", "intravenous", 2)
BISOPROLOL = Drug("C07AB07", "bisoprolol", "2.5", "mg", "oral", 1)
METFORMIN = Drug("A10BA02", "metformin", "1000", "mg", "oral", 2)
INSULIN_GLARGINE = Drug("A10AE04", "insulin glargine", "20", "IU", "subcutaneous", 1)
AMLODIPINE = Drug("C08CA01", "amlodipine", "5", "mg", "oral", 1)
RAMIPRIL = Drug("C09AA05", "ramipril", "5", "mg", "oral", 1)
SALBUTAMOL = Drug("R03AC02", "salbutamol", "2.5", "mg", "inhalation", 4)
TIOTROPIUM = Drug("R03BB04", "tiotropium bromide", "18", "ug", "inhalation", 1)
PIPERACILLIN_TAZOBACTAM = Drug(
    "J01CR05", "piperacillin and tazobactam", "4.5", "g", "intravenous", 3
)
CEFTRIAXONE = Drug("J01DD04", "ceftriaxone", "2", "g", "intravenous", 1)
AMOXICILLIN_CLAVULANATE = Drug(
    "J01CR02", "amoxicillin and clavulanic acid", "1", "g", "intravenous", 3
)
APIXABAN = Drug("B01AF02", "apixaban", "5", "mg", "oral", 2)
ENOXAPARIN = Drug("B01AB05", "enoxaparin", "40", "mg", "subcutaneous", 1)
PARACETAMOL = Drug("N02BE01", "paracetamol", "1", "g", "oral", 3)

GLIOBLASTOMA = Condition(
    "393563007", "Glioblastoma multiforme", "Neurosurgery",
    (DEXAMETHASONE, LEVETIRACETAM), acute=False, death_risk=0.02, stay_days=(5, 12),
)  # fmt: skip
GLIOBLASTOMA_FOLLOW_UP_WARD = "Oncology"
GLIOBLASTOMA_FOLLOW_UP_DRUGS = (TEMOZOLOMIDE, ONDANSETRON, DEXAMETHASONE, LEVETIRACETAM)
GLIOBLASTOMA_FOLLOW_UP_DEATH_RISK = 0.15

EPILEPSY = Condition(
    "84757009", "Epilepsy", "Neurology", (LEVETIRACETAM,),
    acute=False, death_risk=0.01, stay_days=(1, 4),
)  # fmt: skip
HEART_FAILURE = Condition(
    "84114007", "Heart failure", "Cardiology", (FUROSEMIDE, BISOPROLOL),
    acute=False, death_risk=0.07, stay_days=(3, 12),
)  # fmt: skip
TYPE_2_DIABETES = Condition(
    "44054006", "Diabetes mellitus type 2", "Endocrinology", (METFORMIN, INSULIN_GLARGINE),
    acute=False, death_risk=0.01, stay_days=(2, 6),
)  # fmt: skip
COPD = Condition(
    "13645005", "Chronic obstructive lung disease", "Pulmonology", (SALBUTAMOL, TIOTROPIUM),
    acute=False, death_risk=0.05, stay_days=(3, 10),
)  # fmt: skip
HYPERTENSION = Condition(
    "38341003", "Hypertensive disorder, systemic arterial", "Internal Medicine",
    (AMLODIPINE, RAMIPRIL), acute=False, death_risk=0.01, stay_days=(1, 4),
)  # fmt: skip
ATRIAL_FIBRILLATION = Condition(
    "49436004", "Atrial fibrillation", "Cardiology", (APIXABAN, BISOPROLOL),
    acute=False, death_risk=0.02, stay_days=(1, 5),
)  # fmt: skip
SEPSIS = Condition(
    "91302008", "Sepsis", "Intensive Care", (PIPERACILLIN_TAZOBACTAM,),
    acute=True, death_risk=0.18, stay_days=(4, 21),
)  # fmt: skip
PNEUMONIA = Condition(
    "233604007", "Pneumonia", "Pulmonology", (CEFTRIAXONE, AMOXICILLIN_CLAVULANATE),
    acute=True, death_risk=0.06, stay_days=(3, 10),
)  # fmt: skip

CHRONIC_CONDITIONS = (HEART_FAILURE, TYPE_2_DIABETES, COPD, HYPERTENSION, ATRIAL_FIBRILLATION)
"""Long-term conditions of the non-glioblastoma patients."""

ACUTE_CONDITIONS = (SEPSIS, PNEUMONIA)
"""Episodes that bring any patient in, dated on the admission that treats them."""

ALWAYS_GIVEN = (PARACETAMOL, ENOXAPARIN)
"""Given on most admissions whatever the reason (analgesia, thrombosis prophylaxis)."""
