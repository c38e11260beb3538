"""Build the workspace image: base if needed, then images/workspace, named by content hash.

Invariant: the CA bundle the build trusts reaches the build only as a BuildKit
secret, so no layer, intermediate image or cache entry holds it; an image
whose content-hash label matches the inputs is reused, never rebuilt; and
every untagged image a build leaves behind is removed before we return.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from .base import DEFAULT_BASE_TAG, BaseImage, build_base_image
from .docker import DockerCli, find_docker
from .errors import ImageBuildError
from .inputs import WHEELS_DIR, BuildInputs, assemble_context, content_hash, read_context
from .progress import Progress, no_progress

DEFAULT_REPOSITORY = "jupyter-tre/workspace"
LATEST = "latest"
CONTENT_HASH_LABEL = "org.jupyter-tre.content-hash"
VERSION_LABEL = "org.jupyter-tre.version"
BUILD_CA_ID = "build_ca"
"""The BuildKit secret id the Dockerfile mounts at /run/secrets/build_ca."""
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
"""Debian's system bundle, which includes CAs added under /usr/local/share/ca-certificates."""
BASE_ID_INPUT = "base image id"
"""Name of the content-hash input that pins the base image (not a build argument)."""

_STEP = re.compile(r"^#\d+ \[(?:(?P<stage>[\w.-]+) )?(?P<done>\d+)/(?P<total>\d+)\] ")


@dataclass(frozen=True)
class ImageInfo:
    """A workspace image in the local engine."""

    tag: str
    """`repository:<content-hash>`: what the spawner should run."""
    latest: str
    image_id: str
    content_hash: str
    base: str
    built: bool
    """False when an image with the same content hash existed and was reused."""
    seconds: float
    size_bytes: int
    base_image: BaseImage | None = None
    """The registry-free base, when this call made sure of it."""


def default_context_dir() -> Path:
    """The workspace image's build context: packaged with `tre`, or in the source tree."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "workspace", here.parents[2] / "images" / "workspace"):
        if (candidate / "Dockerfile").is_file():
            return candidate
    raise ImageBuildError(
        "cannot find the workspace image's build context (images/workspace with its "
        "Dockerfile); pass context_dir"
    )


def build_args(*, base: str, version: str, pip_index_url: str | None) -> dict[str, str]:
    """The `--build-arg`s that decide the image (the content hash itself is added later)."""
    args = {"BASE": base, "TRE_VERSION": version}
    if pip_index_url:
        args["PIP_INDEX_URL"] = pip_index_url
    return args


def build_command(
    context: Path,
    *,
    tags: Sequence[str],
    args: Mapping[str, str],
    ca_bundle: Path | None,
) -> list[str]:
    """The `docker build` arguments (run with DOCKER_BUILDKIT=1)."""
    command = ["build", "--progress=plain"]
    for tag in tags:
        command += ["--tag", tag]
    for name in sorted(args):
        command += ["--build-arg", f"{name}={args[name]}"]
    if ca_bundle is not None:
        command += ["--secret", f"id={BUILD_CA_ID},src={ca_bundle}"]
    return [*command, str(context)]


def buildkit_step(line: str) -> tuple[str, int, int] | None:
    """(stage, steps finished, steps) when a BuildKit plain-progress line starts a step."""
    match = _STEP.match(line)
    if match is None:
        return None
    stage = match.group("stage") or "workspace"
    return stage, int(match.group("done")) - 1, int(match.group("total"))


REQUIRED_WHEELS = ("jupyter_tre_lab",)
"""Distributions (wheel-file spelling) the workspace image cannot be built without."""


def check_required_wheels(context: Path, required: Sequence[str]) -> None:
    """Raise `ImageBuildError` unless a wheel of every `required` distribution is in the
    context's wheels folder (exactly one each: two versions would be ambiguous)."""
    for name in required:
        found = sorted((context / WHEELS_DIR).glob(f"{name}-*.whl"))
        if not found:
            raise ImageBuildError(
                f"{context_wheels_hint(name)}: no {name} wheel to install; build it with "
                "`make extension` (scripts/build-extension)"
            )
        if len(found) > 1:
            raise ImageBuildError(
                f"{context_wheels_hint(name)}: {len(found)} {name} wheels "
                f"({', '.join(p.name for p in found)}); keep exactly one"
            )


def context_wheels_hint(name: str) -> str:
    return f"images/workspace/{WHEELS_DIR}/{name}-*.whl"


def resolve_ca_bundle(ca_bundle: Path | None) -> Path | None:
    """The bundle to hand the build: the given one (which must exist), else the host's, if any."""
    if ca_bundle is not None:
        if not ca_bundle.is_file():
            raise ImageBuildError(f"{ca_bundle}: CA bundle for the build not found")
        return ca_bundle
    return HOST_CA_BUNDLE if HOST_CA_BUNDLE.is_file() else None


