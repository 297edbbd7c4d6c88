"""Rule building and port spec parsing (pure)."""

from __future__ import annotations

import pytest

from berth.errors import InvalidArgument
from berth.network.portmap import (
    BridgeRules,
    PortMapping,
    build_ruleset,
    jump_rules,
    parse_host_port,
    parse_port_key,
)


def test_ruleset_rewrites_only_our_chains():
    text = build_ruleset("BERTH0", [BridgeRules("berth0", "172.17.0.0/16")],
                         [PortMapping("tcp", "127.0.0.1", 30000, "172.17.0.2", 80),
                          PortMapping("udp", "0.0.0.0", 30001, "172.17.0.2", 53)])
    lines = text.splitlines()
    assert lines[0] == "*filter" and ":BERTH0-FORWARD - [0:0]" in lines
    assert "-A BERTH0-DNAT -d 127.0.0.1/32 -p tcp -m tcp --dport 30000 -j DNAT " \
           "--to-destination 172.17.0.2:80" in lines
    assert "-A BERTH0-DNAT -p udp -m udp --dport 30001 -j DNAT " \
           "--to-destination 172.17.0.2:53" in lines
    assert "-A BERTH0-POSTROUTING -s 172.17.0.0/16 ! -o berth0 -j MASQUERADE" in lines
    assert "-A BERTH0-POSTROUTING -s 127.0.0.0/8 -o berth0 -j MASQUERADE" in lines
    assert text.count("COMMIT") == 2
    # nothing outside our chains is declared or appended to
    for line in lines:
        if line.startswith(("-A ", ":")):
            assert line.split()[1 if line.startswith("-A") else 0].lstrip(":").startswith(
                "BERTH0-")


def test_internal_network_neither_forwards_out_nor_masquerades():
    text = build_ruleset("B", [BridgeRules("br-x", "10.0.0.0/24", internal=True)], [])
    assert "-A B-FORWARD -i br-x ! -o br-x -j DROP" in text
    assert "MASQUERADE" not in text


def test_same_mapping_twice_gives_one_rule():
    m = PortMapping("tcp", "0.0.0.0", 1, "10.0.0.2", 80)
    text = build_ruleset("B", [], [m, PortMapping("tcp", "127.0.0.1", 2, "10.0.0.2", 80)])
    assert text.count("-A B-FORWARD -d 10.0.0.2/32 -p tcp -m tcp --dport 80 -j ACCEPT") == 1


def test_jumps_lead_into_our_chains():
    assert ("filter", "FORWARD", ["-j", "X-FORWARD"]) in jump_rules("X")


def test_port_specs():
    assert parse_port_key("80") == (80, "tcp")
    assert parse_port_key("53/UDP") == (53, "udp")
    with pytest.raises(InvalidArgument, match="Invalid proto: bogus"):
        parse_port_key("80/bogus")
    assert parse_host_port("") == (0, 0)
    assert parse_host_port("8000-8010") == (8000, 8010)
    with pytest.raises(InvalidArgument):
        parse_host_port("9-1")
