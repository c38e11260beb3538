"""Host firewall rules that confine project bridges to the hub's ports on their own gateway.

Invariant: while `check_rules` passes, a packet arriving from a project bridge
(`tre+`) is accepted by the host only if it belongs to a connection the host
opened, or is a new TCP connection to an allowed port on an address of *that*
bridge (its gateway); it is forwarded only within the same bridge. Everything
else from or to a project bridge is rejected or dropped, for IPv4 and IPv6.

The rules are data (`compute_rules`), live in dedicated chains jumped to from
`INPUT` and Docker's `DOCKER-USER`, are written atomically (`iptables-restore
--noflush`) and are removed without touching anyone else's rules. Every
failure to apply or verify them raises `FirewallError`: callers must refuse
to start workspaces then (fail closed).
"""

from __future__ import annotations

import fcntl
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from .networks import BRIDGE_PREFIX

WILDCARD = BRIDGE_PREFIX + "+"
"""iptables' interface wildcard for every project bridge, present and future."""

DEFAULT_PREFIX = "TRE"
"""Chain-name prefix: the chains are `TRE-INPUT` and `TRE-FORWARD`."""

_INTERFACE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
_PREFIX = re.compile(r"^[A-Z][A-Z0-9-]{0,15}$")
_COUNTERS = re.compile(r"\[\d+:\d+\]")


class FirewallError(RuntimeError):
    """The host firewall cannot be read, written or verified: refuse to start workspaces."""


class FirewallRulesMissing(FirewallError):
    """The host firewall is readable but lacks (part of) the project rules."""


class Family(StrEnum):
    """An IP family, each with its own iptables binary and tables."""

    ipv4 = "ipv4"
    ipv6 = "ipv6"


@dataclass(frozen=True)
class Rule:
    """One rule appended to one of our chains, in the form `iptables -S` prints it."""

    family: Family
    chain: str
    spec: tuple[str, ...]

    def render(self) -> str:
        return " ".join(("-A", self.chain, *self.spec))


@dataclass(frozen=True)
class Jump:
    """A rule in a chain we do not own (INPUT, DOCKER-USER, FORWARD) that enters ours.

    Jumps are inserted at the top of their chain, in the order given.
    """

    family: Family
    chain: str
    spec: tuple[str, ...]

    def render(self) -> str:
        return " ".join(("-A", self.chain, *self.spec))

    @property
    def target(self) -> str:
        return self.spec[self.spec.index("-j") + 1]


@dataclass(frozen=True)
class Ruleset:
    """Everything `apply_rules` writes: our chains, their rules, and the jumps into them."""

    chains: tuple[tuple[Family, str], ...]
    rules: tuple[Rule, ...]
    jumps: tuple[Jump, ...]
    interfaces: tuple[str, ...]
    allowed_ports: tuple[int, ...]

    @property
    def families(self) -> tuple[Family, ...]:
        return tuple(dict.fromkeys(f for f, _ in self.chains))

    def chain_names(self, family: Family) -> tuple[str, ...]:
        return tuple(c for f, c in self.chains if f == family)

    def rules_in(self, family: Family, chain: str) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.family == family and r.chain == chain)

    def jumps_for(self, family: Family) -> tuple[Jump, ...]:
        return tuple(j for j in self.jumps if j.family == family)

    def expected_chain(self, family: Family, chain: str) -> list[str]:
        """The chain exactly as `iptables -S` lists it when the rules are in place."""
        return [f"-N {chain}", *(r.render() for r in self.rules_in(family, chain))]

    def describe(self) -> list[str]:
        """Every line this ruleset owns, as `iptables -S` / `ip6tables -S` print them."""
        lines = []
        for family in self.families:
            tool = "iptables" if family == Family.ipv4 else "ip6tables"
            lines += [f"{tool}: {j.render()}" for j in self.jumps_for(family)]
            for chain in self.chain_names(family):
                lines += [f"{tool}: {line}" for line in self.expected_chain(family, chain)]
        return lines


