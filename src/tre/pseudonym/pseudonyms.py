"""Keyed pseudonyms: one patient has one pseudonym per project, the same in every modality
and on every run, and pseudonyms of different projects cannot be linked without the keys.

Definition (every code path must equal it)::

    digest = HMAC-SHA256(project_key.subkey(pseudonym), normalised_id.encode("utf-8"))
    pseudonym = "P" + "".join(ALPHABET[b & 31] for b in digest[:20])

where `normalised_id` is the hospital id without surrounding white space (see
`patient_ids`) and ALPHABET is Crockford's base32 (0-9 and A-Z without I, L, O, U), so a
pseudonym is 21 characters, upper case, and cannot be misread (no I/1, L/1, O/0) or
confused with a hospital id. Each of the 20 characters carries 5 independent, uniformly
distributed bits of the HMAC output, 100 bits in all. The chance that any two of n
patients in one project share a pseudonym is at most n^2 / 2^101: about 4e-17 for ten
million patients and 4e-13 for a billion, far below the error rate of the source
records. (Taking the low 5 bits of each byte, rather than base32 of the first 100 bits,
lets a C-level `bytes.translate` do the encoding: `base64.b32encode` is Python code in
Python 3.11 and costs more than the HMAC.)
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac

from .keys import KeyPurpose, ProjectKey
from .patient_ids import PatientIdError, encode_patient_id, normalise_patient_id

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
"""Crockford's base32 digits, in value order."""

PREFIX = "P"
PSEUDONYM_CHARS = 20
PSEUDONYM_LENGTH = len(PREFIX) + PSEUDONYM_CHARS
PSEUDONYM_PATTERN = re.compile(rf"{PREFIX}[{ALPHABET}]{{{PSEUDONYM_CHARS}}}")
"""What every pseudonym looks like (use with `fullmatch`)."""

# Byte value -> Crockford digit of its low 5 bits.
_TO_DIGIT = bytes(ALPHABET.encode("ascii")[b & 31] for b in range(256))
_DIGEST_BYTES = 32
_BATCH = 4096  # big enough to amortise the C-level passes, small enough to stay in cache
_DROP = 0  # a byte value `_TO_DIGIT` never produces, used to mark bytes to delete
_HMAC = crypto_hmac.HMAC


def is_pseudonym(value: str) -> bool:
    """True if `value` has the form of a pseudonym (it says nothing about which project)."""
    return PSEUDONYM_PATTERN.fullmatch(value) is not None


class Pseudonymiser:
    """Pseudonyms for one project. Build one per project key and reuse it.

    `project_id` and `key_id` (the project key's id) may be written to manifests.
    """

    __slots__ = ("_mac", "key_id", "project_id")

    def __init__(self, project_key: ProjectKey) -> None:
        # OpenSSL's one-shot HMAC re-initialises the key every call; copying a keyed
        # context skips that and is what makes the batch path fast.
        self._mac = crypto_hmac.HMAC(project_key.subkey(KeyPurpose.pseudonym), hashes.SHA256())
        self.project_id = project_key.project_id
        self.key_id = project_key.key_id

    def __repr__(self) -> str:
        return f"Pseudonymiser(project_id={self.project_id!r}, key_id={self.key_id!r})"

    def pseudonym(self, patient_id: str) -> str:
        """The pseudonym of one hospital patient id (surrounding white space ignored)."""
        mac = self._mac.copy()
        mac.update(encode_patient_id(patient_id))
        return PREFIX + mac.finalize()[:PSEUDONYM_CHARS].translate(_TO_DIGIT).decode("ascii")

    def pseudonymise_many(self, patient_ids: Iterable[str]) -> list[str]:
        """Pseudonyms of many ids, in order; equal to `pseudonym` on each, but faster.

        Raises `PatientIdError` naming the position of the first id that is not a
        string, is empty after stripping, or is not encodable; nothing is returned then.
        """
        if isinstance(patient_ids, str | bytes):
            raise TypeError("pseudonymise_many takes an iterable of ids, not a single id")
        ids = patient_ids if isinstance(patient_ids, list) else list(patient_ids)
        out: list[str] = []
        for start in range(0, len(ids), _BATCH):
            chunk = ids[start : start + _BATCH]
            try:
                normalised = list(map(str.strip, chunk))
                if not all(normalised):
                    raise PatientIdError
                # One encode of the joined chunk is cheaper than one per id.
                encoded = "\n".join(normalised).encode("utf-8").split(b"\n")
            except (TypeError, UnicodeEncodeError, PatientIdError):
                raise _explain_bad_id(chunk, start) from None
            if len(encoded) != len(normalised):  # some id contains a line break itself
                encoded = [patient_id.encode("utf-8") for patient_id in normalised]
            out += _encode(self._digests(encoded))
        return out

    def _digests(self, encoded_ids: Iterable[bytes]) -> list[bytes]:
        # Locals and unbound methods: this loop is the cost of the whole batch.
        mac = self._mac
        copy, update, finalize = _HMAC.copy, _HMAC.update, _HMAC.finalize
        digests: list[bytes] = []
        append = digests.append
        for data in encoded_ids:
            h = copy(mac)
            update(h, data)
            append(finalize(h))
        return digests


def _encode(digests: list[bytes]) -> list[str]:
    """`PREFIX + digits of digest[:20]` for each digest, with C-level passes only."""
    n = len(digests)
    if not n:
        return []
    buf = bytearray(b"".join(digests).translate(_TO_DIGIT))
    # Each 32-byte record becomes: 20 digits, ",P" (separator and the next prefix),
    # then 10 marked bytes that are deleted; splitting on "," gives the pseudonyms.
    buf[PSEUDONYM_CHARS::_DIGEST_BYTES] = b"," * n
    buf[PSEUDONYM_CHARS + 1 :: _DIGEST_BYTES] = PREFIX.encode("ascii") * n
    marks = bytes([_DROP]) * n
    for offset in range(PSEUDONYM_CHARS + 2, _DIGEST_BYTES):
        buf[offset::_DIGEST_BYTES] = marks
    text = PREFIX + buf.translate(None, bytes([_DROP])).decode("ascii")
    return text.split(",")[:n]


def _explain_bad_id(chunk: list[str], start: int) -> PatientIdError:
    for position, patient_id in enumerate(chunk, start):
        try:
            normalise_patient_id(patient_id)
            encode_patient_id(patient_id)
        except PatientIdError as exc:
            return PatientIdError(f"patient id at position {position}: {exc}")
    return PatientIdError(
        f"a patient id between positions {start} and {start + len(chunk) - 1} is invalid"
    )
