"""`berth run` end to end: real containers from the busybox test image, through the CLI."""

from __future__ import annotations

import re
import subprocess
import time

import pytest
from tests.conftest import _tool

pytestmark = pytest.mark.usefixtures("daemon")


def test_run_echo_prints_and_exits_zero(daemon):
    proc = daemon.cli("run", "--rm", "busybox", "echo", "hello")
    assert proc.stdout == b"hello\n", proc.stderr
    assert proc.returncode == 0


# Case 025: `docker run` exits with the container's code, 126 when the command cannot be
# invoked, 127 when it is not found, 125 when the engine itself failed; the error goes to stderr
# as "<cli>: Error response from daemon: ..." and ends pointing at `run --help`.
CASE_025 = [
    (["busybox:latest", "sh", "-c", "exit 3"], 3, ""),
    (["busybox:latest", "/etc/passwd"], 126,
     'unable to start container process: exec: "/etc/passwd": permission denied'),
    (["busybox:latest", "/etc"], 126,
     'unable to start container process: exec: "/etc": permission denied'),
    (["busybox:latest", "nosuchcmd"], 127,
     'unable to start container process: exec: "nosuchcmd": executable file not found in $PATH'),
    (["busybox:latest", "/no/such/path"], 127,
     'exec: "/no/such/path": stat /no/such/path: no such file or directory'),
    (["--bogus-flag", "busybox:latest", "true"], 125, "unknown flag: --bogus-flag"),
    (["--user", "nosuchuser", "busybox:latest", "true"], 125,
     "Error response from daemon: unable to find user nosuchuser: no matching entries in "
     "passwd file"),
]


@pytest.mark.parametrize(("args", "code", "message"), CASE_025,
                         ids=["exit-3", "plain-file", "directory", "not-on-path", "bad-path",
                              "bogus-flag", "unknown-user"])
def test_case_025_run_exit_codes(daemon, args, code, message):
    proc = daemon.cli("run", "--rm", *args)
    err = proc.stderr.decode()
    assert proc.returncode == code, err
    assert message in err
    if code >= 125:
        assert "run --help" in err.splitlines()[-1]
    if code in (126, 127):
        assert err.startswith("berth: Error response from daemon: ")


def test_case_025_unknown_image_without_registry_is_125(daemon):
    from tests.support.registry import free_port

    # a registry on loopback that does not answer: nothing leaves the machine
    ref = f"127.0.0.1:{free_port()}/casetest-025-no-such-image:v1"
    proc = daemon.cli("run", "--rm", ref, "true")
    assert proc.returncode == 125
    assert f"Unable to find image '{ref}' locally" in proc.stderr.decode()
    assert daemon.cli("inspect", ref).returncode == 1


def test_unknown_image_is_125(daemon):
    proc = daemon.cli("run", "--rm", "no-such-image-here:v1", "true")
    assert proc.returncode == 125
    assert b"Unable to find image 'no-such-image-here:v1' locally" in proc.stderr


def test_unknown_user_is_125(daemon):
    proc = daemon.cli("run", "--rm", "--user", "nosuchuser", "busybox", "true")
    assert proc.returncode == 125
    assert b"unable to find user nosuchuser: no matching entries in passwd file" in proc.stderr


