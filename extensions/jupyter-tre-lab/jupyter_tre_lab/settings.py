"""What the spawner tells the workspace's server extension, read once from the environment.

Every value is checked when loaded; a malformed value stops the server instead of falling
back to something more permissive.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath

DEFAULT_DATA_ROOT = "/data"
DEFAULT_AUDIT_TIMEOUT = 5.0
DEFAULT_MAX_RECORD_BYTES = 1024 * 1024
DEFAULT_MAX_CONTENT_BYTES = 25 * 1024 * 1024


class SettingsError(ValueError):
    """An environment variable the extension needs has a value it cannot use."""


@dataclass(frozen=True)
class TreSettings:
    """The extension's settings; see `docs/reference/audit-records.md` for the audit side."""

    audit_url: str | None
    """Base URL of the hub-side audit service; None refuses every execution and save."""
    audit_token: str | None
    """The single-user server's own Hub token (`JUPYTERHUB_API_TOKEN`)."""
    review_url: str | None
    """Base URL of the hub-side output review service; None: no release requests here."""
    audit_timeout: float
    max_record_bytes: int
    max_content_bytes: int
    data_roots: tuple[str, ...]
    """Real (symlink-free) absolute paths of the dataset mounts; nothing under them is served."""
    terminals_allowed: bool
    project: str
    permit: str
    purpose: str
    expiry: str
    datasets: tuple[str, ...]


def load_settings(env: Mapping[str, str] | None = None) -> TreSettings:
    """Read the extension's settings from `env` (default: this process's environment)."""
    env = os.environ if env is None else env
    return TreSettings(
        audit_url=_url(env, "TRE_AUDIT_URL", "http://172.31.0.1:8082"),
        audit_token=env.get("JUPYTERHUB_API_TOKEN") or None,
        review_url=_url(env, "TRE_REVIEW_URL", "http://172.31.0.1:8083"),
        audit_timeout=_positive_float(env, "TRE_AUDIT_TIMEOUT", DEFAULT_AUDIT_TIMEOUT),
        max_record_bytes=_positive_int(env, "TRE_MAX_RECORD_BYTES", DEFAULT_MAX_RECORD_BYTES),
        max_content_bytes=_positive_int(env, "TRE_MAX_CONTENT_BYTES", DEFAULT_MAX_CONTENT_BYTES),
        data_roots=_data_roots(env.get("TRE_DATA_ROOT", DEFAULT_DATA_ROOT)),
        terminals_allowed=_flag(env, "TRE_TERMINALS_ALLOWED"),
        project=env.get("TRE_PROJECT", ""),
        permit=env.get("TRE_PERMIT", ""),
        purpose=env.get("TRE_PERMIT_PURPOSE", ""),
        expiry=env.get("TRE_PERMIT_EXPIRY", ""),
        datasets=tuple(d.strip() for d in env.get("TRE_DATASETS", "").split(",") if d.strip()),
    )


def _url(env: Mapping[str, str], name: str, example: str) -> str | None:
    """An optional http(s) base URL without a trailing slash; unset or empty is None."""
    url = env.get(name, "").strip().rstrip("/") or None
    if url is not None and not url.startswith(("http://", "https://")):
        raise SettingsError(
            f"{name}={url!r} is not an http:// or https:// URL (expected e.g. {example})"
        )
    return url


def _positive_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise SettingsError(f"{name}={raw!r} must be a finite number greater than 0")
    return value


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a whole number of bytes") from None
    if value <= 0:
        raise SettingsError(f"{name}={raw!r} must be greater than 0")
    return value


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "0").strip()
    if raw not in ("", "0", "1"):
        raise SettingsError(f"{name}={raw!r} must be 1 (allowed) or 0 (not allowed)")
    return raw == "1"


def _data_roots(raw: str) -> tuple[str, ...]:
    """One or more absolute paths separated by ':'; an empty value is refused (fail closed)."""
    roots = [r.strip() for r in raw.split(":") if r.strip()]
    if not roots:
        raise SettingsError("TRE_DATA_ROOT is empty; it must name the dataset mount (e.g. /data)")
    for root in roots:
        if not PurePosixPath(root).is_absolute():
            raise SettingsError(f"TRE_DATA_ROOT entry {root!r} is not an absolute path")
        if PurePosixPath(root) == PurePosixPath("/"):
            raise SettingsError("TRE_DATA_ROOT must not be '/' (nothing could be served)")
    return tuple(os.path.realpath(r) for r in roots)


def is_under(path: str, roots: tuple[str, ...]) -> bool:
    """Whether the real path `path` is one of `roots` or inside one of them."""
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)
