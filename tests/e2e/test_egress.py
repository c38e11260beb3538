"""A workspace on a project network reaches the hub port on its gateway and nothing else.

Real containers on project networks made by `tre.hub.networks`, behind rules
applied by `tre.hub.firewall`, try to reach a stand-in for the internet (a
network namespace on TEST-NET-3 with a metadata address and a DNS server), the
host's own addresses and another project's container; every target has a
listener, and a container on an ordinary Docker network reaches each of them
(the control). No probe ever targets an address off this machine
(`ensure_local`), and a capture on the outward interfaces shows nothing left.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import re
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.netns import (
    HostListener,
    OutsideHost,
    Packet,
    Sniffer,
    ensure_local,
    interface_address,
    main_address,
    outward_interfaces,
    require_root_tools,
    sniffing,
)
from tre.hub.firewall import (
    Backend,
    FirewallError,
    FirewallRulesMissing,
    Ruleset,
    apply_rules,
    check_rules,
    compute_rules,
    normalise_save,
    remove_rules,
    rules_in_place,
)
from tre.hub.networks import (
    PROJECT_LABEL,
    ProjectNetwork,
    ProjectNetworkError,
    bridge_name,
    ensure_project_network,
    network_name,
    project_networks,
    remove_project_network,
)

pytestmark = [pytest.mark.docker, pytest.mark.security]

docker = pytest.importorskip("docker")

IMAGE = "tre-base:bookworm"
TEST_LABEL = "org.jupyter-tre.test"
TIMEOUT = 1.5
"""Seconds a probe waits; blocked traffic is rejected at once or dropped (then this long)."""

# Runs in each container (PID 1): a TCP greeter on 8888, so that other
# containers and the host have something to reach.
CONTAINER_SERVER = r"""
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8888)); s.listen(16)
print("ready", flush=True)
while True:
    c, peer = s.accept()
    c.sendall(("container %s\n" % sys.argv[1]).encode()); c.close()
"""

# Runs inside a container through `docker exec`: every probe at once, in
# threads, each bounded by the timeout; prints one JSON result per probe.
PROBE = r"""
import concurrent.futures as cf, json, os, socket, struct, sys, time
T = float(sys.argv[2])
def tcp(p):
    with socket.create_connection((p["host"], p["port"]), timeout=T) as s:
        s.settimeout(T); data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(256)
            if not chunk: break
            data += chunk
    return data.decode().strip()
def udp(p):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(T); s.connect((p["host"], p["port"])); s.send(p["payload"].encode())
        return s.recv(4096).decode()
def dns(p):
    infos = socket.getaddrinfo(p["name"], 80, socket.AF_INET, socket.SOCK_STREAM)
    return sorted({i[4][0] for i in infos})
def checksum(b):
    b += b"\0" * (len(b) % 2); total = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    total = (total >> 16) + (total & 0xFFFF); total += total >> 16
    return ~total & 0xFFFF
def ping(p):
    ident = (os.getpid() + p["seq"]) & 0xFFFF
    body = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + b"tre-egress"
    body = body[:2] + struct.pack("!H", checksum(body)) + body[4:]
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as s:
        s.settimeout(T); s.sendto(body, (p["host"], 0)); end = time.monotonic() + T
        while time.monotonic() < end:
            data, addr = s.recvfrom(2048); ihl = (data[0] & 15) * 4
            kind, code = data[ihl], data[ihl + 1]
            echo_id = struct.unpack("!H", data[ihl + 4 : ihl + 6])[0]
            if kind == 0 and addr[0] == p["host"] and echo_id == ident:
                return "echo-reply"
            if kind == 3 and socket.inet_ntoa(data[ihl + 24:ihl + 28]) == p["host"]:
                raise OSError("ICMP destination unreachable, code %d" % code)
        raise TimeoutError("no echo reply")
def run(p):
    start = time.monotonic()
    try:
        value = globals()[p["kind"]](p); ok, error = True, None
    except Exception as exc:
        value, ok, error = None, False, "%s: %s" % (type(exc).__name__, exc)
    return dict(p, ok=ok, value=value, error=error, elapsed=round(time.monotonic() - start, 2))