def test_case_025_start_fails_with_1_and_leaves_created_127(daemon):
    """Case 025: only `run` maps to 126/127; `start` fails with 1 for the same error."""
    daemon.out("create", "--name", "nocmd1", "busybox", "nosuchcmd")
    proc = daemon.cli("start", "nocmd1")
    assert proc.returncode == 1
    assert b"executable file not found" in proc.stderr
    state = daemon.out("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "nocmd1")
    assert state.strip() == "created 127"
    daemon.out("rm", "nocmd1")


def test_pid1_ignores_unhandled_sigkill_to_itself(daemon):
    proc = daemon.cli("run", "--rm", "busybox", "sh", "-c", "kill -9 $$; echo after")
    assert proc.stdout == b"after\n"
    assert proc.returncode == 0


def test_isolation_seen_from_inside(daemon):
    cid = daemon.out("run", "-d", "busybox", "sleep", "60").strip()
    try:
        assert re.fullmatch(r"[0-9a-f]{64}", cid)
        out = daemon.out("run", "--rm", "busybox", "sh", "-c",
                         "echo pid=$$; hostname; grep ' / / ' /proc/self/mountinfo")
        lines = out.splitlines()
        assert lines[0] == "pid=1"
        assert re.fullmatch(r"[0-9a-f]{12}", lines[1])
        assert "overlay" in lines[2]
    finally:
        daemon.out("rm", "-f", cid)


def test_user_and_env(daemon):
    out = daemon.out("run", "--rm", "-u", "nobody", "busybox", "id")
    assert out.strip().startswith("uid=65534(nobody) gid=65534(nobody)")
    out = daemon.out("run", "--rm", "-e", "FOO=bar", "-e", "PATH=/bin", "busybox", "env")
    env = dict(line.split("=", 1) for line in out.splitlines())
    assert env["FOO"] == "bar"
    assert env["PATH"] == "/bin"
    assert re.fullmatch(r"[0-9a-f]{12}", env["HOSTNAME"])


def test_workdir_is_created(daemon):
    out = daemon.out("run", "--rm", "-w", "/made/here", "busybox", "pwd")
    assert out == "/made/here\n"


def test_stdin_is_piped_and_closed(daemon):
    out = daemon.out("run", "--rm", "-i", "busybox", "cat", input=b"line one\nline two\n")
    assert out == "line one\nline two\n"


def test_kill_then_wait_reports_137(daemon):
    daemon.out("run", "-d", "--name", "k1", "busybox", "sleep", "100")
    try:
        daemon.out("kill", "k1")
        assert daemon.out("wait", "k1").strip() == "137"
    finally:
        daemon.cli("rm", "-f", "k1")


def test_lifecycle_ps_pause_stop_logs(daemon):
    daemon.out("run", "-d", "--name", "s1", "busybox", "sleep", "1000")
    try:
        row = [ln for ln in daemon.out("ps").splitlines() if ln.endswith("s1")]
        assert row and " Up " in row[0]
        daemon.out("pause", "s1")
        row = [ln for ln in daemon.out("ps").splitlines() if ln.endswith("s1")]
        assert "(Paused)" in row[0]
        daemon.out("unpause", "s1")
        daemon.out("stop", "-t", "1", "s1")
        row = [ln for ln in daemon.out("ps", "-a").splitlines() if ln.endswith("s1")]
        assert "Exited (143)" in row[0] or "Exited (137)" in row[0]
    finally:
        daemon.cli("rm", "-f", "s1")


def test_logs_of_detached_container_have_both_streams(daemon):
    daemon.out("run", "-d", "--name", "l1", "busybox", "sh", "-c", "echo a; echo b >&2")
    try:
        daemon.out("wait", "l1")
        proc = daemon.cli("logs", "l1")
        assert proc.stdout == b"a\n"
        assert proc.stderr == b"b\n"
    finally:
        daemon.cli("rm", "-f", "l1")


def test_name_conflict_and_invalid_name(daemon):
    daemon.out("create", "--name", "dup1", "busybox", "true")
    try:
        proc = daemon.cli("run", "--name", "dup1", "busybox", "true")
        assert proc.returncode == 125
        assert b'The container name "/dup1" is already in use' in proc.stderr
    finally:
        daemon.out("rm", "dup1")
    proc = daemon.cli("run", "--name", "x", "busybox", "true")
    assert proc.returncode == 125
    assert b"Invalid container name (x)" in proc.stderr


def test_rm_refuses_running_container(daemon):
    daemon.out("run", "-d", "--name", "r1", "busybox", "sleep", "100")
    try:
        proc = daemon.cli("rm", "r1")
        assert proc.returncode == 1
        assert b"You cannot remove a running container" in proc.stderr
    finally:
        daemon.out("rm", "-f", "r1")
    assert daemon.cli("inspect", "r1").returncode == 1


def test_oom_killed_with_memory_limit(daemon):
    proc = daemon.cli("run", "--name", "oom1", "--memory", "32m", "--memory-swap", "32m",
                      "busybox", "sh", "-c", "x=$(head -c 100000000 /dev/zero | tr '\\0' a)")
    try:
        assert proc.returncode == 137, proc.stderr
        state = daemon.out("inspect", "-f", "{{.State.OOMKilled}} {{.State.ExitCode}}", "oom1")
    finally:
        daemon.cli("rm", "-f", "oom1")
    assert state.strip() == "true 137"


def test_container_survives_daemon_restart(fresh_daemon, test_images):
    d = fresh_daemon
    d.out("load", "-i", str(test_images.busybox_docker_tar))
    d.out("run", "-d", "--name", "sv1", "busybox", "sh", "-c", "sleep 8; exit 7")
    d.restart()
    assert "Up" in d.out("ps", "--filter", "name=sv1", "--format", "{{.Status}}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = d.out("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "sv1").strip()
        if status.startswith("exited"):
            break
        time.sleep(0.2)
    assert status == "exited 7"


def test_the_primary_group_is_a_supplementary_group_as_in_docker(daemon):
    """dockerd 20.10.18+ (CVE-2022-36109) lists the primary gid in the process's groups; the
    expected lines are real docker 20.10.24's output for the same busybox image."""
    assert daemon.out("run", "--rm", "busybox", "id") == "uid=0(root) gid=0(root) groups=0(root)\n"
    assert daemon.out("run", "--rm", "--user", "1000:1000", "busybox", "id") == \
        "uid=1000 gid=1000 groups=1000\n"
    assert daemon.out("run", "--rm", "--group-add", "5", "busybox", "id") == \
        "uid=0(root) gid=0(root) groups=0(root),5\n"
    cid = daemon.out("run", "-d", "busybox", "sleep", "30").strip()
    try:
        assert daemon.out("exec", "--user", "nobody", cid, "id") == \
            "uid=65534(nobody) gid=65534(nobody) groups=65534(nobody)\n"
    finally:
        daemon.cli("rm", "-f", cid)


def test_detach_keys_only_apply_with_a_tty(daemon):
    """Without -t, stdin is passed through untouched (dockerd copies it plainly; only a TTY's
    input is scanned for ctrl-p ctrl-q), so binary input with those bytes survives."""
    data = bytes(range(256)) * 64 + b"\x10\x11tail"
    proc = daemon.cli("run", "-i", "--rm", "busybox", "cat", input=data)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == data
    cid = daemon.out("run", "-d", "busybox", "sleep", "30").strip()
    try:
        proc = daemon.cli("exec", "-i", cid, "cat", input=data)
        assert proc.stdout == data
    finally:
        daemon.cli("rm", "-f", cid)


def test_a_client_that_goes_away_mid_stream_is_not_a_daemon_error(daemon):
    """logs -f, events and export cut short by the client: berthd logs no traceback."""
    start = daemon.log_path.stat().st_size
    cid = daemon.out("run", "-d", "busybox", "sh", "-c",
                     "while true; do echo tick; sleep 0.1; done").strip()
    try:
        for args in (["logs", "-f", cid], ["events"], ["stats", cid]):
            with subprocess.Popen([*_tool("berth"), "-H", daemon.host, *args],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  env=daemon.env) as proc:
                time.sleep(0.8)
                proc.kill()
        daemon.out("run", "--rm", "busybox", "true")  # an event for the dead events stream
        with subprocess.Popen([*_tool("berth"), "-H", daemon.host, "export", cid],
                              stdout=subprocess.PIPE, env=daemon.env) as export:
            assert export.stdout is not None
            export.stdout.read(4096)
            export.kill()
        time.sleep(1)
    finally:
        daemon.cli("rm", "-f", cid)
    with open(daemon.log_path, "rb") as log:
        log.seek(start)
        written = log.read().decode(errors="replace")
    assert "Traceback" not in written and "level=error" not in written, written[-3000:]
