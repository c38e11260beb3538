"""A researcher's workspace end to end, against the real parts.

The bundled OIDC provider (npm oidc-provider), JupyterHub with its proxy, the
project spawner and the Docker engine are all real; data are the demo silos,
really ingested. The test logs in through the provider's form, spawns a project
container, runs code through the kernel websocket and proves from inside: only
the permitted datasets, read-only; non-root without capabilities; no egress;
the workspace persists. Non-members, expired permits and crafted requests are
refused, and a permit revoked while a server runs stops it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import docker
import pytest

from tests.e2e.hubclient import HubUser, error_of, message_of
from tests.e2e.isolation import GBM_DATASETS, WORKSPACE_MOUNTS, probe_workspace, unexpected_mounts
from tests.e2e.sites import Site, running_site
from tre.audit import EventKind, open_store
from tre.usage import usage_report

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(2400)]

PROJECT = "gbm-linkage"


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory, demo_silos: Path, workspace_image: str
) -> Iterator[Site]:
    with running_site(tmp_path_factory.mktemp("workspace-site"), demo_silos, workspace_image) as s:
        yield s


@pytest.fixture(scope="module")
def alice(site: Site) -> HubUser:
    user = site.user("alice")
    response = user.spawn(PROJECT)
    assert response.status_code in (200, 302), error_of(response)
    user.wait_ready(PROJECT)
    return user


@pytest.fixture(scope="module")
def inside(
    site: Site, alice: HubUser, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, object]:
    """Facts read from inside alice's running workspace."""
    network = docker.from_env().networks.get(f"tre-project-{PROJECT}")
    gateway = network.attrs["IPAM"]["Config"][0]["Gateway"]
    return probe_workspace(alice, PROJECT, gateway, tmp_path_factory.mktemp("outside"))


def test_login_goes_through_the_oidc_provider_and_sets_groups(site: Site) -> None:
    user = site.user("carla")
    me = user.api("GET", "/users/carla").json()
    assert me["groups"] == ["tre-researchers"]
    assert me["admin"] is False


def test_a_wrong_password_gets_no_session(site: Site) -> None:
    user = HubUser(site.url, "alice")
    page = user.log_in(password="not-the-password")
    assert "/hub/home" not in page.url
    assert user.api("GET", "/users/alice").status_code in (401, 403)


def test_the_spawn_form_lists_only_projects_with_a_current_permit(site: Site) -> None:
    bob = site.user("bob")
    form = bob.spawn_form("gbm-linkage").text
    assert 'value="gbm-linkage"' in form
    assert 'value="hf-outcomes"' not in form  # bob's hf-outcomes permit expired yesterday


def test_only_the_permitted_datasets_are_mounted(inside: dict[str, object]) -> None:
    assert inside["datasets"] == GBM_DATASETS
    mounts: list[str] = inside["mounts"]  # type: ignore[assignment]
    assert unexpected_mounts(mounts) == set()
    assert set(mounts) >= WORKSPACE_MOUNTS


def test_datasets_are_read_only(inside: dict[str, object]) -> None:
    assert inside["write_data"] == "refused: Read-only file system"
    assert inside["write_data_file"] == "refused: Read-only file system"
    assert str(inside["chmod_data"]).startswith("refused:")


def test_the_container_runs_as_a_non_root_user_without_capabilities(
    inside: dict[str, object],
) -> None:
    assert (inside["uid"], inside["gid"]) == (1000, 100)
    assert inside["cap_eff"] == "0000000000000000"
    assert inside["cap_bnd"] == "0000000000000000"
    assert inside["no_new_privs"] == "1"
    assert inside["write_root"] == "refused: Read-only file system"
    assert inside["write_home"] == "refused: Read-only file system"
    assert inside["write_tmp"].startswith("ok")  # type: ignore[union-attr]
    assert inside["pids_max"] == "512"
    assert inside["mem_limit"] == str(6 * 1024**3)  # the permit's condition, not the default
    assert inside["env"] == {
        "PYTHONNOUSERSITE": "1",
        "JUPYTERHUB_DISABLE_USER_CONFIG": "1",
        "TRE_PROJECT": PROJECT,
        "TRE_PERMIT": "gbm-linkage-2026",
    }


def test_no_egress_from_the_workspace(inside: dict[str, object]) -> None:
    assert str(inside["dns"]).startswith("refused")
    for probe in ("outside", "host_main", "gateway_other_port"):
        assert str(inside[probe]).startswith("refused"), (probe, inside[probe])


def test_terminals_are_closed_unless_the_permit_allows_them(alice: HubUser) -> None:
    response = alice.server_api(PROJECT, "POST", "/terminals")
    assert response.status_code in (403, 404), response.text


def test_researchers_cannot_mint_tokens(alice: HubUser) -> None:
    response = alice.api("POST", "/users/alice/tokens", json={"note": "exfiltration"})
    assert response.status_code == 403


def test_a_non_member_is_refused_by_form_api_and_crafted_query(site: Site) -> None:
    carla = site.user("carla")  # member of hf-outcomes only
    by_form = carla.spawn("gbm-linkage")
    by_api = carla.api("POST", "/users/carla/servers/gbm-linkage", json={"project": "gbm-linkage"})
    by_query = carla.settle(carla.get("/hub/spawn/carla/gbm-linkage?opt-project=gbm-linkage"))
    by_other_name = carla.spawn("hf-outcomes", project="gbm-linkage")
    time.sleep(2)
    for server in ("gbm-linkage", "hf-outcomes"):
        state = carla.server(server)
        assert state is None or not state.get("ready"), (server, by_other_name.status_code)
    assert by_api.status_code >= 400
    assert "not a member" in message_of(by_form)
    assert "not a member" in message_of(by_query) or by_query.status_code >= 400
    assert "can only be started for project 'hf-outcomes'" in message_of(by_other_name)
    names = [c.name for c in docker.from_env().containers.list(all=True)]
    assert not any(n.startswith("tre-carla") for n in names)
    refused = [e for e in site.audit() if e[0] is EventKind.spawn_refused and e[1] == "carla"]
    assert len(refused) >= 3