def build_workspace_image(
    *,
    context_dir: Path | None = None,
    base: str = DEFAULT_BASE_TAG,
    repository: str = DEFAULT_REPOSITORY,
    extension_wheels: Sequence[Path] = (),
    required_wheels: Sequence[str] = REQUIRED_WHEELS,
    ca_bundle: Path | None = None,
    pip_index_url: str | None = None,
    debian_sources: Sequence[str] | None = None,
    force: bool = False,
    docker: DockerCli | None = None,
    tmp_dir: Path | None = None,
    progress: Progress | None = None,
) -> ImageInfo:
    """Build (or reuse) the workspace image and tag it `repository:<hash>` and `:latest`.

    With the default `base`, the registry-free base is built first when it is
    missing (from `debian_sources`, default: the host's bookworm mirrors). Any
    other `base` (e.g. `debian:bookworm-slim`) is used as the engine finds it.
    `ca_bundle` (default: the host's system bundle) is trusted by pip and apt
    during the build only. `force` rebuilds even when the hash is known.
    """
    report = progress or no_progress
    docker = docker or find_docker()
    docker.engine_version()
    context_dir = context_dir or default_context_dir()
    ca = resolve_ca_bundle(ca_bundle)
    started = time.monotonic()

    base_image = None
    if base == DEFAULT_BASE_TAG:
        base_image = build_base_image(
            tag=base, sources=debian_sources, docker=docker, tmp_dir=tmp_dir, progress=report
        )
    base_id = docker.image_id(base)

    with tempfile.TemporaryDirectory(prefix="tre-workspace-", dir=tmp_dir) as work:
        context = Path(work) / "context"
        assemble_context(context_dir, extension_wheels, context)
        check_required_wheels(context, required_wheels)
        args = build_args(base=base, version=__version__, pip_index_url=pip_index_url)
        digest = content_hash(
            BuildInputs(read_context(context), {**args, BASE_ID_INPUT: base_id or base})
        )
        tag, latest = f"{repository}:{digest}", f"{repository}:{LATEST}"

        existing = sorted(docker.image_ids(f"label={CONTENT_HASH_LABEL}={digest}"))
        if existing and not force:
            docker.tag(existing[0], tag)
            docker.tag(existing[0], latest)
            report("workspace image", 1, 1)
            return _info(
                docker,
                tag=tag,
                latest=latest,
                digest=digest,
                base=base,
                built=False,
                started=started,
                base_image=base_image,
            )

        leftovers_before = _leftovers(docker)
        stages: dict[str, int] = {}

        def on_line(line: str) -> None:
            step = buildkit_step(line)
            if step is not None:
                stage, done, total = step
                stages[stage] = total
                report(f"workspace image: {stage}", done, total)

        try:
            docker.stream(
                build_command(
                    context,
                    tags=(tag, latest),
                    args={**args, "TRE_CONTENT_HASH": digest},
                    ca_bundle=ca,
                ),
                on_line,
                env={**os.environ, "DOCKER_BUILDKIT": "1"},
                what=f"building {tag} from {context_dir}",
            )
        finally:
            _remove_leftovers(docker, leftovers_before)
        for stage, total in stages.items():
            report(f"workspace image: {stage}", total, total)

    labels = docker.image_labels(tag)
    if labels.get(CONTENT_HASH_LABEL) != digest:
        raise ImageBuildError(
            f"{tag} was built but carries content hash {labels.get(CONTENT_HASH_LABEL)!r}, "
            f"not {digest!r}: does {context_dir / 'Dockerfile'} still set the "
            f"{CONTENT_HASH_LABEL} label from TRE_CONTENT_HASH?"
        )
    return _info(
        docker,
        tag=tag,
        latest=latest,
        digest=digest,
        base=base,
        built=True,
        started=started,
        base_image=base_image,
    )


def _leftovers(docker: DockerCli) -> set[str]:
    """Untagged images that carry our content-hash label (old or failed builds)."""
    return docker.image_ids(
        "dangling=true", f"label={CONTENT_HASH_LABEL}", include_intermediate=True
    )


def _remove_leftovers(docker: DockerCli, before: set[str]) -> None:
    new = sorted(_leftovers(docker) - before)
    docker.remove_images(new)
    remaining = _leftovers(docker) & set(new)
    if remaining:
        raise ImageBuildError(
            f"could not remove the build's untagged images {sorted(remaining)}; "
            "remove them with `docker image rm`"
        )


def _info(
    docker: DockerCli,
    *,
    tag: str,
    latest: str,
    digest: str,
    base: str,
    built: bool,
    started: float,
    base_image: BaseImage | None,
) -> ImageInfo:
    image_id = docker.image_id(tag)
    if image_id is None:
        raise ImageBuildError(f"{tag} is missing right after the build")
    return ImageInfo(
        tag=tag,
        latest=latest,
        image_id=image_id,
        content_hash=digest,
        base=base,
        built=built,
        seconds=time.monotonic() - started,
        size_bytes=docker.image_size(image_id),
        base_image=base_image,
    )
