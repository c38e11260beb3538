"""A stand-in for the internet on this machine, and the instruments that show nothing leaves it.

Invariant: nothing here sends a packet to an address outside this machine.
`OutsideHost` is a network namespace behind a veth pair with TEST-NET-3
(203.0.113.0/24) addresses and the cloud metadata address; `ensure_local`
refuses any probe target the host would route out of a real interface;
`Sniffer` records what crosses an interface (AF_PACKET, after the host's
firewall on the way out), so a test can show that nothing left.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TEST_NET_3 = ipaddress.IPv4Network("203.0.113.0/24")
METADATA = ipaddress.IPv4Address("169.254.169.254")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def ip(*args: str, netns: str | None = None, check: bool = True) -> str:
    """Run iproute2 (optionally inside a namespace); return stdout."""
    command = ["ip", *(["-n", netns] if netns else []), *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: {done.stderr.strip()}")
    return done.stdout


def ip_json(*args: str) -> list[dict[str, Any]]:
    out = ip("-j", *args)
    return list(json.loads(out)) if out.strip() else []


def outward_interfaces() -> set[str]:
    """Interfaces carrying a default route: the ways off this machine."""
    found = set()
    for family in ("-4", "-6"):
        for route in ip_json(family, "route", "show", "default"):
            if route.get("dev"):
                found.add(str(route["dev"]))
    return found


def main_address() -> ipaddress.IPv4Address:
    """The host's IPv4 address on its (first) outward interface."""
    for dev in sorted(outward_interfaces()):
        for link in ip_json("-4", "addr", "show", "dev", dev):
            for info in link.get("addr_info", []):
                if info.get("family") == "inet":
                    return ipaddress.IPv4Address(info["local"])
    raise RuntimeError("no IPv4 address on an outward interface")


def interface_address(dev: str) -> ipaddress.IPv4Address:
    for link in ip_json("-4", "addr", "show", "dev", dev):
        for info in link.get("addr_info", []):
            if info.get("family") == "inet":
                return ipaddress.IPv4Address(info["local"])
    raise RuntimeError(f"{dev} has no IPv4 address")


def ensure_local(address: str | IPAddress) -> None:
    """Raise unless the host keeps traffic to `address` on this machine.

    Local addresses, and routes through a non-outward interface (a bridge, our
    veth) qualify; anything via a default-route interface does not.
    """
    routes = ip_json("route", "get", str(address))
    if not routes:
        raise AssertionError(f"no route to {address}")
    route = routes[0]
    if route.get("type") == "local" or route.get("dev") == "lo":
        return
    if route.get("dev") in outward_interfaces():
        raise AssertionError(
            f"refusing to probe {address}: the host routes it out of {route.get('dev')} "
            "(off this machine)"
        )


# -- the stand-in outside host ------------------------------------------------------------------


_SERVER = r"""
import json, select, socket, struct, sys, time
config = json.loads(sys.argv[1])
log = open(config["log"], "a", buffering=1)
def note(**event):
    event["t"] = time.time()
    log.write(json.dumps(event) + "\n")
socks = {}
for port in config["tcp"]:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(64); s.setblocking(False)
    socks[s] = ("tcp", port)
for port in config["udp"]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port)); socks[s] = ("udp", port)
answer = socket.inet_aton(config["dns_answer"])
def dns_reply(data):
    qid, flags, qd = struct.unpack("!HHH", data[:6])
    i, labels = 12, []
    while data[i]:
        labels.append(data[i + 1 : i + 1 + data[i]].decode("ascii", "replace")); i += 1 + data[i]
    qtype = struct.unpack("!H", data[i + 1 : i + 3])[0]
    question = data[12 : i + 5]
    an = 1 if qtype == 1 else 0
    head = struct.pack("!HHHHHH", qid, 0x8180, 1, an, 0, 0)
    body = struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + answer if an else b""
    return ".".join(labels), qtype, head + question + body
note(event="ready")
while True:
    ready, _, _ = select.select(list(socks), [], [], 1.0)
    for s in ready:
        kind, port = socks[s]
        if kind == "tcp":
            try:
                conn, peer = s.accept()
            except BlockingIOError:
                continue
            note(event="tcp", port=port, src=peer[0], dst=conn.getsockname()[0])
            conn.sendall(("outside %s:%d\n" % (conn.getsockname()[0], port)).encode())
            conn.close()
        else:
            data, peer = s.recvfrom(4096)
            if port == 53:
                try:
                    name, qtype, reply = dns_reply(data)
                except Exception as exc:
                    note(event="dns-bad", src=peer[0], error=repr(exc)); continue
                note(event="dns", src=peer[0], name=name, qtype=qtype)
                s.sendto(reply, peer)
            else:
                note(event="udp", port=port, src=peer[0], data=data.decode("utf-8", "replace"))
                s.sendto(b"echo " + data, peer)
"""


