"""`tre hub run`'s command line: JupyterHub with the site's config, its proxy moved behind
the TLS proxy only by a plain-HTTP loopback-style URL."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from tre.cli import app
from tre.stack import HUB_CONFIG, StackError, hub_command


def test_the_hub_runs_with_the_sites_config_and_no_override_by_default() -> None:
    command = hub_command()
    assert command[1:] == ["-m", "jupyterhub", "-f", str(HUB_CONFIG)]


def test_a_bind_url_moves_the_proxy_behind_the_tls_proxy() -> None:
    command = hub_command("http://127.0.0.1:8000")
    assert command[-1] == "--JupyterHub.bind_url=http://127.0.0.1:8000"


@pytest.mark.parametrize(
    "bad", ["https://127.0.0.1:8000", "http://127.0.0.1", "127.0.0.1:8000", "http://:8000"]
)
def test_a_bind_url_that_is_not_plain_http_with_a_port_is_refused(bad: str) -> None:
    with pytest.raises(StackError, match="--bind-url"):
        hub_command(bad)


def test_the_cli_names_the_bad_bind_url() -> None:
    result = CliRunner().invoke(app, ["hub", "run", "--bind-url", "https://0.0.0.0:443"])
    assert result.exit_code == 1
    assert "https://0.0.0.0:443" in result.output and "TLS" in result.output