def test_an_expired_permit_is_refused_with_the_reason(site: Site) -> None:
    bob = site.user("bob")
    response = bob.spawn("hf-outcomes")
    assert "expired" in message_of(response)
    assert bob.server("hf-outcomes") is None or not bob.server("hf-outcomes").get("ready")


def test_patient_representatives_cannot_start_workspaces(site: Site) -> None:
    pat = site.user("pat")
    assert pat.spawn_form("gbm-linkage").status_code == 403


def test_administrators_cannot_enter_a_researchers_workspace(site: Site, alice: HubUser) -> None:
    adam = site.user("adam")
    listing = adam.api("GET", "/users")
    assert listing.status_code == 200  # they may see who runs what
    page = adam.get(f"/user/alice/{PROJECT}/api/contents", allow_redirects=True)
    assert page.status_code in (403, 404) or "/hub/" in page.url
    assert "probe.txt" not in page.text


def test_the_workspace_persists_across_restarts(site: Site, alice: HubUser) -> None:
    alice.execute(PROJECT, "open('/home/researcher/work/kept.txt', 'w').write('results v1')")
    alice.stop(PROJECT)
    # The stop recorded what the container used, for the usage report.
    store = open_store(site.settings)
    stop = store.show(project=PROJECT, kind=EventKind.server_stopped)[-1]
    peak = stop.detail["peak_memory_bytes"]
    assert isinstance(peak, int) and 10 * 2**20 < peak < 2 * 2**30, stop.detail
    start = store.show(project=PROJECT, kind=EventKind.server_started)[-1]
    assert start.detail["cpu_limit"] == 1.5 and start.detail["mem_limit"] == "6G"
    month = stop.at.strftime("%Y-%m")
    [row] = [r for r in usage_report(site.settings, store, month, month) if r.project == PROJECT]
    assert row.sessions >= 1 and row.compute_hours > 0 and row.peak_memory_bytes is not None
    assert row.storage_bytes is not None and row.storage_bytes >= len("results v1")
    response = alice.spawn(PROJECT)
    assert response.status_code in (200, 302), error_of(response)
    alice.wait_ready(PROJECT)
    out = alice.execute(PROJECT, "print(open('/home/researcher/work/kept.txt').read())")
    assert out.strip() == "results v1"


def test_a_hub_restart_loses_nothing_and_a_docker_outage_is_a_clear_refusal(
    site: Site, alice: HubUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice.execute(PROJECT, "open('/home/researcher/work/before-restart.txt', 'w').write('kept')")
    site.stack.stop()  # the hub stops its servers cleanly on the way down
    running = docker.from_env().containers.list(filters={"label": "org.jupyter-tre.project"})
    assert running == []

    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    site.stack.start()
    refused = alice.spawn(PROJECT)
    assert "the project network is not available" in message_of(refused)
    assert alice.get("/hub/api/").status_code == 200  # the hub stays up
    site.stack.stop()

    monkeypatch.delenv("DOCKER_HOST")
    site.stack.start()
    response = alice.spawn(PROJECT)
    assert response.status_code in (200, 302), error_of(response)
    alice.wait_ready(PROJECT)
    out = alice.execute(PROJECT, "print(open('/home/researcher/work/before-restart.txt').read())")
    assert out.strip() == "kept"


def test_a_changed_dataset_file_refuses_the_spawn_and_names_it_to_the_admin(
    site: Site, alice: HubUser
) -> None:
    alice.stop(PROJECT)
    version = site.settings.datasets_dir / PROJECT / "gbm-pathology" / "1"
    victim = next(p for p in sorted(version.rglob("*.tif")))
    original = victim.read_bytes()
    victim.chmod(0o644)
    victim.write_bytes(original + b"tampered")
    try:
        response = alice.spawn(PROJECT)
        assert "dataset 'gbm-pathology' is not available" in message_of(response)
        log = (site.settings.logs_dir / "jupyterhub.log").read_text()
        assert "does not match the checksum in its manifest" in log
    finally:
        victim.write_bytes(original)
        victim.chmod(0o444)
    response = alice.spawn(PROJECT)
    assert response.status_code in (200, 302), error_of(response)
    alice.wait_ready(PROJECT)


def test_a_permit_revoked_while_running_stops_the_server(site: Site, alice: HubUser) -> None:
    alice.wait_ready(PROJECT)
    permits = site.policy_dir / "permits.yaml"
    text = permits.read_text(encoding="utf-8")
    revoked = text.replace(
        "    people: [alice, bob]\n",
        f"    people: [alice, bob]\n    revoked: {{effective: {date.today()}, "
        "reason: breach of conditions}\n",
        1,
    )
    assert revoked != text
    permits.write_text(revoked, encoding="utf-8")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and alice.server(PROJECT) is not None:
        time.sleep(1)
    assert alice.server(PROJECT) is None, "the server still runs a minute after revocation"
    assert (EventKind.permit_ended_stop, "system:permit-watch", PROJECT) in site.audit()
    response = alice.spawn(PROJECT)
    assert "was revoked" in message_of(response)