probes = json.loads(sys.argv[1])
with cf.ThreadPoolExecutor(max_workers=len(probes)) as pool:
    print(json.dumps(list(pool.map(run, probes))))
"""


def _unavailable(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set: the egress tests are required here)", pytrace=False)
    pytest.skip(f"SKIPPED LOUDLY: {message}")


@dataclass
class Box:
    """A container on one network, with its address there."""

    container: Any
    name: str
    network: str
    ip: ipaddress.IPv4Address

    def probe(self, *probes: dict[str, Any]) -> list[dict[str, Any]]:
        """Run the probes concurrently inside the container; targets must stay on this host."""
        for p in probes:
            if "host" in p:
                ensure_local(p["host"])
        numbered = [dict(p, seq=i) for i, p in enumerate(probes)]
        code, output = self.container.exec_run(
            ["python3", "-c", PROBE, json.dumps(numbered), str(TIMEOUT)], demux=False
        )
        text = output.decode("utf-8", "replace")
        assert code == 0, f"probe failed in {self.name}: {text}"
        results: list[dict[str, Any]] = json.loads(text.strip().splitlines()[-1])
        return results


def tcp(host: object, port: int) -> dict[str, Any]:
    return {"kind": "tcp", "host": str(host), "port": port}


def udp(host: object, port: int, payload: str) -> dict[str, Any]:
    return {"kind": "udp", "host": str(host), "port": port, "payload": payload}


def dns(name: str) -> dict[str, Any]:
    return {"kind": "dns", "name": name}


def ping(host: object) -> dict[str, Any]:
    return {"kind": "ping", "host": str(host)}


def show(results: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"  {r['kind']} {r.get('host', r.get('name'))}:{r.get('port', '')} -> "
        f"{'OK ' + str(r['value']) if r['ok'] else r['error']} ({r['elapsed']} s)"
        for r in results
    )


def iptables_save() -> list[str]:
    """Every table of both families, normalised (no counters, no timestamps)."""
    lines = []
    for tool in ("iptables-save", "ip6tables-save"):
        done = subprocess.run([tool], capture_output=True, text=True, check=True, timeout=30)
        lines += [f"{tool}: {line}" for line in normalise_save(done.stdout)]
    return lines


@dataclass
class Egress:
    """Everything the egress tests share: networks, rules, listeners, containers, captures."""

    nonce: str
    client: Any
    a: ProjectNetwork
    b: ProjectNetwork
    control_net: Any
    control_gateway: ipaddress.IPv4Address
    ruleset: Ruleset
    outside: OutsideHost
    hub: dict[str, HostListener]
    """The allowed port P, listened to on several host addresses."""
    other: dict[str, HostListener]
    """Listeners on other ports of the host's addresses (none may be reached)."""
    control: Box
    a1: Box
    a2: Box
    b1: Box
    save_before: list[str]
    save_after: list[str]
    outward: Sniffer
    spellings: set[str]
    """How the workspaces spell the well-known names they look up."""

    @property
    def port(self) -> int:
        return self.hub["a-gateway"].port

    @property
    def project_subnets(self) -> list[ipaddress.IPv4Network]:
        return [self.a.subnet, self.b.subnet]


def _start_box(
    client: Any, stack: contextlib.ExitStack, *, nonce: str, role: str, network: str, dns: list[str]
) -> Box:
    name = f"egress-{role}-{nonce}"
    for resolver in dns:
        ensure_local(resolver)
    container = client.containers.run(
        IMAGE,
        ["python3", "-c", CONTAINER_SERVER, name],
        name=name,
        network=network,
        dns=dns,
        # Fail fast: one attempt, one second, per name.
        dns_opt=["timeout:1", "attempts:1"],
        labels={TEST_LABEL: nonce},
        detach=True,
    )
    stack.callback(container.remove, force=True)
    deadline = time.monotonic() + 15
    while b"ready" not in container.logs():
        container.reload()
        assert container.status in {"created", "running"}, container.logs().decode()
        assert time.monotonic() < deadline, f"{name} did not start: {container.logs()!r}"
        time.sleep(0.05)
    container.reload()
    address = container.attrs["NetworkSettings"]["Networks"][network]["IPAddress"]
    return Box(container, name, network, ipaddress.IPv4Address(address))


