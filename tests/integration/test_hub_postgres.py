"""JupyterHub on PostgreSQL: a real server started by the test, a real login through OIDC."""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import pytest

from tests.e2e.hubclient import HubUser
from tests.e2e.sites import free_port, loopback_hub
from tests.postgres import createdb, postgres_server
from tests.support import DEMO_POLICY
from tre.settings import (
    AuditSettings,
    MirrorSettings,
    OidcSettings,
    PublishSettings,
    ReviewSettings,
    Settings,
)
from tre.stack import Stack

pytestmark = pytest.mark.slow


def test_the_hub_keeps_its_state_in_postgresql(tmp_path: Path) -> None:
    if shutil.which("iptables-restore") is None:
        pytest.skip("SKIPPED LOUDLY: iptables is needed for the hub's firewall rules")
    with postgres_server() as pg:
        createdb(pg, "jupyterhub")
        settings = Settings(
            policy_dir=DEMO_POLICY,
            var_dir=tmp_path / "var",
            hub=loopback_hub(db_url=pg.url("jupyterhub")),
            review=ReviewSettings(port=free_port()),
            audit=AuditSettings(port=free_port()),
            mirror=MirrorSettings(enabled=False),  # tests/integration/test_mirror.py has it
            publish=PublishSettings(enabled=False),  # tests/e2e/test_publication.py has it
            oidc=OidcSettings(demo_idp_port=free_port()),
        )
        with Stack(settings):
            alice = HubUser(settings.hub.public_url, "alice")
            assert alice.log_in().url.endswith("/hub/home")
        with (
            psycopg.connect(host=pg.host, port=pg.port, user=pg.user, dbname="jupyterhub") as conn,
            conn.cursor() as cur,
        ):
            cur.execute("SELECT name FROM users ORDER BY name")
            assert cur.fetchall() == [("alice",)]
            cur.execute("SELECT name FROM groups")
            assert ("tre-researchers",) in cur.fetchall()
        # A restarted hub finds the same state, and the login cookie still works.
        with Stack(settings):
            me = alice.api("GET", "/users/alice")
            assert me.status_code == 200
            assert me.json()["groups"] == ["tre-researchers"]
        assert not (settings.db_dir / "jupyterhub.sqlite").exists()
