"""The hand-packed rtnetlink requests: a veth born in a pinned namespace, configured as
pyroute2 used to configure it. Real kernel; every namespace and link is removed afterwards."""

from __future__ import annotations

import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from berth.errors import Internal
from berth.network import bridge, netns, rtnl


def _in(ns: Path, *argv: str) -> str:
    return subprocess.run(["nsenter", f"--net={ns}", *argv], capture_output=True, text=True,
                          check=True).stdout


@pytest.fixture
def bridge_name() -> Iterator[str]:
    name = "bt" + secrets.token_hex(4)
    bridge.ensure_bridge(name, "10.251.7.1", 24)
    try:
        yield name
    finally:
        bridge.delete_bridge(name)


@pytest.fixture
def ns(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "ns"
    netns.create_netns(path)
    try:
        yield path
    finally:
        netns.delete_netns(path)


def test_attach_configures_both_ends(bridge_name: str, ns: Path) -> None:
    host = "vt" + secrets.token_hex(4)
    rtnl.attach(ns, host, bridge_name, "eth0", "10.251.7.5", 24, "10.251.7.1",
                "02:42:0a:fb:07:05", True)
    link = subprocess.run(["ip", "-o", "link", "show", host], capture_output=True, text=True,
                          check=True).stdout
    assert f"master {bridge_name}" in link and "state UP" in link
    assert "02:42:0a:fb:07:05" in _in(ns, "ip", "-o", "link", "show", "eth0")
    assert "inet 10.251.7.5/24" in _in(ns, "ip", "-o", "-4", "addr", "show", "eth0")
    assert "default via 10.251.7.1 dev eth0 proto static" in _in(ns, "ip", "route")
    assert "UP" in _in(ns, "ip", "-o", "link", "show", "lo")
    # a second network: no default route, eth1 found by name among the others
    rtnl.attach(ns, "vt" + secrets.token_hex(4), bridge_name, "eth1", "10.251.7.6", 24,
                "10.251.7.1", "02:42:0a:fb:07:06", False)
    assert "inet 10.251.7.6/24" in _in(ns, "ip", "-o", "-4", "addr", "show", "eth1")
    assert _in(ns, "ip", "route").count("default") == 1
    # dropping the namespace takes the pairs with it (asynchronously, in the kernel)
    netns.delete_netns(ns)
    deadline = time.monotonic() + 5
    while subprocess.run(["ip", "link", "show", host], capture_output=True).returncode == 0:
        assert time.monotonic() < deadline, "veth outlived its namespace"
        time.sleep(0.02)


def test_errors_name_the_step(bridge_name: str, ns: Path) -> None:
    with pytest.raises(Internal, match="bridge nosuch0 does not exist"):
        rtnl.attach(ns, "vt" + secrets.token_hex(4), "nosuch0", "eth0", "10.251.7.5", 24,
                    "10.251.7.1", "02:42:0a:fb:07:05", True)
    host = "vt" + secrets.token_hex(4)
    rtnl.attach(ns, host, bridge_name, "eth0", "10.251.7.5", 24, "", "02:42:0a:fb:07:05",
                True)
    with pytest.raises(Internal, match=f"cannot create veth {host}: File exists"):
        rtnl.attach(ns, host, bridge_name, "eth1", "10.251.7.6", 24, "", "02:42:0a:fb:07:06",
                    False)


def test_loopback_up(ns: Path) -> None:
    assert "UP" not in _in(ns, "ip", "-o", "link", "show", "lo").split(">")[0]
    rtnl.loopback_up(ns)
    assert "LOOPBACK,UP" in _in(ns, "ip", "-o", "link", "show", "lo")