def _listen(stack: contextlib.ExitStack, address: object, port: int = 0) -> HostListener:
    listener = HostListener(str(address), port)
    stack.callback(listener.close)
    return listener


def _ours(
    packet: Packet, egress_nets: list[ipaddress.IPv4Network], spellings: set[str], nonce: str
) -> bool:
    """A packet that is, or carries, something of this test's workspaces.

    Other processes on this host may look up pypi.org meanwhile; the workspaces
    ask for it spelt in a case pattern of their own (DNS keeps the case of a
    question), so only their questions match.
    """
    for address in (packet.src, packet.dst):
        if any(address in net for net in egress_nets):
            return True
    name = packet.dns_name()
    return name is not None and (name in spellings or nonce in name.lower())


DNS_NAMES = ("pypi.org", "example.org", "files.pythonhosted.org")


def spelling(name: str, nonce: str) -> str:
    """`name` in a mixed case derived from the nonce (at least one upper, one lower letter)."""
    bits = int(hashlib.sha256(f"{nonce}/{name}".encode()).hexdigest(), 16)
    letters = [i for i, c in enumerate(name) if c.isalpha()]
    upper = {i for n, i in enumerate(letters) if bits >> n & 1}
    upper = (upper | {letters[0]}) - {letters[-1]}
    return "".join(c.upper() if i in upper else c for i, c in enumerate(name))


@pytest.fixture(scope="module")
def egress(docker_engine: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Egress]:
    reason = require_root_tools()
    if reason:
        _unavailable(reason)
    client = docker.from_env()
    try:
        client.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        _unavailable(f"image {IMAGE} is not on this engine (it is never pulled)")
    nonce = secrets.token_hex(3)
    spellings = {spelling(name, nonce) for name in DNS_NAMES}
    with contextlib.ExitStack() as stack:
        # Networks: two projects and an ordinary (non-internal) bridge for the control.
        a = ensure_project_network(client, f"egress-a-{nonce}")
        stack.callback(remove_project_network, client, a.project_id)
        b = ensure_project_network(client, f"egress-b-{nonce}")
        stack.callback(remove_project_network, client, b.project_id)
        control_net = client.networks.create(
            f"egress-control-{nonce}", driver="bridge", labels={TEST_LABEL: nonce}
        )
        stack.callback(control_net.remove)
        control_net.reload()
        control_gateway = ipaddress.IPv4Address(control_net.attrs["IPAM"]["Config"][0]["Gateway"])

        # A capture on every way off this machine, for the whole module.
        outward = stack.enter_context(
            sniffing(
                outward_interfaces(), lambda p: _ours(p, [a.subnet, b.subnet], spellings, nonce)
            )
        )
        outside = stack.enter_context(OutsideHost(tmp_path_factory.mktemp("outside")))

        # The stand-in hub: one port P on A's gateway, the same P on every other
        # host address (only A's gateway may answer A), and other ports.
        hub = {"a-gateway": _listen(stack, a.gateway)}
        port = hub["a-gateway"].port
        addresses = {
            "b-gateway": b.gateway,
            "docker0": interface_address("docker0"),
            "main": main_address(),
            "control-gateway": control_gateway,
        }
        hub |= {key: _listen(stack, address, port) for key, address in addresses.items()}
        other = {"a-gateway": _listen(stack, a.gateway)}
        other |= {key: _listen(stack, address) for key, address in addresses.items()}

        # Rules for these two bridges only (the production wildcard `tre+` would
        # also confine other engineers' project networks on this host).
        ruleset = compute_rules([port], [a.bridge, b.bridge], prefix=f"TRET{nonce.upper()}")
        save_before = iptables_save()
        stack.callback(remove_rules, ruleset)
        apply_rules(ruleset)
        save_after = iptables_save()

        def box(role: str, network: str, resolver: object) -> Box:
            return _start_box(
                client, stack, nonce=nonce, role=role, network=network, dns=[str(resolver)]
            )

        control = box("control", control_net.name, outside.addr)
        # As the spawner runs workspaces: the resolver is the project gateway.
        a1 = box("a1", a.name, a.gateway)
        # As a misconfigured spawner might: an outside resolver.
        a2 = box("a2", a.name, outside.addr)
        b1 = box("b1", b.name, b.gateway)

        yield Egress(
            nonce=nonce,
            client=client,
            a=a,
            b=b,
            control_net=control_net,
            control_gateway=control_gateway,
            ruleset=ruleset,
            outside=outside,
            hub=hub,
            other=other,
            control=control,
            a1=a1,
            a2=a2,
            b1=b1,
            save_before=save_before,
            save_after=save_after,
            outward=outward,
            spellings=spellings,
        )
    # Everything above is gone, whatever happened.
    leftovers = [
        line for line in iptables_save() if f"TRET{nonce.upper()}" in line or a.bridge in line
    ]
    assert not leftovers, f"rules left behind: {leftovers}"
    assert not client.containers.list(all=True, filters={"label": f"{TEST_LABEL}={nonce}"})
    assert not client.networks.list(filters={"label": f"{TEST_LABEL}={nonce}"})
    for project in (a.project_id, b.project_id):
        assert not client.networks.list(names=[network_name(project)])