def compute_rules(
    allowed_ports: Iterable[int],
    interfaces: str | Sequence[str] = WILDCARD,
    *,
    ipv6: bool = True,
    prefix: str = DEFAULT_PREFIX,
) -> Ruleset:
    """The rules confining `interfaces` (default: every `tre+` bridge) to `allowed_ports`.

    `allowed_ports` are TCP ports on the bridge's own gateway address (the hub
    API, the audit, review and mirror services). Nothing else on the host is
    reachable: no other port, no DNS, no ICMP echo; nothing is forwarded off the
    bridge. IPv6 is refused outright (project networks have none).
    """
    ports = _check_ports(allowed_ports)
    ifaces = _check_interfaces(interfaces)
    if not _PREFIX.fullmatch(prefix):
        raise ValueError(f"chain prefix {prefix!r}: upper-case letters, digits, '-', at most 16")
    chain_in, chain_fwd = f"{prefix}-INPUT", f"{prefix}-FORWARD"

    rules: list[Rule] = []
    jumps: list[Jump] = []
    v4 = Family.ipv4
    # Replies to connections the host opened (JupyterHub's proxy to the
    # container's port) and the ICMP errors belonging to them.
    rules.append(Rule(v4, chain_in, _spec("-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")))
    # `--limit-iface-in`: the destination must be an address of the bridge the
    # packet came in on, i.e. its gateway, never the host's other addresses.
    rules += [
        Rule(
            v4,
            chain_in,
            _spec(
                "-p tcp -m addrtype --dst-type LOCAL --limit-iface-in "
                f"-m tcp --dport {port} -m conntrack --ctstate NEW -j ACCEPT"
            ),
        )
        for port in ports
    ]
    # Reject rather than drop: a denied connection fails at once in the
    # workspace instead of hanging; nothing is revealed by it that the
    # rules themselves (documented) do not say.
    rules.append(Rule(v4, chain_in, _spec("-p tcp -j REJECT --reject-with tcp-reset")))
    rules.append(Rule(v4, chain_in, _spec("-j REJECT --reject-with icmp-admin-prohibited")))
    # Bridged frames (container to container on the same bridge) go back to
    # Docker's rules; anything routed off or onto a project bridge does not.
    rules.append(Rule(v4, chain_fwd, _spec("-m physdev --physdev-is-bridged -j RETURN")))
    rules.append(
        Rule(v4, chain_fwd, _spec(f"-i {WILDCARD} -j REJECT --reject-with icmp-admin-prohibited"))
    )
    rules.append(Rule(v4, chain_fwd, _spec("-j DROP")))
    jumps += [Jump(v4, "INPUT", ("-i", i, "-j", chain_in)) for i in ifaces]
    jumps += [
        Jump(v4, "DOCKER-USER", (d, i, "-j", chain_fwd)) for i in ifaces for d in ("-i", "-o")
    ]
    chains = [(v4, chain_in), (v4, chain_fwd)]

    if ipv6:
        v6 = Family.ipv6
        rules.append(Rule(v6, chain_in, _spec("-j DROP")))
        rules.append(Rule(v6, chain_fwd, _spec("-m physdev --physdev-is-bridged -j RETURN")))
        rules.append(Rule(v6, chain_fwd, _spec("-j DROP")))
        # Docker without IPv6 keeps no DOCKER-USER chain in ip6tables.
        jumps += [Jump(v6, "INPUT", ("-i", i, "-j", chain_in)) for i in ifaces]
        jumps += [
            Jump(v6, "FORWARD", (d, i, "-j", chain_fwd)) for i in ifaces for d in ("-i", "-o")
        ]
        chains += [(v6, chain_in), (v6, chain_fwd)]

    return Ruleset(
        chains=tuple(chains),
        rules=tuple(rules),
        jumps=tuple(jumps),
        interfaces=ifaces,
        allowed_ports=ports,
    )


def _spec(text: str) -> tuple[str, ...]:
    return tuple(text.split())


def _check_ports(allowed_ports: Iterable[int]) -> tuple[int, ...]:
    ports = []
    for port in allowed_ports:
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise ValueError(f"allowed port {port!r} is not a TCP port number (1-65535)")
        ports.append(port)
    return tuple(sorted(set(ports)))


def _check_interfaces(interfaces: str | Sequence[str]) -> tuple[str, ...]:
    names = (interfaces,) if isinstance(interfaces, str) else tuple(interfaces)
    if not names:
        raise ValueError("no interfaces given: the rules would confine nothing")
    for name in names:
        base = name.removesuffix("+")
        # Only project bridges: a typo must not cut the host off its own network.
        if not name.startswith(BRIDGE_PREFIX) or not _INTERFACE.fullmatch(base):
            raise ValueError(
                f"interface {name!r} is not a project bridge name (or wildcard) "
                f"starting with {BRIDGE_PREFIX!r}"
            )
    if WILDCARD in names and len(names) > 1:
        raise ValueError(f"{WILDCARD!r} already covers every project bridge; give it alone")
    return tuple(dict.fromkeys(names))


