"""The firewall rules as data: what `compute_rules` asks of iptables, and how state is judged."""

from __future__ import annotations

import hashlib

import pytest

from tre.hub.firewall import (
    WILDCARD,
    Backend,
    Family,
    FirewallError,
    Ruleset,
    check_rules,
    compute_rules,
    normalise_save,
    parse_listing,
    problems,
    removal_script,
    restore_script,
    rules_in_place,
)
from tre.hub.networks import (
    NETWORK_PREFIX,
    ProjectNetworkError,
    bridge_name,
    check_project_id,
    network_name,
)

HUB = 8081


def lines(ruleset: Ruleset, family: Family = Family.ipv4) -> list[str]:
    """`ruleset.describe()` for one family, without the tool name."""
    tool = "iptables: " if family == Family.ipv4 else "ip6tables: "
    return [line.removeprefix(tool) for line in ruleset.describe() if line.startswith(tool)]


def listing_with(ruleset: Ruleset, family: Family) -> dict[str, list[str]]:
    """A parsed `iptables -S` of a table where `ruleset` is in place above Docker's rules."""
    table = parse_listing(DOCKER_V4 if family == Family.ipv4 else PLAIN_V6)
    for jump in reversed(ruleset.jumps_for(family)):
        chain = table[jump.chain]
        first_rule = next((i for i, x in enumerate(chain) if x.startswith("-A ")), len(chain))
        chain.insert(first_rule, jump.render())
    for chain_name in ruleset.chain_names(family):
        table[chain_name] = ruleset.expected_chain(family, chain_name)
    return table


DOCKER_V4 = """\
-P INPUT ACCEPT
-P FORWARD DROP
-P OUTPUT ACCEPT
-N DOCKER
-N DOCKER-USER
-A FORWARD -j DOCKER-USER
-A FORWARD -o docker0 -j DOCKER
-A DOCKER-USER -j RETURN
"""

PLAIN_V6 = """\
-P INPUT ACCEPT
-P FORWARD ACCEPT
-P OUTPUT ACCEPT
"""


# -- what the rules say ------------------------------------------------------------------------


def test_the_wildcard_rules_confine_every_project_bridge() -> None:
    ruleset = compute_rules([HUB, 8082])
    assert lines(ruleset) == [
        "-A INPUT -i tre+ -j TRE-INPUT",
        "-A DOCKER-USER -i tre+ -j TRE-FORWARD",
        "-A DOCKER-USER -o tre+ -j TRE-FORWARD",
        "-N TRE-INPUT",
        "-A TRE-INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        "-A TRE-INPUT -p tcp -m addrtype --dst-type LOCAL --limit-iface-in -m tcp --dport 8081 "
        "-m conntrack --ctstate NEW -j ACCEPT",
        "-A TRE-INPUT -p tcp -m addrtype --dst-type LOCAL --limit-iface-in -m tcp --dport 8082 "
        "-m conntrack --ctstate NEW -j ACCEPT",
        "-A TRE-INPUT -p tcp -j REJECT --reject-with tcp-reset",
        "-A TRE-INPUT -j REJECT --reject-with icmp-admin-prohibited",
        "-N TRE-FORWARD",
        "-A TRE-FORWARD -m physdev --physdev-is-bridged -j RETURN",
        "-A TRE-FORWARD -i tre+ -j REJECT --reject-with icmp-admin-prohibited",
        "-A TRE-FORWARD -j DROP",
    ]


def test_ipv6_from_a_project_bridge_is_dropped_whole() -> None:
    assert lines(compute_rules([HUB]), Family.ipv6) == [
        "-A INPUT -i tre+ -j TRE-INPUT",
        "-A FORWARD -i tre+ -j TRE-FORWARD",
        "-A FORWARD -o tre+ -j TRE-FORWARD",
        "-N TRE-INPUT",
        "-A TRE-INPUT -j DROP",
        "-N TRE-FORWARD",
        "-A TRE-FORWARD -m physdev --physdev-is-bridged -j RETURN",
        "-A TRE-FORWARD -j DROP",
    ]
    assert Family.ipv6 not in compute_rules([HUB], ipv6=False).families


