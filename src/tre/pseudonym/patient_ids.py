"""Hospital patient ids are compared after removing surrounding white space and nothing
else; an id that is empty after that is rejected, never pseudonymised.

Case, inner spaces, leading zeros and Unicode form are kept as they are: "0042",
"42" and "ab" / "AB" are different patients. A silo whose ids need more cleaning must do
it, explicitly, before calling us.
"""

from __future__ import annotations


class PatientIdError(ValueError):
    """A patient id is not a string, is empty after stripping, or cannot be encoded."""


def normalise_patient_id(patient_id: str) -> str:
    """`patient_id` without surrounding white space (Unicode white space, as `str.strip`)."""
    if not isinstance(patient_id, str):
        raise PatientIdError(f"a patient id must be a string, got {type(patient_id).__name__}")
    normalised = patient_id.strip()
    if not normalised:
        raise PatientIdError(
            f"patient id {patient_id!r} is empty or only white space; every record needs "
            "its hospital patient id"
        )
    return normalised


def encode_patient_id(patient_id: str) -> bytes:
    """The UTF-8 bytes of the normalised id, which is what every keyed function hashes."""
    normalised = normalise_patient_id(patient_id)
    try:
        return normalised.encode("utf-8")
    except UnicodeEncodeError as exc:
        # The id itself stays out of the message: messages end up in logs.
        raise PatientIdError(
            f"a patient id cannot be encoded as UTF-8 ({exc.reason} at character {exc.start})"
        ) from exc
