"""A built jupyter_tre_lab wheel carries the JupyterLab plugin, the server extension's
config and the page_config that disables downloads, all at their shared-data paths."""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Iterator

import pytest

from tests.support import REPO

WHEELS = REPO / "images" / "workspace" / "wheels"
PACKAGE = REPO / "extensions" / "jupyter-tre-lab"
LABEXTENSION = "share/jupyter/labextensions/@jupyter-tre/lab"
SERVER_CONFIG = "etc/jupyter/jupyter_server_config.json"
PAGE_CONFIG = "etc/jupyter/labconfig/page_config.json"


@pytest.fixture(scope="module")
def wheel() -> Iterator[zipfile.ZipFile]:
    found = sorted(WHEELS.glob("jupyter_tre_lab-*.whl"))
    if not found:
        pytest.skip(
            "no jupyter_tre_lab wheel in images/workspace/wheels: build it with "
            "scripts/build-extension (the image tests require it)"
        )
    assert len(found) == 1, f"the image build needs exactly one wheel: {found}"
    with zipfile.ZipFile(found[0]) as archive:
        yield archive


def data_files(archive: zipfile.ZipFile) -> dict[str, str]:
    """Shared-data path -> member name."""
    pattern = re.compile(r"^jupyter_tre_lab-[^/]+\.data/data/(.+)$")
    return {m.group(1): name for name in archive.namelist() if (m := pattern.match(name))}


def test_wheel_holds_the_built_labextension(wheel: zipfile.ZipFile):
    data = data_files(wheel)
    package = json.loads(wheel.read(data[f"{LABEXTENSION}/package.json"]))
    assert package["name"] == "@jupyter-tre/lab"
    remote_entry = package["jupyterlab"]["_build"]["load"]
    assert re.fullmatch(r"static/remoteEntry\.[0-9a-f]+\.js", remote_entry)
    assert f"{LABEXTENSION}/{remote_entry}" in data
    assert f"{LABEXTENSION}/static/style.js" in data
    bundles = b"".join(
        wheel.read(member) for path, member in data.items() if path.startswith(LABEXTENSION)
    )
    assert b"@jupyter-tre/lab:banner" in bundles


def test_wheel_enables_the_server_extension(wheel: zipfile.ZipFile):
    config = json.loads(wheel.read(data_files(wheel)[SERVER_CONFIG]))
    assert config["ServerApp"]["jpserver_extensions"]["jupyter_tre_lab"] is True


def test_wheel_page_config_is_the_source_one(wheel: zipfile.ZipFile):
    shipped = json.loads(wheel.read(data_files(wheel)[PAGE_CONFIG]))
    source = json.loads(
        (PACKAGE / "jupyter-config" / "labconfig" / "page_config.json").read_text(encoding="utf-8")
    )
    assert shipped == source, "the wheel is stale: rebuild it with scripts/build-extension"
    assert shipped["disabledExtensions"]["@jupyterlab/filebrowser-extension:download"] is True


def test_wheel_holds_the_python_package(wheel: zipfile.ZipFile):
    names = set(wheel.namelist())
    assert "jupyter_tre_lab/__init__.py" in names
    # The labextension is shared data only, not a second copy inside the package.
    assert not [name for name in names if name.startswith("jupyter_tre_lab/labextension/")]
