"""What a workspace image is built from, and the content hash that names it.

Invariant: the content hash is a pure function of the build context's files
(path and bytes) and the build arguments; it ignores file times, the order
files were found in, and the CA bundle, which only decides whom the build
trusts for TLS and never reaches the image. Same inputs, same hash; any
changed byte or argument, a different hash.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .errors import ImageBuildError

HASH_SCHEME = b"jupyter-tre workspace image inputs v1\n"
HASH_LENGTH = 16
"""Hex digits of the sha256 kept: 64 bits, plenty to tell a site's images apart."""

WHEELS_DIR = "wheels"
"""Folder of the build context whose *.whl are installed into the image (extensions)."""


@dataclass(frozen=True)
class BuildInputs:
    """Everything that decides a workspace image's content."""

    files: Mapping[str, bytes]
    """Build context: POSIX path relative to the context -> content."""
    build_args: Mapping[str, str] = field(default_factory=dict)
    """`--build-arg`s, plus facts such as the base image's ID that decide the result."""


def content_hash(inputs: BuildInputs) -> str:
    """The hex content hash of the inputs (HASH_LENGTH digits)."""
    digest = hashlib.sha256(HASH_SCHEME)
    for path in sorted(inputs.files):
        data = inputs.files[path]
        digest.update(b"file\0%s\0%d\0" % (path.encode("utf-8"), len(data)))
        digest.update(data)
    for name in sorted(inputs.build_args):
        value = inputs.build_args[name]
        digest.update(b"arg\0%s\0%s\0" % (name.encode("utf-8"), value.encode("utf-8")))
    return digest.hexdigest()[:HASH_LENGTH]


def read_context(context: Path) -> dict[str, bytes]:
    """Every regular file under `context`, by POSIX relative path; symlinks are refused."""
    if not context.is_dir():
        raise ImageBuildError(f"{context}: build context folder not found")
    files: dict[str, bytes] = {}
    for path in sorted(context.rglob("*")):
        relative = PurePosixPath(path.relative_to(context).as_posix())
        if path.is_symlink():
            raise ImageBuildError(
                f"{path}: symbolic link in the build context; copy the file instead"
            )
        if path.is_file():
            files[str(relative)] = path.read_bytes()
    return files


def assemble_context(source: Path, extra_wheels: Sequence[Path], target: Path) -> None:
    """Copy the build context `source` to `target`, adding `extra_wheels` to its wheels folder.

    The target is a private folder the build may read in full; it never holds
    the CA bundle (that travels as a BuildKit secret).
    """
    if not (source / "Dockerfile").is_file():
        raise ImageBuildError(f"{source}: no Dockerfile; is this the images/workspace folder?")
    shutil.copytree(source, target, symlinks=True, dirs_exist_ok=True)
    wheels = target / WHEELS_DIR
    wheels.mkdir(exist_ok=True)
    for wheel in extra_wheels:
        if wheel.suffix != ".whl" or not wheel.is_file():
            raise ImageBuildError(f"{wheel}: not a wheel file (expected an existing *.whl)")
        destination = wheels / wheel.name
        if destination.exists():
            raise ImageBuildError(
                f"{wheel}: a wheel named {wheel.name} is already in {source / WHEELS_DIR}"
            )
        shutil.copyfile(wheel, destination)