# -- the control: the harness reaches everything from an ordinary network -------------------------


def test_control_container_reaches_outside_and_every_listener(egress: Egress) -> None:
    out = egress.outside
    targets = [
        tcp(out.addr, 80),
        tcp(out.addr, 443),
        udp(out.addr, 9999, f"control-{egress.nonce}"),
        tcp("169.254.169.254", 80),
        dns(f"control-{egress.nonce}.example.org"),
        ping(egress.control_gateway),
        *[tcp(listener.address, listener.port) for listener in egress.hub.values()],
        *[tcp(listener.address, listener.port) for listener in egress.other.values()],
    ]
    results = egress.control.probe(*targets)
    print(show(results))
    assert all(r["ok"] for r in results), "the harness is broken:\n" + show(results)
    assert results[0]["value"] == f"outside {out.addr}:80"
    assert results[3]["value"] == "outside 169.254.169.254:80"
    assert results[4]["value"] == [str(out.addr)]  # answered by the stand-in's DNS server
    seen = {e["data"] for e in out.events("udp")}
    assert f"control-{egress.nonce}" in seen


# -- a project container reaches nothing but the hub port on its gateway -----------------------


def test_project_container_cannot_reach_the_outside(egress: Egress) -> None:
    out = egress.outside
    payload = f"a1-{egress.nonce}"
    results = egress.a1.probe(
        tcp(out.addr, 80),
        tcp(out.addr, 443),
        tcp(out.addr, 8080),
        udp(out.addr, 9999, payload),
        tcp("169.254.169.254", 80),
        ping(out.addr),
        ping("169.254.169.254"),
    )
    print(show(results))
    assert not any(r["ok"] for r in results), "reached the outside:\n" + show(results)
    time.sleep(0.2)
    from_a = [
        e
        for e in out.events()
        if e["event"] != "ready" and ipaddress.IPv4Address(e["src"]) in egress.a.subnet
    ]
    assert not from_a, f"the outside host saw {from_a}"
    assert payload not in {e.get("data") for e in out.events("udp")}