# -- reading the firewall ------------------------------------------------------------------------


def parse_listing(text: str) -> dict[str, list[str]]:
    """`iptables -S` output as chain -> its lines (`-P`/`-N` first, then `-A` in order)."""
    chains: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) < 2 or parts[0] not in {"-P", "-N", "-A"}:
            raise FirewallError(f"unexpected line in iptables -S output: {line!r}")
        chains.setdefault(parts[1], []).append(line)
    return chains


def problems(ruleset: Ruleset, family: Family, listing: dict[str, list[str]]) -> list[str]:
    """What is missing or wrong in one family's filter table; empty when all is in place."""
    tool = "iptables" if family == Family.ipv4 else "ip6tables"
    found: list[str] = []
    for jump in ruleset.jumps_for(family):
        lines = listing.get(jump.chain)
        if lines is None:
            found.append(
                f"{tool}: chain {jump.chain} does not exist (is Docker running, with this "
                "iptables backend?)"
            )
            continue
        rules = [line for line in lines if line.startswith("-A ")]
        wanted = jump.render()
        if wanted not in rules:
            found.append(f"{tool}: missing rule `{wanted}`")
            continue
        # Anything that accepts or returns before our jump would bypass it.
        for line in rules[: rules.index(wanted)]:
            target = line.split(" -j ", 1)[1].split()[0] if " -j " in line else ""
            if target in {"ACCEPT", "RETURN"}:
                found.append(f"{tool}: `{line}` comes before `{wanted}` and bypasses it")
    for chain in ruleset.chain_names(family):
        expected = ruleset.expected_chain(family, chain)
        actual = listing.get(chain)
        if actual is None:
            found.append(f"{tool}: chain {chain} does not exist")
            continue
        for index, want in enumerate(expected):
            have = actual[index] if index < len(actual) else None
            if have != want:
                found.append(
                    f"{tool}: chain {chain} rule {index}: expected `{want}`, found "
                    + (f"`{have}`" if have is not None else "nothing")
                )
                break
        else:
            found += [f"{tool}: unexpected rule `{extra}`" for extra in actual[len(expected) :]]
    return found


