"""jupyter-tre's workspace extension: the JupyterLab plugin and the server extension that
blocks downloads and audits executions and saves before they happen."""

from __future__ import annotations

from typing import Any


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": "@jupyter-tre/lab"}]


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from .app import TreLabApp  # noqa: PLC0415 - labextension lookups must not import the server

    return [{"module": "jupyter_tre_lab", "app": TreLabApp}]
