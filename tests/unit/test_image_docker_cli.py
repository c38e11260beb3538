"""Choosing a docker client that can build with BuildKit, and saying why when none can."""

from __future__ import annotations

from pathlib import Path

import pytest

from tre.image import ImageBuildError, find_docker


def fake_docker(folder: Path, version: str, *, buildx: bool) -> Path:
    """A stand-in `docker` that answers `--version` and, if asked, `buildx version`."""
    folder.mkdir()
    script = folder / "docker"
    script.write_text(
        "#!/bin/sh\n"
        f'[ "$1" = "--version" ] && {{ echo "Docker version {version}, build test"; exit 0; }}\n'
        f'[ "$1" = "buildx" ] && exit {0 if buildx else 1}\n'
        "exit 2\n"
    )
    script.chmod(0o755)
    return script


def test_a_new_client_without_buildx_is_passed_over_for_an_old_one(tmp_path: Path):
    new = fake_docker(tmp_path / "local", "28.2.2", buildx=False)
    old = fake_docker(tmp_path / "usr", "20.10.24+dfsg1", buildx=False)
    assert find_docker(f"{new.parent}:{old.parent}").executable == old


def test_a_new_client_with_buildx_is_taken(tmp_path: Path):
    new = fake_docker(tmp_path / "local", "28.2.2", buildx=True)
    assert find_docker(str(new.parent)).executable == new


def test_without_buildkit_the_error_names_each_client_and_the_fix(tmp_path: Path):
    new = fake_docker(tmp_path / "local", "28.2.2", buildx=False)
    with pytest.raises(ImageBuildError) as caught:
        find_docker(str(new.parent))
    assert str(new) in str(caught.value)
    assert "docker-buildx" in str(caught.value)


def test_any_client_will_do_when_buildkit_is_not_needed(tmp_path: Path):
    new = fake_docker(tmp_path / "local", "28.2.2", buildx=False)
    assert find_docker(str(new.parent), require_buildkit=False).executable == new


def test_no_client_at_all_says_which_package_to_install(tmp_path: Path):
    with pytest.raises(ImageBuildError, match=r"install the Debian package docker\.io"):
        find_docker(str(tmp_path))