def test_every_accept_is_either_a_reply_or_an_allowed_port_on_the_bridges_own_address() -> None:
    ruleset = compute_rules([HUB, 9000, 9001])
    accepts = [r.render() for r in ruleset.rules if "ACCEPT" in r.spec]
    replies = [a for a in accepts if "RELATED,ESTABLISHED" in a]
    ports = [a for a in accepts if "--limit-iface-in" in a and "--dst-type LOCAL" in a]
    assert len(replies) == 1 and len(ports) == 3
    assert sorted(replies + ports) == sorted(accepts)
    # No UDP, no DNS, no ICMP is ever accepted as new traffic.
    assert all("-p tcp" in a for a in ports)
    assert not [a for a in accepts if "udp" in a or "icmp" in a or "--dport 53" in a]
    # Each of our chains ends in a rule without conditions that refuses.
    for family in ruleset.families:
        for chain in ruleset.chain_names(family):
            last = ruleset.rules_in(family, chain)[-1].spec
            assert last in {
                ("-j", "DROP"),
                ("-j", "REJECT", "--reject-with", "icmp-admin-prohibited"),
            }


def test_named_bridges_get_their_own_jumps_and_the_same_chains() -> None:
    wildcard = compute_rules([HUB])
    named = compute_rules([HUB], ["treaaaaaaaaaa", "trebbbbbbbbbb"])
    assert named.rules == wildcard.rules
    assert [j.render() for j in named.jumps_for(Family.ipv4)] == [
        "-A INPUT -i treaaaaaaaaaa -j TRE-INPUT",
        "-A INPUT -i trebbbbbbbbbb -j TRE-INPUT",
        "-A DOCKER-USER -i treaaaaaaaaaa -j TRE-FORWARD",
        "-A DOCKER-USER -o treaaaaaaaaaa -j TRE-FORWARD",
        "-A DOCKER-USER -i trebbbbbbbbbb -j TRE-FORWARD",
        "-A DOCKER-USER -o trebbbbbbbbbb -j TRE-FORWARD",
    ]


def test_ports_are_sorted_and_deduplicated_and_the_prefix_names_the_chains() -> None:
    ruleset = compute_rules([9000, HUB, 9000], prefix="TRE-T1")
    assert ruleset.allowed_ports == (HUB, 9000)
    assert ruleset.chain_names(Family.ipv4) == ("TRE-T1-INPUT", "TRE-T1-FORWARD")
    assert compute_rules([HUB]) == compute_rules([HUB])


def test_no_allowed_port_means_nothing_on_the_host_is_reachable() -> None:
    ruleset = compute_rules([])
    assert not [r for r in ruleset.rules if "--dport" in r.spec]


