"""The cheap paths of container networking keep Docker's behaviour: ``--network none`` without
a pinned namespace, and stale pins swept when berthd starts."""

from __future__ import annotations

import json
import secrets
import subprocess

import pytest

from berth.network import netns


@pytest.mark.parametrize("runtime", ["runc", "crun", "berth"])
def test_network_none_has_loopback_up(daemon, runtime):
    out = daemon.out("run", "--rm", "--runtime", runtime, "--network", "none", "busybox",
                     "ip", "-o", "link")
    assert len(out.splitlines()) == 1 and "LOOPBACK,UP" in out


def test_network_none_sandbox_key_and_joining_it(daemon):
    name = "none-" + secrets.token_hex(4)
    try:
        daemon.out("run", "-d", "--name", name, "--network", "none", "busybox", "sleep", "30")
        settings = json.loads(daemon.out("inspect", name))[0]["NetworkSettings"]
        assert settings["SandboxID"] and list(settings["Networks"]) == ["none"]
        links = subprocess.run(["nsenter", f"--net={settings['SandboxKey']}", "ip", "-o",
                                "link"], capture_output=True, text=True, check=True).stdout
        assert [line.split(":")[1].strip() for line in links.splitlines()] == ["lo"]
        out = daemon.out("run", "--rm", "--network", f"container:{name}", "busybox", "ip",
                         "-o", "link")
        assert [line.split(":")[1].strip() for line in out.splitlines()] == ["lo"]
    finally:
        daemon.cli("rm", "-f", name)


def test_start_sweeps_unlisted_pins(fresh_daemon):
    d = fresh_daemon
    pin = d.exec_root / "netns" / ("stale" + secrets.token_hex(4))
    netns.create_netns(pin)
    try:
        d.restart()
        assert not pin.exists()
    finally:
        netns.delete_netns(pin)
