"""The hospital's patient index and the opt-out register, as ingest sees them.

Every patient a source file names must be in the index; a patient who has
opted out on the ingest day is excluded before any pseudonym is computed.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from tre.pseudonym import OptOutRegister, normalise_patient_id

from .errors import IngestError

PATIENT_ID_COLUMN = "patient_id"


@dataclass(frozen=True)
class PatientIndex:
    """Known hospital patient ids, and those opted out on the ingest day."""

    known: frozenset[str]
    opted_out: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def load(cls, index_csv: Path, register: OptOutRegister | None, on: date) -> PatientIndex:
        """Read the patient index (a CSV with a `patient_id` column) and the register."""
        try:
            with index_csv.open(newline="", encoding="utf-8") as handle:
                reader = csv.DictReader(handle)
                if PATIENT_ID_COLUMN not in (reader.fieldnames or []):
                    raise IngestError(
                        f"{index_csv}: patient index has no '{PATIENT_ID_COLUMN}' column "
                        f"(columns: {', '.join(reader.fieldnames or []) or 'none'})"
                    )
                known = frozenset(normalise_patient_id(row[PATIENT_ID_COLUMN]) for row in reader)
        except OSError as exc:
            raise IngestError(f"{index_csv}: cannot read patient index: {exc.strerror}") from exc
        opted_out = register.opted_out(on) if register is not None else frozenset()
        return cls(known=known, opted_out=opted_out)

    def is_known(self, patient_id: str) -> bool:
        return patient_id in self.known

    def is_opted_out(self, patient_id: str) -> bool:
        return patient_id in self.opted_out