@pytest.mark.parametrize(
    ("ports", "interfaces", "prefix", "message"),
    [
        ([0], WILDCARD, "TRE", "not a TCP port"),
        ([65536], WILDCARD, "TRE", "not a TCP port"),
        ([True], WILDCARD, "TRE", "not a TCP port"),
        (["8081"], WILDCARD, "TRE", "not a TCP port"),
        ([HUB], "eth0", "TRE", "not a project bridge"),
        ([HUB], "+", "TRE", "not a project bridge"),
        ([HUB], "tre; rm -rf /", "TRE", "not a project bridge"),
        ([HUB], "tre0123456789abcdef", "TRE", "not a project bridge"),
        ([HUB], [], "TRE", "no interfaces"),
        ([HUB], [WILDCARD, "tre0123456789"], "TRE", "covers every project bridge"),
        ([HUB], WILDCARD, "tre", "chain prefix"),
        ([HUB], WILDCARD, "TRE-FAR-TOO-LONG-PREFIX", "chain prefix"),
    ],
)
def test_bad_input_is_refused(
    ports: list[object], interfaces: str | list[str], prefix: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        compute_rules(ports, interfaces, prefix=prefix)  # type: ignore[arg-type]


# -- judging the state of a table ---------------------------------------------------------------


def test_a_table_with_the_rules_in_place_has_no_problems() -> None:
    ruleset = compute_rules([HUB])
    for family in ruleset.families:
        assert problems(ruleset, family, listing_with(ruleset, family)) == []


def test_an_empty_table_lists_every_missing_jump_and_chain() -> None:
    ruleset = compute_rules([HUB])
    found = problems(ruleset, Family.ipv4, parse_listing(DOCKER_V4))
    assert found == [
        "iptables: missing rule `-A INPUT -i tre+ -j TRE-INPUT`",
        "iptables: missing rule `-A DOCKER-USER -i tre+ -j TRE-FORWARD`",
        "iptables: missing rule `-A DOCKER-USER -o tre+ -j TRE-FORWARD`",
        "iptables: chain TRE-INPUT does not exist",
        "iptables: chain TRE-FORWARD does not exist",
    ]


def test_without_docker_the_missing_docker_user_chain_is_named() -> None:
    found = problems(compute_rules([HUB]), Family.ipv4, parse_listing("-P INPUT ACCEPT\n"))
    assert any("chain DOCKER-USER does not exist (is Docker running" in p for p in found)


def test_a_changed_missing_or_extra_rule_is_named() -> None:
    ruleset = compute_rules([HUB])
    table = listing_with(ruleset, Family.ipv4)
    table["TRE-INPUT"][2] = table["TRE-INPUT"][2].replace("8081", "8082")
    [found] = problems(ruleset, Family.ipv4, table)
    assert "chain TRE-INPUT rule 2: expected" in found and "8081" in found and "8082" in found

    table = listing_with(ruleset, Family.ipv4)
    del table["TRE-FORWARD"][-1]
    [found] = problems(ruleset, Family.ipv4, table)
    assert (
        found
        == "iptables: chain TRE-FORWARD rule 3: expected `-A TRE-FORWARD -j DROP`, found nothing"
    )

    table = listing_with(ruleset, Family.ipv4)
    table["TRE-INPUT"].append("-A TRE-INPUT -j ACCEPT")
    assert problems(ruleset, Family.ipv4, table) == [
        "iptables: unexpected rule `-A TRE-INPUT -j ACCEPT`"
    ]


def test_an_accept_above_our_jump_is_named_as_a_bypass() -> None:
    ruleset = compute_rules([HUB])
    table = listing_with(ruleset, Family.ipv4)
    table["INPUT"].insert(1, "-A INPUT -i tre+ -j ACCEPT")
    table["DOCKER-USER"].insert(1, "-A DOCKER-USER -j RETURN")
    found = problems(ruleset, Family.ipv4, table)
    assert (
        "iptables: `-A INPUT -i tre+ -j ACCEPT` comes before `-A INPUT -i tre+ -j TRE-INPUT` "
        "and bypasses it" in found
    )
    assert any("`-A DOCKER-USER -j RETURN` comes before" in p for p in found)
    # Another rule set's jump above ours does not bypass it (its chain refuses or returns).
    table = listing_with(ruleset, Family.ipv4)
    table["INPUT"].insert(1, "-A INPUT -i tre+ -j OTHER-INPUT")
    assert problems(ruleset, Family.ipv4, table) == []


def test_parse_listing_keeps_order_and_rejects_garbage() -> None:
    table = parse_listing(DOCKER_V4 + "# Warning: iptables-legacy tables present\n")
    assert table["FORWARD"] == [
        "-P FORWARD DROP",
        "-A FORWARD -j DOCKER-USER",
        "-A FORWARD -o docker0 -j DOCKER",
    ]
    with pytest.raises(FirewallError, match="unexpected line"):
        parse_listing("Chain INPUT (policy ACCEPT)\n")


# -- what apply and remove would write ---------------------------------------------------------


def test_restore_script_creates_chains_and_inserts_jumps_on_top_in_order() -> None:
    ruleset = compute_rules([HUB], ["treaaaaaaaaaa"])
    script = restore_script(ruleset, Family.ipv4, parse_listing(DOCKER_V4)).splitlines()
    assert script[0] == "*filter" and script[-1] == "COMMIT"
    assert script[1:3] == [":TRE-INPUT - [0:0]", ":TRE-FORWARD - [0:0]"]
    assert script[-4:-1] == [
        "-I DOCKER-USER 1 -o treaaaaaaaaaa -j TRE-FORWARD",
        "-I DOCKER-USER 1 -i treaaaaaaaaaa -j TRE-FORWARD",
        "-I INPUT 1 -i treaaaaaaaaaa -j TRE-INPUT",
    ]
    assert not [line for line in script if line.startswith(("-D", "-F", "-X"))]


def test_restore_script_moves_a_bypassed_jump_to_the_top_without_duplicating_it() -> None:
    ruleset = compute_rules([HUB])
    table = listing_with(ruleset, Family.ipv4)
    table["INPUT"].insert(1, "-A INPUT -i tre+ -j ACCEPT")
    script = restore_script(ruleset, Family.ipv4, table).splitlines()
    assert script.count("-D INPUT -i tre+ -j TRE-INPUT") == 1
    assert script.count("-I INPUT 1 -i tre+ -j TRE-INPUT") == 1


def test_removal_deletes_only_our_jumps_and_chains() -> None:
    ruleset = compute_rules([HUB])
    table = listing_with(ruleset, Family.ipv4)
    script = removal_script(ruleset, Family.ipv4, table)
    assert script is not None
    assert script.splitlines() == [
        "*filter",
        "-D INPUT -i tre+ -j TRE-INPUT",
        "-D DOCKER-USER -i tre+ -j TRE-FORWARD",
        "-D DOCKER-USER -o tre+ -j TRE-FORWARD",
        "-F TRE-INPUT",
        "-X TRE-INPUT",
        "-F TRE-FORWARD",
        "-X TRE-FORWARD",
        "COMMIT",
    ]
    assert removal_script(ruleset, Family.ipv4, parse_listing(DOCKER_V4)) is None


def test_normalise_save_drops_counters_and_timestamps() -> None:
    save = "# Generated by iptables-save v1.8.9 on Mon\n*filter\n:INPUT ACCEPT [12:345]\nCOMMIT\n"
    assert normalise_save(save) == ["*filter", ":INPUT ACCEPT [0:0]", "COMMIT"]


def test_a_missing_iptables_fails_closed() -> None:
    missing = Backend(iptables="/nonexistent/iptables", ip6tables="/nonexistent/ip6tables")
    with pytest.raises(FirewallError, match="not found: the host firewall cannot be set"):
        check_rules(compute_rules([HUB]), missing)
    assert rules_in_place(compute_rules([HUB]), missing) is False


# -- network names --------------------------------------------------------------------------------


def test_bridge_names_are_short_deterministic_and_distinct() -> None:
    assert bridge_name("cardio-2026") == bridge_name("cardio-2026")
    assert bridge_name("cardio-2026") != bridge_name("cardio-2027")
    name = bridge_name("x" * 63)
    assert len(name) == 13 and name.startswith("tre")
    assert bridge_name("cardio-2026") == "tre" + hashlib.sha256(b"cardio-2026").hexdigest()[:10]
    assert network_name("cardio-2026") == NETWORK_PREFIX + "cardio-2026"


@pytest.mark.parametrize("bad", ["", "Cardio", "-x", "a" * 64, "a_b", "a/b", "a b"])
def test_project_ids_must_be_slugs(bad: str) -> None:
    with pytest.raises(ProjectNetworkError, match="is not a slug"):
        check_project_id(bad)
