"""The dependency closure of a permit's package additions, resolved by pip itself.

Invariant: the closure is what pip's own resolver picks for the workspace image's
Python and platform from the site's upstream index, within what the site list and the
permit already allow (they are passed as constraints), and nothing else: pip runs
in a subprocess with no pip configuration files and only the `PIP_*` variables that
say how to reach the index (certificate, proxy), binary wheels only, and a result
that came from anywhere but an http(s) index (a local folder) is refused.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

try:  # keeps comments in packages.yaml; installed with the hub extra (oauthenticator, devpi)
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    HAVE_RUAMEL = True
except ImportError:  # pragma: no cover
    HAVE_RUAMEL = False

from tre.policy import Finding, Policy, validate_policy
from tre.policy.files import POLICY_FILES
from tre.policy.packages import DEFAULT_INDEX, combine, normalise_entry

IMAGE_PYTHON_VERSION = "3.11"
"""Python of the workspace image: python3 of Debian bookworm (tre-base:bookworm)."""

IMAGE_GLIBC = (2, 36)
"""glibc of Debian bookworm: every manylinux_2_x wheel with x <= 36 runs in the image."""

IMAGE_PLATFORMS: tuple[str, ...] = (
    *(f"manylinux_2_{minor}_x86_64" for minor in range(IMAGE_GLIBC[1], 4, -1)),
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
    "linux_x86_64",
)
"""Platform tags pip may pick wheels for (pip does not widen a `manylinux_2_x` tag to
older glibc versions itself, so each one is listed)."""

PIP_ENV_KEPT = frozenset(
    {"PIP_CERT", "PIP_CLIENT_CERT", "PIP_PROXY", "PIP_TRUSTED_HOST", "PIP_DEFAULT_TIMEOUT"}
)
"""`PIP_*` variables passed on to pip: how to reach the index, never where to look."""

DEFAULT_TIMEOUT = 300.0

NETWORK_SIGNS = (
    "Max retries exceeded",
    "NewConnectionError",
    "ConnectTimeout",
    "ReadTimeout",
    "ProxyError",
    "SSLError",
    "Connection refused",
    "Name or service not known",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "Could not fetch URL",
    "No route to host",
)
"""What pip prints when it could not talk to the index at all."""


class ResolveError(Exception):
    """The closure could not be computed; the message says why."""


class IndexUnreachable(ResolveError):
    """pip could not reach the upstream index."""


class Unresolvable(ResolveError):
    """pip reached the index but found no set of wheels that satisfies the request."""


class WriteRefused(ResolveError):
    """The new packages.yaml would not validate; the file was left as it was."""

    def __init__(self, path: Path, findings: Sequence[Finding]) -> None:
        self.findings = tuple(findings)
        lines = "\n".join(str(f) for f in self.findings)
        super().__init__(
            f"{path} left unchanged: with the new pins the policy has errors:\n{lines}"
        )


class Source(StrEnum):
    site = "site"
    permit = "permit"
    new = "new"


@dataclass(frozen=True)
class ResolvedPackage:
    name: str
    """PEP 503 name."""
    version: str
    requested: bool
    """Named on the command line (not only pulled in as a dependency)."""
    source: Source
    """Already allowed by the site list or the permit, or new."""
    sha256: str | None = None

    @property
    def pin(self) -> str:
        return f"{self.name}=={self.version}"


@dataclass(frozen=True)
class Resolution:
    permit: str
    index: str
    requested: tuple[str, ...]
    packages: tuple[ResolvedPackage, ...]

    @property
    def new_pins(self) -> tuple[str, ...]:
        return tuple(p.pin for p in self.packages if p.source is Source.new)


PipRunner = Callable[[list[str], float], "subprocess.CompletedProcess[str]"]


def _run_pip(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") or k in PIP_ENV_KEPT}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    # No pip configuration file either: a site's pip.conf may add extra indexes,
    # find-links or constraints that the mirror will never serve.
    env["PIP_CONFIG_FILE"] = os.devnull
    return subprocess.run(
        [sys.executable, "-m", "pip", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def parse_requests(texts: Sequence[str]) -> tuple[str, ...]:
    """The requested additions, normalised; `ResolveError` naming a bad one."""
    if not texts:
        raise ResolveError("name at least one package to resolve, e.g. 'lifelines==0.30.0'")
    normalised = []
    for text in texts:
        try:
            normalised.append(normalise_entry(text))
        except ValueError as exc:
            raise ResolveError(str(exc)) from exc
    return tuple(normalised)


def pip_arguments(
    requests: Sequence[str], *, index: str, constraints: Path, report: Path
) -> list[str]:
    """pip's arguments for a dry-run resolution as the workspace image would install."""
    args = [
        "install",
        "--dry-run",
        "--ignore-installed",
        "--quiet",
        "--no-input",
        "--report",
        str(report),
        "--index-url",
        index,
        "--only-binary=:all:",
        "--python-version",
        IMAGE_PYTHON_VERSION,
        "--implementation",
        "cp",
        "--timeout",
        "20",
        "--retries",
        "1",
        "--constraint",
        str(constraints),
    ]
    for platform in IMAGE_PLATFORMS:
        args += ["--platform", platform]
    return [*args, "--", *requests]


