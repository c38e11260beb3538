"""Fixtures for tests against real Docker containers, registered once for the whole run
(tests/conftest.py lists this module in `pytest_plugins`), so that every package that
needs the workspace image (e2e, security, faults, deploy) shares one session fixture.

`docker_engine` is the engine (a loud skip when it does not answer, a failure
when the environment variable CI is set); `base_image` and `workspace_image`
are the tags of the base and workspace images, built (or found: the base by
its tag, the workspace by its content hash) once per test run, after the Lab
extension wheel the image requires.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

from tre.image import (
    DockerCli,
    ImageBuildError,
    ImageInfo,
    build_base_image,
    build_workspace_image,
    find_docker,
)


@dataclass(frozen=True)
class WorkspaceBuild:
    """The workspace image, and the engine's images just before and after making sure of it."""

    info: ImageInfo
    images_before: frozenset[str]
    images_after: frozenset[str]
    """Every image ID the engine holds, intermediate ones included."""


def _unavailable(message: str) -> NoReturn:
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set: Docker is required here)", pytrace=False)
    pytest.skip(f"SKIPPED LOUDLY: {message}")


REPO = Path(__file__).resolve().parents[1]


def build_extension_wheel() -> None:
    """The Lab extension wheel the image needs (`make extension`; a no-op when up to date)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    result = subprocess.run(
        [str(REPO / "scripts" / "build-extension")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(
            f"building the Lab extension wheel failed:\n{result.stdout[-3000:]}"
            f"\n{result.stderr[-3000:]}",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def docker_engine() -> DockerCli:
    """A docker client whose engine answers."""
    try:
        docker = find_docker(require_buildkit=False)
        docker.engine_version()
    except ImageBuildError as exc:
        problem = str(exc)
    else:
        return docker
    _unavailable(f"no Docker engine: {problem}")


@pytest.fixture(scope="session")
def base_image(docker_engine: DockerCli, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tag of the registry-free base image, `tre-base:bookworm`, built once if missing."""
    return build_base_image(docker=docker_engine, tmp_dir=tmp_path_factory.mktemp("base")).tag


@pytest.fixture(scope="session")
def workspace_build(
    docker_engine: DockerCli, tmp_path_factory: pytest.TempPathFactory
) -> WorkspaceBuild:
    """Build the workspace image (and its base) unless an image with its content hash exists."""
    # The build needs a BuildKit-capable client; an engine without one is a
    # broken setup, not an absent one, so this fails rather than skips.
    docker = find_docker()
    build_extension_wheel()
    before = frozenset(docker.image_ids(include_intermediate=True))
    info = build_workspace_image(docker=docker, tmp_dir=tmp_path_factory.mktemp("image-build"))
    after = frozenset(docker.image_ids(include_intermediate=True))
    return WorkspaceBuild(info, before, after)


@pytest.fixture(scope="session")
def workspace_image(workspace_build: WorkspaceBuild) -> str:
    """The tag of the workspace image, `jupyter-tre/workspace:<content-hash>`."""
    return workspace_build.info.tag


@pytest.fixture(scope="session")
def host_added_cas() -> list[Path]:
    """CA certificates this host trusts beyond Debian's (e.g. a TLS-intercepting proxy's)."""
    folder = Path("/usr/local/share/ca-certificates")
    return sorted(p for p in folder.rglob("*.crt") if p.is_file()) if folder.is_dir() else []