def test_project_container_cannot_reach_the_hosts_other_addresses_and_ports(
    egress: Egress,
) -> None:
    """Not A's gateway on another port, not docker0, not the main address, not B's gateway,
    not the control network's gateway, not even on the allowed port P; no ICMP echo."""
    denied = [
        *[tcp(listener.address, listener.port) for listener in egress.other.values()],
        *[
            tcp(listener.address, listener.port)
            for key, listener in egress.hub.items()
            if key != "a-gateway"
        ],
        tcp(egress.a.gateway, 22),
        udp(egress.a.gateway, 53, "not dns"),
        ping(egress.a.gateway),
        ping(egress.b.gateway),
    ]
    results = egress.a1.probe(*denied)
    print(show(results))
    assert not any(r["ok"] for r in results), "reached the host:\n" + show(results)
    # Rejected, not merely unanswered: the rules answered, quickly.
    tcp_results = [r for r in results if r["kind"] == "tcp"]
    assert all("ConnectionRefused" in r["error"] for r in tcp_results), show(tcp_results)
    reached = {
        key: listener.peers
        for key, listener in [*egress.other.items(), *egress.hub.items()]
        if any(ipaddress.IPv4Address(p) in egress.a.subnet for p in listener.peers)
        and key != "a-gateway"
    }
    assert not reached, f"listeners saw project A: {reached}"


def test_project_container_cannot_reach_another_projects_container(egress: Egress) -> None:
    results = egress.a1.probe(tcp(egress.b1.ip, 8888), ping(egress.b1.ip))
    print(show(results))
    assert not any(r["ok"] for r in results), "crossed projects:\n" + show(results)
    # The other way round, too.
    results = egress.b1.probe(tcp(egress.a2.ip, 8888))
    print(show(results))
    assert not any(r["ok"] for r in results), "crossed projects:\n" + show(results)
    # ...and B's listener is there: the host (the proxy's place) reaches it.
    with socket.create_connection((str(egress.b1.ip), 8888), timeout=TIMEOUT) as conn:
        assert conn.recv(256).decode().strip() == f"container {egress.b1.name}"


def test_project_container_reaches_the_hub_port_on_its_gateway(egress: Egress) -> None:
    results = egress.a1.probe(tcp(egress.a.gateway, egress.port))
    print(show(results))
    assert results[0]["ok"], show(results)
    assert results[0]["value"] == egress.hub["a-gateway"].banner
    assert str(egress.a1.ip) in egress.hub["a-gateway"].peers
    # Project B reaches the same port on *its* gateway.
    results = egress.b1.probe(tcp(egress.b.gateway, egress.port))
    print(show(results))
    assert results[0]["ok"], show(results)


def test_containers_of_one_project_reach_each_other_and_the_host_reaches_them(
    egress: Egress,
) -> None:
    results = egress.a1.probe(tcp(egress.a2.ip, 8888))
    print(show(results))
    assert results[0]["ok"], show(results)
    assert results[0]["value"] == f"container {egress.a2.name}"
    # JupyterHub's proxy runs on the host and connects to the container's port.
    for box in (egress.a1, egress.a2):
        with socket.create_connection((str(box.ip), 8888), timeout=TIMEOUT) as conn:
            assert conn.recv(256).decode().strip() == f"container {box.name}"


# -- DNS -------------------------------------------------------------------------------------------


def test_external_names_do_not_resolve_and_no_query_leaves(egress: Egress) -> None:
    """The spawner's resolver is the project gateway: Docker's embedded DNS forwards
    there from inside the container, the host rejects it, and nothing leaves."""
    unique = f"a1-{egress.nonce}.example.org"
    names = [*sorted(egress.spellings), unique]
    bridge_a = egress.a.bridge
    outward = sorted(outward_interfaces())
    with sniffing([bridge_a, *outward], lambda p: p.is_dns or p.proto == 1) as capture:
        results = egress.a1.probe(*[dns(name) for name in names])
    print(show(results))
    packets = capture.stop()
    assert not any(r["ok"] for r in results), "resolved:\n" + show(results)

    left = [p for p in packets if p.interface in outward]
    mentioning = [p for p in left if p.dns_name() in names]
    assert not mentioning, f"DNS queries left the machine: {mentioning}"
    from_a = [p for p in left if p.src in egress.a.subnet]
    assert not from_a, f"packets from project A left the machine: {from_a}"

    # Where the queries went: from the container's own address (Docker's
    # embedded resolver forwards from inside the container) to its gateway,
    # port 53, where the host rejects them. The capture saw them there (so it
    # works), with their spelling intact (so the outward check above is exact).
    on_bridge = [p for p in packets if p.interface == bridge_a and p.dport == 53]
    asked = {p.dns_name() for p in on_bridge}
    assert set(names) <= asked, f"queries on {bridge_a}: {asked}"
    assert {(p.src, p.dst) for p in on_bridge} == {(egress.a1.ip, egress.a.gateway)}
    answers = [p for p in packets if p.interface == bridge_a and p.sport == 53]
    assert not answers, f"something on the host answered: {answers}"


