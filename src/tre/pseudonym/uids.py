"""Keyed DICOM UID remapping: the same source UID always maps to the same new UID within a
project (so studies, series and references stay linked across files and re-runs) and to
unrelated UIDs in other projects.

A new UID is "2.25." followed by the decimal value of a 128-bit UUID made from
HMAC-SHA256 under the project's UID sub-key, with the version set to 8 (custom) and
the RFC 9562 variant bits, as DICOM PS3.5 B.2 asks of the 2.25 arc. That leaves
122 keyed bits (collisions within a project: at most n^2 / 2^123), and a UID of at
most 44 characters, well within DICOM's 64.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac

from .keys import KeyPurpose, ProjectKey

UUID_ROOT = "2.25."
MAX_UID_LENGTH = 64
_PADDING = " \t\r\n\x00"  # DICOM pads UI values with NUL; exports add white space


class UidError(ValueError):
    """A source UID is not a string, is empty or cannot be encoded."""


def normalise_source_uid(source_uid: str) -> str:
    """The UID without surrounding white space and NUL padding, which are not part of it."""
    if not isinstance(source_uid, str):
        raise UidError(f"a DICOM UID must be a string, got {type(source_uid).__name__}")
    uid = source_uid.strip(_PADDING)
    if not uid:
        raise UidError(f"DICOM UID {source_uid!r} is empty")
    return uid


class UidMapper:
    """New DICOM UIDs for one project.

    Source UIDs are hashed as given (after removing padding), valid or not: real
    archives hold UIDs that break the syntax rules, and each must still map to one
    valid UID.
    """

    __slots__ = ("_mac", "key_id", "project_id")

    def __init__(self, project_key: ProjectKey) -> None:
        self._mac = crypto_hmac.HMAC(project_key.subkey(KeyPurpose.dicom_uid), hashes.SHA256())
        self.project_id = project_key.project_id
        self.key_id = project_key.key_id

    def __repr__(self) -> str:
        return f"UidMapper(project_id={self.project_id!r}, key_id={self.key_id!r})"

    def remap(self, source_uid: str) -> str:
        """The project's UID for `source_uid`."""
        try:
            data = normalise_source_uid(source_uid).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise UidError(f"DICOM UID {source_uid!r} cannot be encoded as UTF-8") from exc
        mac = self._mac.copy()
        mac.update(data)
        raw = bytearray(mac.finalize()[:16])
        raw[6] = (raw[6] & 0x0F) | 0x80  # version 8: custom (RFC 9562 section 5.8)
        raw[8] = (raw[8] & 0x3F) | 0x80  # the RFC 9562 variant
        return UUID_ROOT + str(int.from_bytes(raw, "big"))
