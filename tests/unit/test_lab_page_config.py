"""The workspace's page_config.json disables and locks every JupyterLab plugin that offers
a download, an export, a link out of the workspace or a terminal, and names only real plugins."""

from __future__ import annotations

import json

import pytest

from tests.support import REPO

PAGE_CONFIG = REPO / "extensions/jupyter-tre-lab/jupyter-config/labconfig/page_config.json"

REQUIRED = (
    "@jupyterlab/docmanager-extension:download",
    "@jupyterlab/docmanager-extension:open-browser-tab",
    "@jupyterlab/filebrowser-extension:download",
    "@jupyterlab/filebrowser-extension:open-browser-tab",
    "@jupyterlab/filebrowser-extension:share-file",
    "@jupyterlab/filebrowser-extension:open-url",
    "@jupyterlab/notebook-extension:export",
    "@jupyterlab/notebook-extension:copy-output",
    "@jupyterlab/terminal-extension:plugin",
    "@jupyterlab/pluginmanager-extension:plugin",
    "@jupyterlab/extensionmanager-extension:plugin",
    "@jupyterlab/javascript-extension:factory",
)
"""The plugins REFERENCE.md ("Ways data leave a Jupyter server") says to disable and lock."""

REQUIRES_DISABLED = {
    # JupyterLab 4.6 added a plugin that *requires* the terminal tracker: left enabled
    # without it, it fails to activate.
    "@jupyterlab/terminal-extension:open-folder-in-terminal": (
        "@jupyterlab/terminal-extension:plugin"
    ),
}
"""Enabled plugin -> the disabled plugin it requires (not optionally)."""


def load_page_config() -> dict[str, dict[str, bool]]:
    data = json.loads(PAGE_CONFIG.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_page_config_is_two_maps_of_plugin_ids_to_true():
    config = load_page_config()
    assert set(config) == {"disabledExtensions", "lockedExtensions"}
    for key, plugins in config.items():
        assert isinstance(plugins, dict), key
        assert plugins, key
        for plugin, value in plugins.items():
            assert value is True, f"{key}[{plugin!r}] must be true, not {value!r}"
            assert plugin.count(":") == 1, f"{plugin!r} is not a plugin id (package:plugin)"


@pytest.mark.parametrize("plugin", REQUIRED)
def test_every_reference_plugin_is_disabled_and_locked(plugin: str):
    config = load_page_config()
    assert config["disabledExtensions"].get(plugin) is True, f"{plugin} is not disabled"
    assert config["lockedExtensions"].get(plugin) is True, f"{plugin} is not locked"


def test_what_is_disabled_is_locked_so_the_user_cannot_enable_it():
    config = load_page_config()
    assert set(config["disabledExtensions"]) == set(config["lockedExtensions"])


@pytest.mark.parametrize(("plugin", "requirement"), sorted(REQUIRES_DISABLED.items()))
def test_no_enabled_plugin_requires_a_disabled_one(plugin: str, requirement: str):
    disabled = load_page_config()["disabledExtensions"]
    if requirement in disabled:
        assert plugin in disabled, f"{plugin} requires {requirement}, which is disabled"


# That every disabled id is a plugin of the image's JupyterLab is checked against the
# built image: tests/e2e/test_workspace_image.py.