def test_an_outside_resolver_is_unreachable_from_a_project(egress: Egress) -> None:
    """Even with an outside resolver configured (a2), no question arrives there;
    the same resolver answers the control container (harness check above)."""
    name = f"a2-{egress.nonce}.example.org"
    results = egress.a2.probe(dns(name), dns("pypi.org"))
    print(show(results))
    assert not any(r["ok"] for r in results), "resolved:\n" + show(results)
    time.sleep(0.2)
    questions = egress.outside.events("dns")
    assert name not in {e["name"] for e in questions}
    assert not [e for e in questions if ipaddress.IPv4Address(e["src"]) in egress.a.subnet]


def test_nothing_of_the_projects_left_the_machine(egress: Egress) -> None:
    """The module-long capture on the outward interfaces holds nothing from A or B
    and no DNS question for the names the workspaces looked up."""
    packets = list(egress.outward.packets)
    assert not packets, f"left the machine: {packets}"


# -- the rules themselves -------------------------------------------------------------------------


def _foreign(line: str, ours: set[str]) -> bool:
    """A line another process on this host may have changed meanwhile (Docker networks of
    other tests, other rule sets), which mentions nothing of this test."""
    if any(token in line for token in ours):
        return False
    interfaces = set(re.findall(r"-[io] (\S+)", line))
    if interfaces - {"docker0", "lo"}:
        return True
    if re.search(r"(^|[ :])TRE", line.split(": ", 1)[1]):
        return True
    return bool(re.search(r"-A (DOCKER|POSTROUTING) ", line))


def _same(before: list[str], after: list[str], ours: set[str]) -> list[str]:
    """Differences between two saves that are not explained by other processes."""
    diff = set(before) ^ set(after)
    unexplained = sorted(line for line in diff if not _foreign(line, ours))
    mine_before = [line for line in before if any(t in line for t in ours)]
    mine_after = [line for line in after if any(t in line for t in ours)]
    if mine_before != mine_after:
        unexplained.append(f"our lines differ: {mine_before} != {mine_after}")
    return unexplained


def test_applying_twice_changes_nothing_and_remove_removes_exactly_ours(egress: Egress) -> None:
    ruleset = egress.ruleset
    prefix = ruleset.chains[0][1].split("-")[0]
    ours = {prefix, egress.a.bridge, egress.b.bridge}
    # What apply added: our chains and jumps, nothing else.
    added = set(egress.save_after) - set(egress.save_before)
    assert added, "apply_rules added nothing"
    assert all(prefix in line for line in added if not _foreign(line, ours)), added

    before = iptables_save()
    assert apply_rules(ruleset) is False
    assert apply_rules(ruleset) is False
    assert not _same(before, iptables_save(), ours)

    try:
        assert remove_rules(ruleset) is True
        assert remove_rules(ruleset) is False
        assert not rules_in_place(ruleset)
        assert not _same(egress.save_before, iptables_save(), ours)
    finally:
        assert apply_rules(ruleset) is True
    check_rules(ruleset)
    assert not _same(egress.save_after, iptables_save(), ours)