@dataclass
class OutsideHost:
    """A network namespace standing in for the internet (TEST-NET-3) and a metadata service.

    Use as a context manager; every interface, route, address, namespace and
    process it made is removed on exit, also after a failure half-way.
    """

    workdir: Path
    """Where the outside host's event log lives (a test's tmp_path)."""
    tcp_ports: tuple[int, ...] = (80, 443, 8080)
    udp_ports: tuple[int, ...] = (9999,)
    dns: bool = True
    metadata: bool = True
    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    # Filled in by __enter__:
    namespace: str = ""
    host_if: str = ""
    peer_if: str = ""
    host_addr: ipaddress.IPv4Address = TEST_NET_3[1]
    addr: ipaddress.IPv4Address = TEST_NET_3[2]
    log_path: Path = Path()
    _undo: list[tuple[str, Callable[[], object]]] = field(default_factory=list)
    _server: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> OutsideHost:
        try:
            self._setup()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _setup(self) -> None:
        # Not "tre…": the firewall's wildcard must not match the stand-in's veth.
        self.namespace = f"egress-out-{self.tag}"
        self.host_if, self.peer_if = f"egh{self.tag}", f"ego{self.tag}"
        subnet = _free_subnet()
        self.host_addr, self.addr = subnet[1], subnet[2]

        ip("netns", "add", self.namespace)
        self._undo.append(("netns", lambda: ip("netns", "del", self.namespace)))
        ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.peer_if)
        self._undo.append(("veth", lambda: ip("link", "del", self.host_if, check=False)))
        ip("link", "set", self.peer_if, "netns", self.namespace)
        ip("addr", "add", f"{self.host_addr}/{subnet.prefixlen}", "dev", self.host_if)
        ip("link", "set", self.host_if, "up")
        ns = self.namespace
        ip("addr", "add", f"{self.addr}/{subnet.prefixlen}", "dev", self.peer_if, netns=ns)
        ip("link", "set", self.peer_if, "up", netns=ns)
        ip("link", "set", "lo", "up", netns=ns)
        ip("route", "add", "default", "via", str(self.host_addr), netns=ns)
        if self.metadata:
            existing = ip_json("route", "show", f"{METADATA}/32")
            if existing:
                raise RuntimeError(f"{METADATA} is already routed ({existing}); not touching it")
            ip("addr", "add", f"{METADATA}/32", "dev", "lo", netns=ns)
            ip("route", "add", f"{METADATA}/32", "via", str(self.addr), "dev", self.host_if)
            self._undo.append(
                (
                    "metadata route",
                    lambda: ip("route", "del", f"{METADATA}/32", "dev", self.host_if, check=False),
                )
            )
        for target in (self.addr, *([METADATA] if self.metadata else [])):
            route = ip_json("route", "get", str(target))[0]
            if route.get("dev") != self.host_if:
                raise RuntimeError(f"{target} is routed via {route.get('dev')}, not our veth")
        self._start_server()

    def _start_server(self) -> None:
        self.log_path = self.workdir / f"egress-outside-{self.tag}.jsonl"
        self.log_path.write_text("", encoding="utf-8")
        self._undo.append(("log", lambda: self.log_path.unlink(missing_ok=True)))
        config = {
            "log": str(self.log_path),
            "tcp": list(self.tcp_ports),
            "udp": [*self.udp_ports, *([53] if self.dns else [])],
            "dns_answer": str(self.addr),
        }
        self._server = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                self.namespace,
                sys.executable,
                "-c",
                _SERVER,
                json.dumps(config),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._undo.append(("server", self._stop_server))
        deadline = time.monotonic() + 10
        while not any(e["event"] == "ready" for e in self.events()):
            if self._server.poll() is not None:
                err = self._server.stderr.read().decode() if self._server.stderr else ""
                raise RuntimeError(f"outside server exited: {err}")
            if time.monotonic() > deadline:
                raise RuntimeError("outside server did not start within 10 s")
            time.sleep(0.05)

    def _stop_server(self) -> None:
        server = self._server
        if server is None:
            return
        if server.poll() is None:
            server.terminate()  # our own child, by its handle
            try:
                server.wait(timeout=5)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=5)
        if server.stderr is not None:
            server.stderr.close()

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        """What the outside host saw (TCP accepts, UDP datagrams, DNS questions)."""
        if not self.log_path.is_file():
            return []
        events = [
            json.loads(line)
            for line in self.log_path.read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]
        return [e for e in events if kind is None or e["event"] == kind]

    def close(self) -> None:
        errors = []
        while self._undo:
            what, undo = self._undo.pop()
            try:
                undo()
            except Exception as exc:  # keep undoing the rest, then report
                errors.append(f"{what}: {exc}")
        if errors:
            raise RuntimeError("cleaning up the outside host failed: " + "; ".join(errors))


def _free_subnet() -> ipaddress.IPv4Network:
    """A random /30 of TEST-NET-3 that no route on this host overlaps."""
    routed = []
    for route in ip_json("-4", "route", "show", "table", "all"):
        dst = route.get("dst")
        if dst and dst != "default":
            with contextlib.suppress(ValueError):
                routed.append(ipaddress.IPv4Network(dst, strict=False))
    candidates = list(TEST_NET_3.subnets(new_prefix=30))
    for _ in range(64):
        subnet = candidates[secrets.randbelow(len(candidates))]
        if not any(subnet.overlaps(r) for r in routed):
            return subnet
    raise RuntimeError("no free /30 in 203.0.113.0/24")


