"""Ingress into a real workspace on its project network: the package mirror, and an
administrator's read-only resources.

The hub starts `tre-mirror` (devpi-server with devpi-constrained behind our front); the
spawner points the workspace's pip at the front on the network's gateway with the server's
own token. From inside the container, plain `pip install` (no flags) installs a package on
the project's allow-list, refuses one that is not (and a typo of an allowed name) with the
reason, and each downloaded file is in the audit log with alice's identity. The upstream
index (the real PyPI) is reached by the hub-side mirror only: the container still reaches
nothing else (the egress tests cover the network itself; here: no name resolves, and the
upstream's address is not reachable directly).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.hubclient import HubUser, error_of
from tests.e2e.sites import PROJECT, Site, running_site
from tre.audit import EventKind, open_store
from tre.policy import load_policy
from tre.resources import add_resource

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(1500)]

PIP = """
import json, subprocess, sys
r = subprocess.run(
    [sys.executable, "-m", "pip", "install", "--target", {target!r}, {spec!r}],
    capture_output=True, text=True, timeout=240,
)
print(json.dumps({{"rc": r.returncode, "out": r.stdout + r.stderr}}))
"""


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory, demo_silos: Path, workspace_image: str
) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("mirror-site")
    with running_site(root, demo_silos, workspace_image, mirror=True) as s:
        yield s


@pytest.fixture(scope="module")
def alice(site: Site) -> HubUser:
    user = site.user("alice")
    response = user.spawn(PROJECT)
    assert response.status_code in (200, 302), error_of(response)
    user.wait_ready(PROJECT)
    return user


def pip_install(alice: HubUser, spec: str, target: str) -> tuple[int, str]:
    out = alice.execute(PROJECT, PIP.format(target=target, spec=spec), timeout=300)
    result = json.loads(out.strip().splitlines()[-1])
    return int(result["rc"]), str(result["out"])


def test_an_allowed_package_installs_with_plain_pip_and_is_audited(
    site: Site, alice: HubUser
) -> None:
    # The mirror fetches the upstream's list of names once at start: allow it a while.
    deadline = time.monotonic() + 240
    while True:
        rc, out = pip_install(alice, "six", "/tmp/pkgs")
        if rc == 0 or time.monotonic() > deadline:
            break
        time.sleep(5)
    assert rc == 0, out
    imported = alice.execute(
        PROJECT, "import sys; sys.path.insert(0, '/tmp/pkgs'); import six; print(six.__version__)"
    )
    assert imported.strip()
    records = [
        r
        for r in open_store(site.settings).show(project=PROJECT)
        if r.kind is EventKind.package_installed
    ]
    assert [(r.actor, r.detail["name"]) for r in records] == [("alice", "six")], records
    assert records[0].detail["version"] == imported.strip()
    assert len(records[0].detail["sha256"]) == 64


@pytest.mark.security
@pytest.mark.parametrize("spec", ["requests", "requets"])
def test_a_package_not_on_the_allow_list_is_refused_with_the_reason(
    site: Site, alice: HubUser, spec: str
) -> None:
    rc, out = pip_install(alice, spec, "/tmp/refused")
    assert rc != 0, out
    assert f"package '{spec}' is not on the allow-list of project '{PROJECT}'" in out, out
    assert "tre packages resolve" in out
    refused = [
        r
        for r in open_store(site.settings).show(project=PROJECT)
        if r.kind is EventKind.package_installed and r.detail["name"] == spec
    ]
    assert refused == []


@pytest.mark.security
def test_the_upstream_is_reached_by_the_mirror_only(alice: HubUser) -> None:
    code = """
import json, socket
facts = {}
try:
    socket.getaddrinfo("pypi.org", 443)
    facts["dns"] = "resolved"
except OSError as exc:
    facts["dns"] = type(exc).__name__
print(json.dumps(facts))
"""
    facts = json.loads(alice.execute(PROJECT, code).strip().splitlines()[-1])
    assert facts["dns"] != "resolved", facts


@pytest.mark.security
def test_an_administrators_resource_appears_read_only_in_the_running_workspace(
    site: Site, alice: HubUser, tmp_path: Path
) -> None:
    """Large ingress: `tre resources add` while the workspace runs; it shows up under
    /resources with its manifest, and nothing there can be changed from inside."""
    source = tmp_path / "GRCh38-chr21"
    source.mkdir()
    (source / "chr21.fa").write_text(">chr21\nACGTNNNNACGT\n")
    added = add_resource(
        site.settings,
        load_policy(site.policy_dir),
        PROJECT,
        source,
        by="adam",
        note="reference genome, chr21 only",
    )
    code = """
import json, os
base = "/resources/GRCh38-chr21"
facts = {"files": sorted(os.listdir(base)), "fa": open(base + "/chr21.fa").read()}
manifest = json.load(open(base + "/MANIFEST.json"))
facts["sha256"] = manifest["files"][0]["sha256"]
for what, attempt in (
    ("write", lambda: open(base + "/chr21.fa", "a").write("x")),
    ("create", lambda: open(base + "/new.txt", "w").write("x")),
    ("create_top", lambda: open("/resources/mine.txt", "w").write("x")),
):
    try:
        attempt()
        facts[what] = "allowed"
    except OSError as exc:
        facts[what] = exc.strerror
print(json.dumps(facts))
"""
    facts = json.loads(alice.execute(PROJECT, code).strip().splitlines()[-1])
    assert facts["files"] == ["MANIFEST.json", "chr21.fa"], facts
    assert facts["fa"] == ">chr21\nACGTNNNNACGT\n"
    assert facts["sha256"] == added.manifest.files[0].sha256
    assert {facts["write"], facts["create"], facts["create_top"]} <= {
        "Read-only file system",
        "Permission denied",
    }, facts
    kinds = [(k, actor) for k, actor, project in site.audit() if project == PROJECT]
    assert (EventKind.resource_added, "adam") in kinds
