"""Keyed, reproducible pseudonymisation for the ingest host: one pseudonym, one date offset
and one UID mapping per patient per project, all derived from one site master key that
never leaves this host (trust boundary 5), plus the EHDS Art. 71 opt-out register.

Nothing outside ingest and the CLI may import this package: the hub side never holds keys.
"""

from .dates import (
    DEFAULT_MAX_SHIFT_DAYS,
    DateHandling,
    DateShifter,
    age_at,
    age_band,
    generalise_date,
    transform_date,
)
from .keys import (
    KeyCustodyError,
    KeyPurpose,
    MasterKey,
    ProjectKey,
    create_master_key,
    default_master_key_path,
    derive_project_key,
    key_id,
    load_master_key,
)
from .optout import (
    OptOutError,
    OptOutEvent,
    OptOutKind,
    OptOutRegister,
    OptOutRegisterError,
    default_register_path,
)
from .patient_ids import PatientIdError, normalise_patient_id
from .pseudonyms import PSEUDONYM_PATTERN, Pseudonymiser, is_pseudonym
from .uids import UidError, UidMapper

__all__ = [
    "DEFAULT_MAX_SHIFT_DAYS",
    "PSEUDONYM_PATTERN",
    "DateHandling",
    "DateShifter",
    "KeyCustodyError",
    "KeyPurpose",
    "MasterKey",
    "OptOutError",
    "OptOutEvent",
    "OptOutKind",
    "OptOutRegister",
    "OptOutRegisterError",
    "PatientIdError",
    "ProjectKey",
    "Pseudonymiser",
    "UidError",
    "UidMapper",
    "age_at",
    "age_band",
    "create_master_key",
    "default_master_key_path",
    "default_register_path",
    "derive_project_key",
    "generalise_date",
    "is_pseudonym",
    "key_id",
    "load_master_key",
    "normalise_patient_id",
    "transform_date",
]
