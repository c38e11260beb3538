"""The registry-free base image: Debian bookworm from a Debian mirror, via mmdebstrap.

Invariant: the base is built from Debian packages only (no container registry),
carries no setuid/setgid file, and is built once per tag: an existing tag is
kept unless the caller forces a rebuild. The functions that parse apt sources
and build command lines are pure.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .docker import DockerCli, find_docker, stream_command
from .errors import ImageBuildError
from .progress import Progress, no_progress

DEFAULT_BASE_TAG = "tre-base:bookworm"
SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "python3-pip", "ca-certificates", "tini")
DEFAULT_SOURCES = (
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
)
"""Used when the host's apt sources name no mirror for the suite (e.g. an Ubuntu CI runner)."""

DPKG_OPTIONS = (
    # What Debian's own -slim images leave out; copyright files stay.
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/locale/*",
)
STRIP_SETUID_HOOK = 'find "$1" -xdev -perm /6000 -exec chmod ug-s {} +'
"""mmdebstrap customize hook ($1 is the new root): no setuid/setgid file or directory."""

IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SUITE_LABEL = "org.jupyter-tre.base.suite"
SOURCES_LABEL = "org.jupyter-tre.base.sources"

APT_SOURCES_FILES = ("etc/apt/sources.list",)
APT_SOURCES_DIR = "etc/apt/sources.list.d"

_MMDEBSTRAP_PHASES = (
    "running apt-get update",
    "downloading packages",
    "extracting archives",
    "installing essential packages",
    "installing remaining packages",
    "cleaning package lists",
    "creating tarball",
)
BASE_STEPS = len(_MMDEBSTRAP_PHASES) + 1
"""mmdebstrap's phases, then `docker import`."""


@dataclass(frozen=True)
class BaseImage:
    """A base image in the local engine."""

    tag: str
    image_id: str
    built: bool
    """False when the tag already existed and was kept."""
    seconds: float
    size_bytes: int


# --- apt sources ----------------------------------------------------------------------------

_ONE_LINE = re.compile(r"^(?P<type>deb(?:-src)?)\s+(?:\[[^\]]*\]\s+)?(?P<rest>.+)$")


def _suite_matches(candidate: str, suite: str) -> bool:
    return candidate in (suite, f"{suite}-updates", f"{suite}-security")


def sources_from_one_line(text: str, suite: str = SUITE) -> list[str]:
    """`deb URI SUITE main` lines for `suite` from a one-line-style sources.list."""
    found: list[str] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        match = _ONE_LINE.match(line)
        if not match or match.group("type") != "deb":
            continue
        parts = match.group("rest").split()
        if len(parts) >= 3 and _suite_matches(parts[1], suite) and "main" in parts[2:]:
            found.append(f"deb {parts[0]} {parts[1]} main")
    return found


def sources_from_deb822(text: str, suite: str = SUITE) -> list[str]:
    """`deb URI SUITE main` lines for `suite` from a deb822-style .sources file."""
    found: list[str] = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = ""
        for raw in stanza.splitlines():
            if raw.startswith("#") or not raw.strip():
                continue
            if raw[:1].isspace() and key:  # a continuation line
                fields[key] += " " + raw.strip()
                continue
            key, _, value = raw.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()
        if fields.get("enabled", "yes").lower() == "no":
            continue
        if "deb" not in fields.get("types", "").split():
            continue
        if "main" not in fields.get("components", "").split():
            continue
        for uri in fields.get("uris", "").split():
            for candidate in fields.get("suites", "").split():
                if _suite_matches(candidate, suite):
                    found.append(f"deb {uri} {candidate} main")
    return found


def debian_sources(files: Mapping[str, str], suite: str = SUITE) -> list[str]:
    """The mirrors for mmdebstrap, from apt sources files (name -> text).

    The host's own mirrors are used when they serve `suite` itself (a site's
    internal mirror keeps working without internet); otherwise Debian's.
    """
    found: list[str] = []
    for name in sorted(files):
        parse = sources_from_deb822 if name.endswith(".sources") else sources_from_one_line
        for line in parse(files[name], suite):
            if line not in found:
                found.append(line)
    if not any(line.split()[2] == suite for line in found):
        return list(DEFAULT_SOURCES)
    return found


def read_apt_sources(root: Path = Path("/")) -> dict[str, str]:
    """The apt sources files under `root` that apt itself would read, by path."""
    paths = [root / name for name in APT_SOURCES_FILES]
    folder = root / APT_SOURCES_DIR
    if folder.is_dir():
        paths += sorted(p for p in folder.iterdir() if p.suffix in (".list", ".sources"))
    texts: dict[str, str] = {}
    for path in paths:
        try:
            texts[str(path)] = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue  # unreadable or absent: apt would skip it too
    return texts


# --- command lines --------------------------------------------------------------------------


def mmdebstrap_command(
    target: Path,
    sources: Sequence[str],
    *,
    suite: str = SUITE,
    packages: Iterable[str] = BASE_PACKAGES,
    executable: str = "mmdebstrap",
) -> list[str]:
    """The mmdebstrap argv that writes a minbase root filesystem tarball to `target`."""
    if not sources:
        raise ImageBuildError("no Debian mirror given for the base image")
    return [
        executable,
        "--variant=minbase",
        f"--include={','.join(packages)}",
        *(f"--dpkgopt={option}" for option in DPKG_OPTIONS),
        f"--customize-hook={STRIP_SETUID_HOOK}",
        suite,
        str(target),
        *sources,
    ]


def import_args(tarball: Path, tag: str, sources: Sequence[str], suite: str = SUITE) -> list[str]:
    """`docker import` arguments that turn the tarball into image `tag`."""
    mirrors = ", ".join(sources)
    changes = (
        f"ENV PATH={IMAGE_PATH}",
        "ENV LANG=C.UTF-8",
        'CMD ["/bin/bash"]',
        f'LABEL {SUITE_LABEL}="{suite}" {SOURCES_LABEL}="{mirrors}"',
    )
    args = ["import"]
    for change in changes:
        args += ["--change", change]
    return [*args, "--message", f"mmdebstrap --variant=minbase {suite}", str(tarball), tag]


def mmdebstrap_phase(line: str) -> int | None:
    """The number of mmdebstrap phases finished when it prints `line`, if it marks one."""
    text = line.removeprefix("I: ")
    for index, phase in enumerate(_MMDEBSTRAP_PHASES):
        if text.startswith(phase):
            return index
    return None


# --- building -------------------------------------------------------------------------------


def build_base_image(
    *,
    tag: str = DEFAULT_BASE_TAG,
    sources: Sequence[str] | None = None,
    docker: DockerCli | None = None,
    force: bool = False,
    tmp_dir: Path | None = None,
    progress: Progress | None = None,
) -> BaseImage:
    """Build `tag` from a Debian mirror with mmdebstrap and `docker import`, unless it exists.

    `sources` are apt source lines (`deb URI SUITE main`); by default the
    host's own mirrors for bookworm, else deb.debian.org.
    """
    report = progress or no_progress
    docker = docker or find_docker(require_buildkit=False)
    docker.engine_version()
    existing = docker.image_id(tag)
    if existing and not force:
        report("base image", BASE_STEPS, BASE_STEPS)
        return BaseImage(tag, existing, False, 0.0, docker.image_size(existing))
    mmdebstrap = shutil.which("mmdebstrap")
    if mmdebstrap is None:
        raise ImageBuildError(
            f"mmdebstrap is not installed, and the base image {tag} does not exist: install "
            "the Debian package mmdebstrap (apt-get install mmdebstrap; on Ubuntu also "
            "debian-archive-keyring), or build on an upstream base from a registry "
            "(base='debian:bookworm-slim')."
        )
    mirrors = list(sources) if sources is not None else debian_sources(read_apt_sources())
    started = time.monotonic()
    report("base image", 0, BASE_STEPS)
    with tempfile.TemporaryDirectory(prefix="tre-base-", dir=tmp_dir) as work:
        tarball = Path(work) / "base.tar"

        def on_line(line: str) -> None:
            phase = mmdebstrap_phase(line)
            if phase is not None:
                report("base image", phase, BASE_STEPS)

        stream_command(
            mmdebstrap_command(tarball, mirrors, executable=mmdebstrap),
            on_line,
            what=f"mmdebstrap (bookworm from {', '.join(mirrors)})",
        )
        report("base image", BASE_STEPS - 1, BASE_STEPS)
        image_id = docker.run(
            *import_args(tarball, tag, mirrors), timeout=900, what=f"importing {tag}"
        )
    report("base image", BASE_STEPS, BASE_STEPS)
    return BaseImage(
        tag, image_id, True, time.monotonic() - started, docker.image_size(image_id or tag)
    )