# -- listeners on the host's own addresses --------------------------------------------------------


class HostListener:
    """A TCP listener on one of this host's addresses that greets and records each peer."""

    def __init__(self, address: str | IPAddress, port: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((str(address), port))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        bound = self.sock.getsockname()
        self.address: str = str(bound[0])
        self.port: int = int(bound[1])
        self.peers: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def banner(self) -> str:
        return f"host {self.address}:{self.port}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, peer = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                self.peers.append(peer[0])
                with contextlib.suppress(OSError):
                    conn.sendall((self.banner + "\n").encode())

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


# -- packet capture ------------------------------------------------------------------------------

ETH_P_ALL = 0x0003


@dataclass(frozen=True)
class Packet:
    """One IP packet seen on an interface (IPv4 or IPv6; ports for TCP and UDP)."""

    interface: str
    outgoing: bool
    src: IPAddress
    dst: IPAddress
    proto: int
    sport: int | None
    dport: int | None
    payload: bytes

    @property
    def is_dns(self) -> bool:
        return self.proto in (6, 17) and 53 in (self.sport, self.dport)

    def dns_name(self) -> str | None:
        """The question name of a DNS packet over UDP, if it parses."""
        if not self.is_dns or self.proto != 17:
            return None
        return dns_question(self.payload)


def dns_question(message: bytes) -> str | None:
    labels, i = [], 12
    try:
        while message[i]:
            labels.append(message[i + 1 : i + 1 + message[i]].decode("ascii", "replace"))
            i += 1 + message[i]
    except IndexError:
        return None
    return ".".join(labels)


def parse_frame(interface: str, frame: bytes, pkttype: int) -> Packet | None:
    """An Ethernet frame as a `Packet`, or None for non-IP frames."""
    if len(frame) < 14:
        return None
    ethertype, offset = struct.unpack("!H", frame[12:14])[0], 14
    if ethertype == 0x8100:  # one VLAN tag
        ethertype, offset = struct.unpack("!H", frame[16:18])[0], 18
    data = frame[offset:]
    if ethertype == 0x0800 and len(data) >= 20:
        ihl = (data[0] & 0x0F) * 4
        proto = data[9]
        src: IPAddress = ipaddress.IPv4Address(data[12:16])
        dst: IPAddress = ipaddress.IPv4Address(data[16:20])
        body = data[ihl:]
    elif ethertype == 0x86DD and len(data) >= 40:
        proto = data[6]
        src, dst = ipaddress.IPv6Address(data[8:24]), ipaddress.IPv6Address(data[24:40])
        body = data[40:]
    else:
        return None
    sport = dport = None
    if proto in (6, 17) and len(body) >= 4:
        sport, dport = struct.unpack("!HH", body[:4])
        header = 8 if proto == 17 else ((body[12] >> 4) * 4 if len(body) > 12 else 20)
        body = body[header:]
    return Packet(
        interface, pkttype == socket.PACKET_OUTGOING, src, dst, proto, sport, dport, body[:512]
    )


class Sniffer:
    """Records every IP packet crossing some interfaces, both directions, while it runs.

    Outgoing packets are seen after the host's firewall: what it records as
    outgoing on an outward interface did leave the machine.
    """

    def __init__(self, interfaces: Iterable[str], keep: Callable[[Packet], bool]) -> None:
        self.interfaces = sorted(set(interfaces))
        self.keep = keep
        self.packets: list[Packet] = []
        self.seen = dict.fromkeys(self.interfaces, 0)
        self._stop = threading.Event()
        self._socks = []
        for name in self.interfaces:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            sock.bind((name, 0))
            sock.settimeout(0.1)
            self._socks.append((name, sock))
        self._threads = [
            threading.Thread(target=self._run, args=(name, sock), daemon=True)
            for name, sock in self._socks
        ]
        for thread in self._threads:
            thread.start()

    def _run(self, name: str, sock: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                frame, address = sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            self.seen[name] += 1
            packet = parse_frame(name, frame, address[2])
            if packet is not None and self.keep(packet):
                self.packets.append(packet)

    def stop(self) -> list[Packet]:
        if self._stop.is_set():
            return list(self.packets)
        time.sleep(0.3)  # let in-flight frames arrive
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=2)
        for _, sock in self._socks:
            sock.close()
        return list(self.packets)


@contextlib.contextmanager
def sniffing(interfaces: Iterable[str], keep: Callable[[Packet], bool]) -> Iterator[Sniffer]:
    sniffer = Sniffer(interfaces, keep)
    try:
        yield sniffer
    finally:
        sniffer.stop()


def require_root_tools() -> str | None:
    """Why the egress tests cannot run here (None: they can)."""
    if os.geteuid() != 0:
        return "the egress tests need root (network namespaces, iptables, packet capture)"
    for tool in ("ip", "iptables", "ip6tables", "iptables-restore", "iptables-save"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None