def test_check_rules_names_what_is_missing_or_bypassed(egress: Egress) -> None:
    ruleset = egress.ruleset
    jump = next(j for j in ruleset.jumps if j.chain == "INPUT" and j.family.value == "ipv4")
    subprocess.run(["iptables", "-w", "-D", *jump.render().split()[1:]], check=True)
    try:
        with pytest.raises(FirewallRulesMissing, match=re.escape(jump.render())):
            check_rules(ruleset)
        assert not rules_in_place(ruleset)
    finally:
        assert apply_rules(ruleset) is True
    check_rules(ruleset)

    # An ACCEPT inserted above our jump would bypass it: named, then repaired.
    bypass = ["INPUT", "-i", egress.a.bridge, "-p", "tcp", "--dport", "1", "-j", "ACCEPT"]
    subprocess.run(["iptables", "-w", "-I", *bypass[:1], "1", *bypass[1:]], check=True)
    try:
        with pytest.raises(FirewallRulesMissing, match="bypasses it"):
            check_rules(ruleset)
        assert apply_rules(ruleset) is True
        check_rules(ruleset)
    finally:
        subprocess.run(["iptables", "-w", "-D", *bypass], check=True)
    check_rules(ruleset)


def test_iptables_failing_or_missing_fails_closed(egress: Egress, tmp_path: Path) -> None:
    ruleset = egress.ruleset
    missing = Backend(
        iptables=str(tmp_path / "nope"), ip6tables=str(tmp_path / "nope6"), lock_path=tmp_path / "l"
    )
    with pytest.raises(FirewallError, match="not found"):
        apply_rules(ruleset, missing)
    with pytest.raises(FirewallError, match="not found"):
        check_rules(ruleset, missing)
    assert not rules_in_place(ruleset, missing)

    broken = tmp_path / "iptables"
    broken.write_text(
        "#!/bin/sh\necho 'iptables: Permission denied (you must be root)' >&2\nexit 4\n"
    )
    broken.chmod(0o755)
    (tmp_path / "iptables-restore").symlink_to(broken)
    failing = Backend(iptables=str(broken), ip6tables=str(broken), lock_path=tmp_path / "lock")
    with pytest.raises(FirewallError, match="Permission denied"):
        apply_rules(ruleset, failing)
    assert not rules_in_place(ruleset, failing)
    check_rules(ruleset)  # the real rules were not touched


# -- the networks themselves ---------------------------------------------------------------------


def test_project_networks_are_internal_labelled_and_idempotent(egress: Egress) -> None:
    client = egress.client
    a = egress.a
    assert ensure_project_network(client, a.project_id) == a
    assert a.name == network_name(a.project_id)
    assert a.bridge == bridge_name(a.project_id) and len(a.bridge) <= 15
    attrs = client.networks.get(a.id).attrs
    assert attrs["Internal"] is True
    assert attrs["EnableIPv6"] is False
    assert attrs["Labels"][PROJECT_LABEL] == a.project_id
    assert a.gateway in a.subnet
    assert interface_address(a.bridge) == a.gateway
    assert {a, egress.b} <= set(project_networks(client))
    # A network with the attached containers cannot be removed from under them.
    with pytest.raises(ProjectNetworkError, match="still has containers attached"):
        remove_project_network(client, a.project_id)


def test_a_same_named_network_that_is_not_internal_is_refused(egress: Egress) -> None:
    client = egress.client
    project = f"egress-c-{egress.nonce}"
    impostor = client.networks.create(
        network_name(project), driver="bridge", labels={TEST_LABEL: egress.nonce}
    )
    try:
        with pytest.raises(ProjectNetworkError, match="not internal") as info:
            ensure_project_network(client, project)
        assert "label org.jupyter-tre.project is missing" in str(info.value)
        with pytest.raises(ProjectNetworkError):
            remove_project_network(client, project)
    finally:
        impostor.remove()
    made = ensure_project_network(client, project)
    try:
        assert made.bridge == bridge_name(project)
    finally:
        assert remove_project_network(client, project) is True
    assert remove_project_network(client, project) is False