def resolve_additions(
    policy: Policy,
    permit_id: str,
    requests: Sequence[str],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    run: PipRunner = _run_pip,
) -> Resolution:
    """Resolve `requests` (with their dependencies) for the permit's workspaces and say,
    for each package of the closure, whether the site list or the permit already allows
    it or whether it would be new."""
    permit = policy.permit(permit_id)
    if permit is None:
        known = ", ".join(sorted(p.id for p in policy.permits)) or "(none)"
        raise ResolveError(f"unknown permit '{permit_id}' (allowed: {known})")
    wanted = parse_requests(requests)
    site = combine(policy.python.site)
    granted = combine(policy.python.additions(permit_id))
    constraints = [f"{name}{spec}" for name, spec in sorted({**site, **granted}.items())]
    with tempfile.TemporaryDirectory(prefix="tre-resolve-") as tmp:
        constraints_file = Path(tmp) / "constraints.txt"
        constraints_file.write_text("".join(f"{c}\n" for c in constraints), encoding="utf-8")
        report_file = Path(tmp) / "report.json"
        args = pip_arguments(
            wanted, index=policy.python.index, constraints=constraints_file, report=report_file
        )
        try:
            done = run(args, timeout)
        except subprocess.TimeoutExpired as exc:
            raise IndexUnreachable(
                f"pip did not finish resolving within {timeout:.0f} s from "
                f"{policy.python.index}; is the index reachable?"
            ) from exc
        if done.returncode != 0:
            raise _pip_failure(done, policy.python.index, wanted)
        try:
            report = json.loads(report_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ResolveError(f"pip gave no readable installation report: {exc}") from exc
    packages = tuple(
        _classify(item, site, granted, policy.python.index) for item in report.get("install", [])
    )
    return Resolution(
        permit=permit_id,
        index=policy.python.index,
        requested=wanted,
        packages=tuple(sorted(packages, key=lambda p: p.name)),
    )


def _pip_failure(
    done: subprocess.CompletedProcess[str], index: str, wanted: Sequence[str]
) -> ResolveError:
    message = (done.stderr or done.stdout or "").strip() or f"pip exited with {done.returncode}"
    if any(sign in message for sign in NETWORK_SIGNS):
        return IndexUnreachable(f"cannot reach the package index {index}:\n{message}")
    return Unresolvable(
        f"pip cannot resolve {' '.join(wanted)} for Python {IMAGE_PYTHON_VERSION} on the "
        f"workspace image's platform (wheels only, within what is already allowed):\n{message}"
    )


def _classify(
    item: dict[str, Any],
    site: dict[str, SpecifierSet],
    granted: dict[str, SpecifierSet],
    index: str,
) -> ResolvedPackage:
    metadata = item.get("metadata") or {}
    name = canonicalize_name(str(metadata.get("name", "")))
    version = str(metadata.get("version", ""))
    info = item.get("download_info") or {}
    url = str(info.get("url", ""))
    if not name or not version:
        raise ResolveError(f"pip's report names a package without name or version: {metadata}")
    if not url.startswith(("https://", "http://")):
        raise ResolveError(
            f"pip took {name} {version} from {url or 'an unknown place'}, not from {index}; "
            "remove find-links (or other local sources) from pip's configuration"
        )
    try:
        parsed = Version(version)
    except InvalidVersion as exc:
        raise ResolveError(f"pip resolved {name} to an invalid version {version!r}") from exc
    source = Source.new
    if name in site and site[name].contains(parsed, prereleases=True):
        source = Source.site
    elif name in granted and granted[name].contains(parsed, prereleases=True):
        source = Source.permit
    hashes = (info.get("archive_info") or {}).get("hashes") or {}
    return ResolvedPackage(
        name=name,
        version=version,
        requested=bool(item.get("requested")),
        source=source,
        sha256=hashes.get("sha256"),
    )


PACKAGES_FILE = "packages.yaml"
SCHEMA_COMMENT = "# yaml-language-server: $schema=../schema/packages.schema.json\n"


@dataclass(frozen=True)
class WriteResult:
    path: Path
    added: tuple[str, ...]
    comments_kept: bool
    """False when ruamel.yaml was not importable and the file was rewritten with PyYAML."""


def write_additions(
    policy_dir: Path, permit_id: str, pins: Sequence[str], today: date
) -> WriteResult:
    """Append `pins` to the permit's list in `policy_dir/packages.yaml`, keeping the rest of
    the file; the new file replaces the old only if the whole policy still validates
    (as services load it, on `today`), else `WriteRefused` and the file is untouched."""
    path = policy_dir / PACKAGES_FILE
    if not pins:
        return WriteResult(path, (), comments_kept=True)
    old = path.read_text(encoding="utf-8") if path.exists() else None
    new, comments_kept = _with_pins(old, permit_id, list(pins))
    with tempfile.TemporaryDirectory(prefix="tre-packages-") as tmp:
        trial = Path(tmp)
        for spec in POLICY_FILES:
            if spec.name != PACKAGES_FILE and (policy_dir / spec.name).is_file():
                (trial / spec.name).write_bytes((policy_dir / spec.name).read_bytes())
        (trial / PACKAGES_FILE).write_text(new, encoding="utf-8")
        report = validate_policy(trial, today, strict=False)
        if not report.ok:
            raise WriteRefused(
                path,
                [
                    f.model_copy(update={"file": str(policy_dir / Path(f.file).name)})
                    for f in report.errors
                ],
            )
    _replace(path, new)
    return WriteResult(path, tuple(pins), comments_kept)


def _replace(path: Path, text: str) -> None:
    """Write `text` to a temporary name beside `path`, sync it, then rename over `path`."""
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    partial = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        partial.chmod(mode)
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _with_pins(old: str | None, permit_id: str, pins: list[str]) -> tuple[str, bool]:
    if not HAVE_RUAMEL:
        return _with_pins_pyyaml(old, permit_id, pins), False
    round_trip = YAML()
    round_trip.preserve_quotes = True
    round_trip.width = 4096
    round_trip.indent(mapping=2, sequence=4, offset=2)
    data = round_trip.load(old) if old else None
    if data is None:
        data = CommentedMap()
    python = _mapping(data, "python", CommentedMap)
    if "index" not in python and not old:
        python["index"] = DEFAULT_INDEX
    if python.get("site") is None and not old:
        python["site"] = CommentedSeq()
    permits = _mapping(python, "permits", CommentedMap)
    entries = permits.get(permit_id)
    if entries is None:
        entries = permits[permit_id] = CommentedSeq()
    if not isinstance(entries, list):
        raise ResolveError(f"python.permits.{permit_id} in {PACKAGES_FILE} is not a list")
    entries.extend(pins)
    buffer = io.StringIO()
    round_trip.dump(data, buffer)
    text = buffer.getvalue()
    return (text if old else SCHEMA_COMMENT + text), True


def _mapping(parent: Any, key: str, factory: Callable[[], Any]) -> Any:
    value = parent.get(key)
    if value is None:
        value = parent[key] = factory()
    if not isinstance(value, dict):
        raise ResolveError(f"'{key}' in {PACKAGES_FILE} is not a mapping")
    return value


def _with_pins_pyyaml(old: str | None, permit_id: str, pins: list[str]) -> str:
    data = (yaml.safe_load(old) if old else None) or {}
    python = _mapping(data, "python", dict)
    python.setdefault("index", DEFAULT_INDEX)
    permits = _mapping(python, "permits", dict)
    entries = permits.get(permit_id) or []
    permits[permit_id] = [*entries, *pins]
    return SCHEMA_COMMENT + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
