"""``--restart`` policies end to end: back-off restarts, manual stops, and berthd restarts."""

from __future__ import annotations

import time

import pytest


def wait_for(fn, timeout: float = 20.0, interval: float = 0.1):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def state(d, name: str) -> tuple[str, int]:
    out = d.out("inspect", "-f", "{{.State.Status}} {{.RestartCount}}", name).split()
    return out[0], int(out[1])


@pytest.mark.usefixtures("daemon")
def test_on_failure_stops_after_its_budget(daemon):
    daemon.out("run", "-d", "--name", "rs-onfail", "--restart", "on-failure:2", "busybox",
               "sh", "-c", "exit 3")
    try:
        assert wait_for(lambda: state(daemon, "rs-onfail") == ("exited", 2))
        time.sleep(1.0)  # and no third attempt
        assert state(daemon, "rs-onfail") == ("exited", 2)
        assert daemon.out("inspect", "-f", "{{.State.ExitCode}}", "rs-onfail").strip() == "3"
    finally:
        daemon.cli("rm", "-f", "rs-onfail")


@pytest.mark.usefixtures("daemon")
def test_on_failure_ignores_success_and_no_never_restarts(daemon):
    daemon.out("run", "-d", "--name", "rs-ok", "--restart", "on-failure", "busybox", "true")
    daemon.out("run", "-d", "--name", "rs-no", "busybox", "sh", "-c", "exit 1")
    try:
        time.sleep(1.5)
        assert state(daemon, "rs-ok") == ("exited", 0)
        assert state(daemon, "rs-no") == ("exited", 0)
    finally:
        daemon.cli("rm", "-f", "rs-ok", "rs-no")


@pytest.mark.usefixtures("daemon")
def test_always_restarts_until_stopped_by_hand(daemon):
    daemon.out("run", "-d", "--name", "rs-always", "--restart", "always", "busybox",
               "sh", "-c", "sleep 0.2")
    try:
        assert wait_for(lambda: state(daemon, "rs-always")[1] >= 2)
        daemon.out("stop", "-t", "1", "rs-always")
        first = state(daemon, "rs-always")
        assert first[0] == "exited"
        time.sleep(1.5)
        assert state(daemon, "rs-always") == first
        # a start by hand resets the count
        daemon.out("start", "rs-always")
        assert state(daemon, "rs-always")[1] == 0
    finally:
        daemon.cli("rm", "-f", "rs-always")


def test_policies_after_berthd_restart(fresh_daemon, test_images):
    d = fresh_daemon
    d.out("load", "-i", str(test_images.busybox_docker_tar))
    d.out("run", "-d", "--name", "b-always", "--restart", "always", "busybox", "sleep", "300")
    d.out("run", "-d", "--name", "b-unless", "--restart", "unless-stopped", "busybox",
          "sleep", "300")
    d.out("run", "-d", "--name", "b-unless-up", "--restart", "unless-stopped", "busybox",
          "sleep", "300")
    d.out("run", "-d", "--name", "b-no", "busybox", "sleep", "300")
    for name in ("b-always", "b-unless", "b-no"):
        d.out("stop", "-t", "0", name)
    d.restart()
    running = set(d.out("ps", "--format", "{{.Names}}").split())
    assert running == {"b-always", "b-unless-up"}
