"""Boundary: the network. alice's real workspace reaches the hub side on its gateway and
nothing else: no name resolves, nothing reaches a stand-in internet host, the metadata
address, another project's container, or any other address or port of this machine
(controls: `tre.hub.networks` one internal network per project, `tre.hub.firewall` host
rules applied at stack start, the spawner's resolver on the gateway).

Judged against `tests.e2e.netns.OutsideHost` (a network namespace on TEST-NET-3 with the
metadata address routed to it, a DNS server and TCP/UDP listeners) and listeners this test
opens on this machine's own addresses; every target is checked to stay on this machine
(`ensure_local`), and a capture on the outward interfaces shows nothing of the project left.
The probes run as alice's code in her kernel (`tests.e2e.test_egress.PROBE`).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import secrets
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import docker
import pytest

from tests.e2e.netns import (
    HostListener,
    OutsideHost,
    Packet,
    ensure_local,
    interface_address,
    main_address,
    outward_interfaces,
    require_root_tools,
    sniffing,
)
from tests.e2e.sites import PROJECT
from tests.e2e.test_egress import PROBE, _unavailable, dns, show, spelling, tcp, udp
from tests.security.support import SUITE_MARKS, Parties
from tre.hub.networks import network_name

pytestmark = SUITE_MARKS

TIMEOUT = 1.5


@dataclass
class Egress:
    results: dict[str, dict[str, Any]]
    outside_events: list[dict[str, Any]]
    left: list[Packet]
    subnet: ipaddress.IPv4Network
    hub_api: str
    listeners: dict[str, HostListener]


def run_probes(parties: Parties, probes: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    for p in probes.values():
        if "host" in p:
            ensure_local(p["host"])
    numbered = [dict(p, seq=i, id=name) for i, (name, p) in enumerate(probes.items())]
    code = (
        "import json, subprocess, sys\n"
        f"done = subprocess.run([sys.executable, '-c', {PROBE!r}, {json.dumps(numbered)!r}, "
        f"'{TIMEOUT}'], capture_output=True, text=True, timeout=120)\n"
        "print(done.stdout.strip().splitlines()[-1] if done.returncode == 0 else "
        "json.dumps({'error': done.stderr[-2000:]}))\n"
    )
    out = parties.alice.run_json(code)
    assert isinstance(out, list), out
    return {r["id"]: r for r in out}


def connect_only(parties: Parties, host: str, port: int) -> dict[str, Any]:
    """A TCP connect from alice's kernel (a Jupyter server sends no greeting to wait for)."""
    ensure_local(host)
    code = (
        "import socket\n"
        "try:\n"
        f"    socket.create_connection(({host!r}, {port}), timeout={TIMEOUT}).close()\n"
        "    print('connected')\n"
        "except OSError as e:\n"
        "    print(f'{type(e).__name__}: {e}')\n"
    )
    out = parties.alice.run(code).strip()
    ok = out == "connected"
    return {
        "kind": "tcp",
        "host": host,
        "port": port,
        "ok": ok,
        "value": out,
        "error": None if ok else out,
        "elapsed": 0,
    }


@pytest.fixture(scope="module")
def egress(parties: Parties, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Egress]:
    reason = require_root_tools()
    if reason:
        _unavailable(reason)
    network = docker.from_env().networks.get(network_name(PROJECT))
    config = network.attrs["IPAM"]["Config"][0]
    gateway, subnet = config["Gateway"], ipaddress.IPv4Network(config["Subnet"])
    nonce = secrets.token_hex(3)
    names = {"pypi": spelling("pypi.org", nonce), "unique": f"sec-{nonce}.example.org"}

    def ours(packet: Packet) -> bool:
        if packet.src in subnet or packet.dst in subnet:
            return True
        name = packet.dns_name()
        return name is not None and (name in names.values() or nonce in name.lower())

    settings = parties.site.settings
    with contextlib.ExitStack() as stack:
        outside = stack.enter_context(OutsideHost(tmp_path_factory.mktemp("outside")))
        listeners = {
            "host-main-address": HostListener(str(main_address())),
            "docker0": HostListener(str(interface_address("docker0"))),
            "gateway-other-port": HostListener(gateway),
        }
        for listener in listeners.values():
            stack.callback(listener.close)
        capture = stack.enter_context(sniffing(outward_interfaces(), ours))
        probes = {
            "dns-external-name": dns(names["pypi"]),
            "dns-unique-name": dns(names["unique"]),
            "http-to-outside": tcp(outside.addr, 80),
            "https-to-outside": tcp(outside.addr, 443),
            "raw-tcp-to-outside": tcp(outside.addr, 8080),
            "udp-to-outside": udp(outside.addr, 9999, f"sec-{nonce}"),
            "cloud-metadata-address": tcp("169.254.169.254", 80),
            **{name: tcp(listener.address, listener.port) for name, listener in listeners.items()},
        }
        results = run_probes(parties, probes)
        results["other-projects-container"] = connect_only(parties, parties.carla.address, 8888)
        left = capture.stop()
        events = [e for e in outside.events() if e["event"] != "ready"]
        yield Egress(
            results=results,
            outside_events=events,
            left=left,
            subnet=subnet,
            hub_api=f"http://{gateway}:{settings.hub.hub_port}/hub/api/",
            listeners=listeners,
        )


def test_the_hub_api_on_the_gateway_answers(parties: Parties, egress: Egress) -> None:
    """Control: the workspace's network works, so each refusal below is the firewall's."""
    code = (
        "import urllib.request\n"
        f"print(urllib.request.urlopen({egress.hub_api!r}, timeout=5).status)\n"
    )
    assert parties.alice.run(code).strip() == "200"


def test_the_host_reaches_the_other_projects_container(parties: Parties) -> None:
    """Control: carla's server listens on 8888 (the proxy on this host reaches it)."""
    ensure_local(parties.carla.address)
    with socket.create_connection((parties.carla.address, 8888), timeout=5):
        pass


ATTEMPTS = [
    "dns-external-name",
    "dns-unique-name",
    "http-to-outside",
    "https-to-outside",
    "raw-tcp-to-outside",
    "udp-to-outside",
    "cloud-metadata-address",
    "other-projects-container",
    "host-main-address",
    "docker0",
    "gateway-other-port",
]


@pytest.mark.parametrize("attempt", ATTEMPTS)
def test_the_workspace_reaches_nothing_else(egress: Egress, attempt: str) -> None:
    result = egress.results[attempt]
    assert result["ok"] is False, show([result])
    if attempt in egress.listeners:
        seen = [
            p for p in egress.listeners[attempt].peers if ipaddress.ip_address(p) in egress.subnet
        ]
        assert seen == [], f"{attempt} saw {seen}"


def test_the_outside_host_saw_nothing(egress: Egress) -> None:
    from_project = [
        e for e in egress.outside_events if ipaddress.ip_address(e["src"]) in egress.subnet
    ]
    assert from_project == [], from_project


def test_nothing_of_the_project_left_the_machine(egress: Egress) -> None:
    assert egress.left == [], egress.left
