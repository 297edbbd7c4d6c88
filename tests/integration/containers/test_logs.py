"""`logs -f --tail --since -t` on Docker's json-file log."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest
from tests.conftest import _tool
from tests.integration.containers._probe import wait_for

pytestmark = pytest.mark.usefixtures("daemon")

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z"


@pytest.fixture(scope="module")
def five(daemon):
    """An exited container that printed line1..line5 (and err4), with a gap after line3."""
    daemon.out("run", "-d", "--name", "logs5", "busybox", "sh", "-c",
               "for i in 1 2 3; do echo line$i; done; sleep 1.5; "
               "echo line4; echo err4 >&2; echo line5")
    daemon.out("wait", "logs5")
    yield "logs5"
    daemon.cli("rm", "-f", "logs5")


def test_all_lines_and_streams(daemon, five):
    proc = daemon.cli("logs", five)
    assert proc.stdout == b"line1\nline2\nline3\nline4\nline5\n"
    assert proc.stderr == b"err4\n"


@pytest.mark.parametrize(("tail", "out", "err"), [
    ("2", b"line5\n", b"err4\n"),  # the last 2 entries of the log are err4 and line5
    ("0", b"", b""),
    ("all", b"line1\nline2\nline3\nline4\nline5\n", b"err4\n"),
    ("100", b"line1\nline2\nline3\nline4\nline5\n", b"err4\n"),
])
def test_tail(daemon, five, tail, out, err):
    proc = daemon.cli("logs", "--tail", tail, five)
    assert (proc.stdout, proc.stderr) == (out, err)


def test_timestamps_are_rfc3339_nano_and_ordered(daemon, five):
    lines = daemon.out("logs", "-t", five).splitlines()
    assert len(lines) == 5
    stamps = []
    for n, line in enumerate(lines, 1):
        m = re.fullmatch(rf"({STAMP}) line{n}", line)
        assert m, line
        stamps.append(m.group(1))
    assert stamps == sorted(stamps)
    # the stamps are the ones in the json-file log
    log_path = daemon.out("inspect", "-f", "{{.LogPath}}", five).strip()
    with open(log_path) as f:
        entries = [json.loads(line) for line in f]
    assert [e["time"] for e in entries if e["stream"] == "stdout"] == stamps
    assert {e["stream"] for e in entries} == {"stdout", "stderr"}
    assert entries[0]["log"] == "line1\n"


def test_since(daemon, five):
    log = daemon.out("logs", "-t", five).splitlines()
    fourth = log[3].split()[0]  # line4's stamp: after the 1.5 s gap
    proc = daemon.cli("logs", "--since", fourth, five)
    assert proc.stdout == b"line4\nline5\n"
    # a duration: nothing of the last millisecond, everything of the last hour
    assert daemon.cli("logs", "--since", "1ms", five).stdout == b""
    assert daemon.cli("logs", "--since", "1h", five).stdout.count(b"\n") == 5
    # unix seconds work, too
    assert daemon.cli("logs", "--since", "0", five).stdout.count(b"\n") == 5
    proc = daemon.cli("logs", "--since", "yesterday-ish", five)
    assert proc.returncode != 0


def test_follow_streams_until_exit(daemon):
    daemon.out("run", "-d", "--name", "logsf", "busybox", "sh", "-c",
               "echo first; sleep 1; echo second; sleep 0.5; echo third")
    try:
        proc = subprocess.Popen([*_tool("berth"), "-H", daemon.host, "logs", "-f", "logsf"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=daemon.env)
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"first\n"
        started = time.monotonic()
        assert proc.stdout.readline() == b"second\n"  # arrives while the container runs
        assert time.monotonic() - started > 0.3
        out, _ = proc.communicate(timeout=15)  # and -f ends when the container does
        assert out == b"third\n"
        assert proc.returncode == 0
    finally:
        daemon.cli("rm", "-f", "logsf")


def test_follow_with_tail(daemon):
    daemon.out("run", "-d", "--name", "logsft", "busybox", "sh", "-c",
               "echo a; echo b; echo c; sleep 1; echo d")
    try:
        assert wait_for(lambda: "c" in daemon.out("logs", "logsft"))
        proc = daemon.cli("logs", "-f", "--tail", "1", "logsft", timeout=20)
        assert proc.stdout == b"c\nd\n"
    finally:
        daemon.cli("rm", "-f", "logsft")


def test_logs_of_tty_container_are_raw(daemon):
    daemon.out("run", "-t", "--name", "logstty", "busybox", "sh", "-c", "echo out; echo err >&2")
    try:
        proc = daemon.cli("logs", "logstty")
        # one terminal: both streams arrive on stdout, with the pty's \r\n
        assert proc.stdout == b"out\r\nerr\r\n"
        assert proc.stderr == b""
    finally:
        daemon.cli("rm", "-f", "logstty")


def test_logs_of_missing_container(daemon):
    proc = daemon.cli("logs", "no-such-ctr")
    assert proc.returncode == 1
    assert proc.stderr == b"Error response from daemon: No such container: no-such-ctr\n"


def test_max_size_rotates_and_logs_reads_what_is_kept(daemon):
    # docker's json-file driver: --log-opt max-size/max-file keep at most max-file files
    daemon.out("run", "--name", "logsrot", "--log-opt", "max-size=1k", "--log-opt", "max-file=3",
               "busybox", "sh", "-c", "for i in $(seq 1 200); do echo line-$i; done")
    try:
        log_path = daemon.out("inspect", "-f", "{{.LogPath}}", "logsrot").strip()
        names = sorted(p.name for p in Path(log_path).parent.glob("*-json.log*"))
        assert [n.rsplit("json.log", 1)[1] for n in names] == ["", ".1", ".2"]
        lines = daemon.out("logs", "logsrot").splitlines()
        assert 20 < len(lines) < 200 and lines[-1] == "line-200"
        assert lines == [f"line-{i}" for i in range(201 - len(lines), 201)]
    finally:
        daemon.cli("rm", "-f", "logsrot")


def test_follow_goes_on_across_a_rotation(daemon):
    daemon.out("run", "-d", "--name", "logsrotf", "--log-opt", "max-size=300",
               "--log-opt", "max-file=2", "busybox", "sh", "-c",
               "for i in $(seq 1 40); do echo line-$i; sleep 0.05; done")
    try:
        proc = daemon.cli("logs", "-f", "logsrotf", timeout=30)
        lines = proc.stdout.decode().splitlines()
        assert lines[-1] == "line-40"
        assert lines == [f"line-{i}" for i in range(41 - len(lines), 41)]  # no gap, no repeat
    finally:
        daemon.cli("rm", "-f", "logsrotf")


@pytest.mark.parametrize(("args", "message"), [
    (("--log-driver", "bogus"), b'error looking up logging plugin bogus: plugin "bogus" not found'),
    (("--log-opt", "foo=bar"), b"unknown log opt 'foo' for json-file log driver"),
    (("--log-opt", "max-size=abc"), b"failed to initialize logging driver: invalid size: 'abc'"),
])
def test_log_options_are_checked_as_dockerd_does(daemon, args, message):
    proc = daemon.cli("run", "--rm", *args, "busybox", "true")
    assert proc.returncode == 125
    assert message in proc.stderr
