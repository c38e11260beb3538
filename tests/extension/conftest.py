"""A workspace server configured as the image configures it (the extension's own
jupyter_server_config.json), with a recording audit service and a fake dataset root.

pytest-jupyter's autouse loop and cleanup fixtures are switched off in tests/conftest.py
for the rest of the suite; imported here, they apply to these tests again."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_jupyter.jupyter_core import jp_asyncio_loop
from pytest_jupyter.jupyter_server import jp_server_cleanup
from traitlets.config import Config

from tests.extension.audit_service import TOKEN, AuditService

__all__ = ["jp_asyncio_loop", "jp_server_cleanup"]

SERVER_CONFIG = (
    Path(__file__).resolve().parents[2]
    / "extensions/jupyter-tre-lab/jupyter-config/server-config/jupyter_server_config.json"
)


@pytest.fixture
def audit_service(jp_asyncio_loop: Any) -> Iterator[AuditService]:
    service = AuditService()

    async def start() -> None:
        service.start()

    jp_asyncio_loop.run_until_complete(start())
    yield service
    jp_asyncio_loop.run_until_complete(service.stop())


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    """A stand-in for /data: one dataset with a CSV of 'patients'."""
    root = tmp_path / "data"
    (root / "emr").mkdir(parents=True)
    (root / "emr" / "patients.csv").write_text("pid,dob\nP1,1970-01-01\n", encoding="utf-8")
    return root


@pytest.fixture
def extra_env() -> dict[str, str]:
    """Override per test with `@pytest.mark.parametrize("extra_env", [{...}])`."""
    return {}


@pytest.fixture
def tre_env(
    monkeypatch: pytest.MonkeyPatch,
    audit_service: AuditService,
    data_root: Path,
    extra_env: dict[str, str],
) -> dict[str, str]:
    env = {
        "TRE_AUDIT_URL": audit_service.url,
        "JUPYTERHUB_API_TOKEN": TOKEN,
        "TRE_AUDIT_TIMEOUT": "2",
        "TRE_DATA_ROOT": str(data_root),
        "TRE_MAX_CONTENT_BYTES": str(64 * 1024),
        "TRE_MAX_RECORD_BYTES": str(32 * 1024),
        "TRE_TERMINALS_ALLOWED": "0",
        "TRE_PROJECT": "demo",
        "TRE_PERMIT": "demo-permit-1",
        "TRE_PERMIT_PURPOSE": "Research",
        "TRE_PERMIT_EXPIRY": "2027-12-31",
        "TRE_DATASETS": "emr@1,imaging@2",
        **extra_env,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def image_config() -> dict[str, Any]:
    config: dict[str, Any] = json.loads(SERVER_CONFIG.read_text(encoding="utf-8"))
    return config


@pytest.fixture
def extra_config() -> dict[str, Any]:
    """Override per test with `@pytest.mark.parametrize("extra_config", [{...}])`."""
    return {}


@pytest.fixture
def jp_server_config(tre_env: dict[str, str], extra_config: dict[str, Any]) -> Config:
    config = Config(image_config())
    config.merge(Config(extra_config))
    return config
