"""The workspace image is never built without the jupyter-tre Lab extension."""

from __future__ import annotations

from pathlib import Path

import pytest

from tre.image.build import REQUIRED_WHEELS, check_required_wheels
from tre.image.errors import ImageBuildError


def wheels(tmp_path: Path, *names: str) -> Path:
    folder = tmp_path / "wheels"
    folder.mkdir()
    for name in names:
        (folder / name).write_bytes(b"PK")
    return tmp_path


def test_the_extension_is_required_by_default() -> None:
    assert "jupyter_tre_lab" in REQUIRED_WHEELS


def test_a_context_without_the_extension_wheel_is_refused_with_the_fix(tmp_path: Path) -> None:
    context = wheels(tmp_path, "other-1.0-py3-none-any.whl")
    with pytest.raises(ImageBuildError, match=r"no jupyter_tre_lab wheel.*make extension"):
        check_required_wheels(context, REQUIRED_WHEELS)


def test_two_versions_of_the_extension_are_ambiguous(tmp_path: Path) -> None:
    context = wheels(
        tmp_path, "jupyter_tre_lab-0.1.0-py3-none-any.whl", "jupyter_tre_lab-0.2.0-py3-none-any.whl"
    )
    with pytest.raises(ImageBuildError, match="2 jupyter_tre_lab wheels"):
        check_required_wheels(context, REQUIRED_WHEELS)


def test_one_extension_wheel_passes(tmp_path: Path) -> None:
    context = wheels(tmp_path, "jupyter_tre_lab-0.1.0-py3-none-any.whl")
    check_required_wheels(context, REQUIRED_WHEELS)
