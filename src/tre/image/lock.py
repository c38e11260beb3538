"""Regenerate the workspace image's full pin set from what people chose.

Invariant: `requirements.txt` is only ever written by resolving
`requirements.in` with pip inside a throwaway container of the image's own
base (same Python, same platform), and is replaced whole or not at all; the
CA bundle reaches that container as a read-only bind mount, never an image.

Run as `python -m tre.image.lock [CONTEXT_DIR]`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from .base import DEFAULT_BASE_TAG, build_base_image
from .build import default_context_dir, resolve_ca_bundle
from .docker import DockerCli, find_docker
from .errors import ImageBuildError
from .progress import Progress

REQUIREMENTS_IN = "requirements.in"
REQUIREMENTS_TXT = "requirements.txt"
IMAGE_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
"""The base image's own bundle, used when the host gives none."""
HEADER = """\
# The workspace image's complete pin set, resolved for {base} (Python and
# platform of the image). GENERATED from requirements.in by
#   .venv/bin/python -m tre.image.lock
# Do not edit by hand; the image installs exactly these, with --no-deps.
"""

_RESOLVE = (
    "set -eu; python3 -m venv /tmp/lock; "
    "/tmp/lock/bin/pip --quiet --no-cache-dir --disable-pip-version-check "
    'install --cert "$CA" -r /in/requirements.in >&2; '
    "/tmp/lock/bin/pip freeze --disable-pip-version-check"
)


def lock_command(
    context: Path, *, base: str, ca_bundle: Path | None, pip_index_url: str | None
) -> list[str]:
    """The `docker run` arguments that print the frozen pin set of `requirements.in`."""
    args = ["run", "--rm", "--volume", f"{context.resolve()}:/in:ro"]
    if ca_bundle is not None:
        args += ["--volume", f"{ca_bundle.resolve()}:/run/build_ca:ro", "--env", "CA=/run/build_ca"]
    else:
        args += ["--env", f"CA={IMAGE_CA_BUNDLE}"]
    if pip_index_url:
        args += ["--env", f"PIP_INDEX_URL={pip_index_url}"]
    return [*args, base, "sh", "-c", _RESOLVE]


LEFT_OUT = frozenset({"rfc3987-syntax", "lark"})
"""Optional dependencies of jsonschema's `iri` format that cost about 1.2 s at every
server start (rfc3987-syntax compiles its grammar at import; lark is only its parser).
No Jupyter schema uses that format; `pip check` still passes without them."""


def render_lock(frozen: str, base: str) -> str:
    """The requirements.txt text: the header, then `pip freeze` sorted case-insensitively."""
    pins = sorted(
        (
            line.strip()
            for line in frozen.splitlines()
            if line.strip() and line.split("==")[0].strip().lower() not in LEFT_OUT
        ),
        key=str.lower,
    )
    for pin in pins:
        if "==" not in pin or pin.startswith("-"):
            raise ImageBuildError(f"pip freeze gave {pin!r}, which is not a name==version pin")
    return HEADER.format(base=base) + "\n".join(pins) + "\n"


def lock_requirements(
    context_dir: Path | None = None,
    *,
    base: str = DEFAULT_BASE_TAG,
    ca_bundle: Path | None = None,
    pip_index_url: str | None = None,
    docker: DockerCli | None = None,
    progress: Progress | None = None,
) -> Path:
    """Resolve `requirements.in` and write `requirements.txt` beside it; return its path."""
    context = context_dir or default_context_dir()
    if not (context / REQUIREMENTS_IN).is_file():
        raise ImageBuildError(f"{context / REQUIREMENTS_IN}: not found")
    docker = docker or find_docker(require_buildkit=False)
    if base == DEFAULT_BASE_TAG:
        build_base_image(tag=base, docker=docker, progress=progress)
    frozen = docker.run(
        *lock_command(
            context, base=base, ca_bundle=resolve_ca_bundle(ca_bundle), pip_index_url=pip_index_url
        ),
        timeout=1800,
        what=f"resolving {context / REQUIREMENTS_IN}",
    )
    target = context / REQUIREMENTS_TXT
    partial = target.with_name(f".{target.name}.partial")
    partial.write_text(render_lock(frozen, base), encoding="utf-8")
    partial.replace(target)
    return target


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m tre.image.lock [CONTEXT_DIR]`."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        path = lock_requirements(Path(args[0]) if args else None)
    except ImageBuildError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    sys.stdout.write(f"wrote {path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