# -- running iptables -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Backend:
    """The iptables programs to use (those Docker uses: the same backend, nft or legacy)."""

    iptables: str = "iptables"
    ip6tables: str = "ip6tables"
    timeout: float = 30.0
    lock_path: Path = field(default_factory=lambda: Path("/run/jupyter-tre-firewall.lock"))

    def program(self, family: Family, restore: bool = False) -> str:
        base = self.iptables if family == Family.ipv4 else self.ip6tables
        name = f"{base}-restore" if restore else base
        found = shutil.which(name)
        if found is None:
            raise FirewallError(
                f"{name} not found: the host firewall cannot be set, so no workspace may start "
                "(install iptables)"
            )
        return found

    def run(self, family: Family, args: Sequence[str], stdin: str | None = None) -> str:
        restore = stdin is not None
        command = [self.program(family, restore=restore), "-w", str(int(self.timeout)), *args]
        try:
            done = subprocess.run(
                command,
                input=stdin,
                capture_output=True,
                text=True,
                timeout=self.timeout + 5,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise FirewallError(f"{' '.join(command)} failed: {exc}") from exc
        if done.returncode != 0:
            message = "\n".join(
                line for line in done.stderr.splitlines() if "legacy tables present" not in line
            )
            raise FirewallError(
                f"{' '.join(command)} exited with {done.returncode}: {message.strip()}"
                + (f"\ninput was:\n{stdin}" if stdin else "")
            )
        return done.stdout

    def listing(self, family: Family) -> dict[str, list[str]]:
        return parse_listing(self.run(family, ["-t", "filter", "-S"]))

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Serialise our own read-modify-write cycles (iptables' lock covers single calls)."""
        try:
            handle = self.lock_path.open("a")
        except OSError as exc:
            raise FirewallError(f"cannot open lock file {self.lock_path}: {exc}") from exc
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield


DEFAULT_BACKEND = Backend()


def host_has_ipv6() -> bool:
    """Whether this kernel has IPv6 (then IPv6 rules are needed too)."""
    return Path("/proc/net/if_inet6").exists()


def restore_script(ruleset: Ruleset, family: Family, listing: dict[str, list[str]]) -> str:
    """The `iptables-restore --noflush` input that puts `ruleset` in place in one transaction.

    Declaring our chains (`:CHAIN`) creates or flushes them; jumps that are
    missing or preceded by something that bypasses them are (re)inserted at the top.
    """
    lines = ["*filter"]
    lines += [f":{chain} - [0:0]" for chain in ruleset.chain_names(family)]
    for chain in ruleset.chain_names(family):
        lines += [rule.render() for rule in ruleset.rules_in(family, chain)]
    jumps = ruleset.jumps_for(family)
    for jump in jumps:
        present = listing.get(jump.chain, []).count(jump.render())
        lines += [jump.render().replace("-A ", "-D ", 1)] * present
    # Inserting each at position 1 in reverse keeps the given order at the top.
    lines += [f"-I {j.chain} 1 {' '.join(j.spec)}" for j in reversed(jumps)]
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def removal_script(ruleset: Ruleset, family: Family, listing: dict[str, list[str]]) -> str | None:
    """The `iptables-restore --noflush` input removing `ruleset`; None if nothing is there."""
    lines = ["*filter"]
    for jump in ruleset.jumps_for(family):
        present = listing.get(jump.chain, []).count(jump.render())
        lines += [jump.render().replace("-A ", "-D ", 1)] * present
    for chain in ruleset.chain_names(family):
        if chain in listing:
            lines += [f"-F {chain}", f"-X {chain}"]
    if len(lines) == 1:
        return None
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


# -- the API the hub uses ----------------------------------------------------------------------


def check_rules(ruleset: Ruleset, backend: Backend = DEFAULT_BACKEND) -> None:
    """Raise `FirewallRulesMissing` naming what is missing, or `FirewallError` if unreadable."""
    found = []
    for family in ruleset.families:
        found += problems(ruleset, family, backend.listing(family))
    if found:
        raise FirewallRulesMissing(
            "the host firewall does not confine project networks: " + "; ".join(found)
        )


def rules_in_place(ruleset: Ruleset, backend: Backend = DEFAULT_BACKEND) -> bool:
    """Whether `check_rules` would pass. An unreadable firewall counts as not in place."""
    try:
        check_rules(ruleset, backend)
    except FirewallError:
        return False
    return True


def apply_rules(ruleset: Ruleset, backend: Backend = DEFAULT_BACKEND) -> bool:
    """Put `ruleset` in place; True if anything changed. Idempotent and atomic per family.

    Verifies the result and raises `FirewallError` if it is not exactly in place.
    """
    changed = False
    with backend.locked():
        for family in ruleset.families:
            listing = backend.listing(family)
            if not problems(ruleset, family, listing):
                continue
            for jump in ruleset.jumps_for(family):
                if jump.chain not in listing and jump.chain not in ruleset.chain_names(family):
                    raise FirewallError(
                        f"chain {jump.chain} is missing in the {family} filter table: "
                        "start Docker first (it creates DOCKER-USER), and check that Docker "
                        "and this host use the same iptables backend (nft or legacy)"
                    )
            backend.run(family, ["--noflush"], stdin=restore_script(ruleset, family, listing))
            changed = True
        check_rules(ruleset, backend)
    return changed


def remove_rules(ruleset: Ruleset, backend: Backend = DEFAULT_BACKEND) -> bool:
    """Remove exactly what `apply_rules` added; True if anything was there. Idempotent."""
    changed = False
    with backend.locked():
        for family in ruleset.families:
            script = removal_script(ruleset, family, backend.listing(family))
            if script is not None:
                backend.run(family, ["--noflush"], stdin=script)
                changed = True
        for family in ruleset.families:
            listing = backend.listing(family)
            left = [c for c in ruleset.chain_names(family) if c in listing]
            left += [
                j.render()
                for j in ruleset.jumps_for(family)
                if j.render() in listing.get(j.chain, [])
            ]
            if left:
                raise FirewallError(f"{family}: could not remove {', '.join(left)}")
    return changed


def normalise_save(text: str) -> list[str]:
    """`iptables-save` output without comments and counters, for before/after comparisons."""
    return [
        _COUNTERS.sub("[0:0]", line)
        for line in text.splitlines()
        if line.strip() and not line.startswith("#")
    ]
