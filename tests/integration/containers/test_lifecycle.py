"""Lifecycle verbs beyond `run`: stop and its signals, kill -s, restart, rename, top, prune,
wait conditions, --rm, and what a failed run leaves behind (nothing)."""

from __future__ import annotations

import os
import tarfile
import threading
import time

import pytest
from tests.conftest import mounts_under
from tests.integration.containers._probe import api, leftovers, shim_pids, wait_for

pytestmark = pytest.mark.usefixtures("daemon")

TRAP_LOOP = "trap '{action}' {sig}; while true; do sleep 0.1; done"


def _rm(daemon, *names):
    daemon.cli("rm", "-f", *names)


def _status(daemon, name, fmt="{{.State.Status}} {{.State.ExitCode}}"):
    return daemon.out("inspect", "-f", fmt, name).strip()


def _wait_logs(daemon, name, text, timeout=10.0):
    return wait_for(lambda: text in daemon.out("logs", name), timeout)


@pytest.fixture(scope="module")
def stopsignal_image(daemon, tmp_path_factory):
    """An image whose config says STOPSIGNAL SIGUSR1 (made with `import --change`)."""
    root = tmp_path_factory.mktemp("stopsig")
    tar_path = root / "rootfs.tar"
    with tarfile.open(tar_path, "w") as tar:
        tar.add("/bin/busybox", arcname="bin/busybox")
        for applet in ("sh", "sleep", "echo"):
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)
    daemon.out("import", "-c", "STOPSIGNAL SIGUSR1", "-c", 'CMD ["sh"]', str(tar_path),
               "stopsig:test")
    yield "stopsig:test"
    daemon.cli("rmi", "-f", "stopsig:test")


def test_stop_sends_the_images_stopsignal(daemon, stopsignal_image):
    daemon.out("run", "-d", "--name", "stop-img", stopsignal_image, "sh", "-c",
               TRAP_LOOP.format(action="echo got usr1; exit 5", sig="USR1"))
    try:
        assert _status(daemon, "stop-img", "{{.Config.StopSignal}}") == "SIGUSR1"
        assert _wait_logs(daemon, "stop-img", "") is not None
        time.sleep(0.3)  # let sh install its trap
        daemon.out("stop", "stop-img")
        assert _status(daemon, "stop-img") == "exited 5"
        assert daemon.out("logs", "stop-img") == "got usr1\n"
    finally:
        _rm(daemon, "stop-img")


def test_stop_signal_flag_then_sigkill_after_timeout(daemon):
    # the trap does not exit: stop must fall back to SIGKILL after -t seconds
    daemon.out("run", "-d", "--name", "stop-flag", "--stop-signal", "USR2", "busybox", "sh",
               "-c", TRAP_LOOP.format(action="echo got usr2", sig="USR2"))
    try:
        time.sleep(0.3)
        started = time.monotonic()
        assert daemon.out("stop", "-t", "1", "stop-flag").strip() == "stop-flag"
        took = time.monotonic() - started
        assert 0.9 < took < 5, took
        assert _status(daemon, "stop-flag") == "exited 137"
        assert daemon.out("logs", "stop-flag") == "got usr2\n"
    finally:
        _rm(daemon, "stop-flag")


def test_stop_timeout_flag_is_the_default_for_stop(daemon):
    daemon.out("run", "-d", "--name", "stop-to", "--stop-timeout", "1", "busybox", "sh", "-c",
               TRAP_LOOP.format(action="echo term", sig="TERM"))
    try:
        assert _status(daemon, "stop-to", "{{.Config.StopTimeout}}") == "1"
        time.sleep(0.3)
        started = time.monotonic()
        daemon.out("stop", "stop-to")  # no -t: the container's own 1 s, not Docker's 10 s
        took = time.monotonic() - started
        assert 0.9 < took < 5, took
        assert _status(daemon, "stop-to") == "exited 137"
        assert daemon.out("logs", "stop-to") == "term\n"
    finally:
        _rm(daemon, "stop-to")


def test_stop_without_trap_ends_with_sigterm_at_once(daemon):
    # sleep as PID 1 has no handler, so SIGTERM is ignored: Docker waits, then SIGKILLs (137);
    # sh -c 'sleep & wait' with a TERM trap exits on TERM right away (143 style via exit)
    daemon.out("run", "-d", "--name", "stop-fast", "busybox", "sh", "-c",
               "trap 'exit 143' TERM; sleep 100 & wait")
    try:
        time.sleep(0.3)
        started = time.monotonic()
        daemon.out("stop", "-t", "10", "stop-fast")
        assert time.monotonic() - started < 5
        assert _status(daemon, "stop-fast") == "exited 143"
        row = daemon.out("ps", "-a", "--filter", "name=stop-fast", "--format", "{{.Status}}")
        assert row.startswith("Exited (143) ")
    finally:
        _rm(daemon, "stop-fast")


def test_kill_with_signal_reaches_pid1(daemon):
    daemon.out("run", "-d", "--name", "kill-usr1", "busybox", "sh", "-c",
               TRAP_LOOP.format(action="echo usr1 reached", sig="USR1"))
    try:
        time.sleep(0.3)
        assert daemon.out("kill", "-s", "USR1", "kill-usr1").strip() == "kill-usr1"
        assert _wait_logs(daemon, "kill-usr1", "usr1 reached")
        assert _status(daemon, "kill-usr1", "{{.State.Status}}") == "running"
        daemon.out("kill", "-s", "SIGUSR1", "kill-usr1")  # the SIG prefix is accepted too
        assert wait_for(lambda: daemon.out("logs", "kill-usr1").count("usr1 reached") == 2)
        proc = daemon.cli("kill", "-s", "NOSUCHSIG", "kill-usr1")
        assert proc.returncode == 1
        assert b"Invalid signal: NOSUCHSIG" in proc.stderr
    finally:
        _rm(daemon, "kill-usr1")


def test_kill_of_stopped_container_is_an_error(daemon):
    daemon.out("create", "--name", "kill-created", "busybox", "true")
    try:
        proc = daemon.cli("kill", "kill-created")
        assert proc.returncode == 1
        assert b"is not running" in proc.stderr
    finally:
        _rm(daemon, "kill-created")


def test_restart_runs_the_process_again(daemon):
    daemon.out("run", "-d", "--name", "rs1", "busybox", "sh", "-c",
               "echo started; trap 'exit 0' TERM; sleep 100 & wait")
    try:
        assert _wait_logs(daemon, "rs1", "started")
        first_pid = _status(daemon, "rs1", "{{.State.Pid}}")
        first_start = _status(daemon, "rs1", "{{.State.StartedAt}}")
        time.sleep(0.3)
        assert daemon.out("restart", "-t", "2", "rs1").strip() == "rs1"
        assert _status(daemon, "rs1", "{{.State.Status}}") == "running"
        assert _status(daemon, "rs1", "{{.State.Pid}}") != first_pid
        assert _status(daemon, "rs1", "{{.State.StartedAt}}") != first_start
        assert wait_for(lambda: daemon.out("logs", "rs1") == "started\nstarted\n")
        # restart of an exited container starts it
        daemon.out("kill", "rs1")
        daemon.out("wait", "rs1")
        daemon.out("restart", "rs1")
        assert _status(daemon, "rs1", "{{.State.Status}}") == "running"
    finally:
        _rm(daemon, "rs1")


def test_rename(daemon):
    cid = daemon.out("create", "--name", "ren-old", "busybox", "true").strip()
    daemon.out("create", "--name", "ren-taken", "busybox", "true")
    try:
        assert daemon.out("rename", "ren-old", "ren-new") == ""
        assert _status(daemon, cid, "{{.Name}}") == "/ren-new"
        assert daemon.cli("inspect", "ren-old").returncode == 1
        proc = daemon.cli("rename", "ren-new", "ren-taken")
        assert proc.returncode == 1
        assert b'The container name "/ren-taken" is already in use' in proc.stderr
        proc = daemon.cli("rename", "ren-new", "x")
        assert proc.returncode == 1
        assert b"Invalid container name (x)" in proc.stderr
        proc = daemon.cli("rename", "no-such-ctr", "whatever")
        assert proc.returncode == 1
        assert b"No such container: no-such-ctr" in proc.stderr
    finally:
        _rm(daemon, cid, "ren-taken")


def test_top_lists_the_containers_processes(daemon):
    daemon.out("run", "-d", "--name", "top1", "busybox", "sh", "-c",
               "sleep 101 & sleep 102 & wait")
    try:
        time.sleep(0.3)
        lines = daemon.out("top", "top1").splitlines()
        assert lines[0].split()[:3] == ["UID", "PID", "PPID"]
        cmds = [line.split(None, 7)[-1] for line in lines[1:]]
        assert any(c.endswith("sleep 101") for c in cmds), lines
        assert any(c.endswith("sleep 102") for c in cmds), lines
        assert len(lines) == 4  # sh, and its two sleeps: nothing of the host
        pid_line = daemon.out("top", "top1", "-o", "pid,comm").splitlines()
        assert pid_line[0].split() == ["PID", "COMMAND"]
        daemon.out("kill", "top1")
        daemon.out("wait", "top1")
        proc = daemon.cli("top", "top1")
        assert proc.returncode == 1
        assert b"is not running" in proc.stderr
    finally:
        _rm(daemon, "top1")


def test_container_prune_removes_only_stopped(daemon):
    daemon.out("run", "-d", "--name", "pr-run", "busybox", "sleep", "100")
    exited = daemon.out("run", "-d", "--name", "pr-exit", "busybox", "true").strip()
    created = daemon.out("create", "--name", "pr-created", "busybox", "true").strip()
    try:
        daemon.out("wait", "pr-exit")
        out = daemon.out("container", "prune", "-f")
        lines = out.splitlines()
        assert lines[0] == "Deleted Containers:"
        assert exited in lines and created in lines
        assert lines[-1].startswith("Total reclaimed space: ")
        assert _status(daemon, "pr-run", "{{.State.Status}}") == "running"
        for cid in (exited, created):
            assert daemon.cli("inspect", cid).returncode == 1
            assert leftovers(daemon, cid).empty
        # nothing to prune: no list, just the total
        assert daemon.out("container", "prune", "-f").startswith("Total reclaimed space:")
    finally:
        _rm(daemon, "pr-run", "pr-exit", "pr-created")


def test_wait_conditions_over_the_api(daemon):
    cid = daemon.out("create", "--name", "wc1", "busybox", "sh", "-c", "exit 6").strip()
    try:
        # not-running on a created container answers at once (Docker: code 0)
        status, body = api(daemon, "POST", f"/containers/{cid}/wait?condition=not-running")
        assert (status, body["StatusCode"]) == (200, 0)
        status, body = api(daemon, "POST", f"/containers/{cid}/wait?condition=bogus")
        assert status == 400
        # next-exit waits for the run that follows
        results: dict[str, object] = {}

        def waiter(cond):
            results[cond] = api(daemon, "POST", f"/containers/{cid}/wait?condition={cond}")

        threads = [threading.Thread(target=waiter, args=(c,)) for c in ("next-exit", "removed")]
        for t in threads:
            t.start()
        time.sleep(0.3)
        daemon.out("start", cid)
        threads[0].join(15)
        assert results["next-exit"] == (200, {"Error": None, "StatusCode": 6})
        assert "removed" not in results  # exited is not removed
        daemon.out("rm", cid)
        threads[1].join(15)
        assert results["removed"][0] == 200
        assert results["removed"][1]["StatusCode"] == 6
        status, body = api(daemon, "POST", "/containers/no-such-ctr/wait")
        assert status == 404
        assert body["message"] == "No such container: no-such-ctr"
    finally:
        _rm(daemon, cid)


def test_wait_cli_prints_codes_of_several(daemon):
    a = daemon.out("run", "-d", "busybox", "sh", "-c", "exit 2").strip()
    b = daemon.out("run", "-d", "busybox", "sh", "-c", "sleep 0.5; exit 9").strip()
    try:
        assert daemon.out("wait", a, b).split() == ["2", "9"]
        proc = daemon.cli("wait", "no-such-ctr")
        assert proc.returncode == 1
        assert proc.stderr == b"Error response from daemon: No such container: no-such-ctr\n"
    finally:
        _rm(daemon, a, b)


def test_run_rm_leaves_nothing(daemon):
    before = set(os.listdir(daemon.data_root / "containers"))
    proc = daemon.cli("run", "--rm", "--name", "rm-gone", "busybox", "sh", "-c",
                      "echo out; exit 3")
    assert (proc.returncode, proc.stdout) == (3, b"out\n")
    assert daemon.cli("inspect", "rm-gone").returncode == 1
    new = set(os.listdir(daemon.data_root / "containers")) - before
    assert not new
    # a detached --rm container goes once it exits, as well
    cid = daemon.out("run", "-d", "--rm", "busybox", "true").strip()
    assert wait_for(lambda: daemon.cli("inspect", cid).returncode == 1)
    assert wait_for(lambda: leftovers(daemon, cid).empty), leftovers(daemon, cid)


@pytest.mark.parametrize("rm", [False, True], ids=["keep", "rm"])
def test_command_not_found_leaves_nothing_behind(daemon, rm):
    shims_before = shim_pids(daemon)
    dirs_before = set(os.listdir(daemon.data_root / "containers"))
    args = ["run", "--name", "nf-cmd"] + (["--rm"] if rm else []) + ["busybox", "nosuchcmd"]
    proc = daemon.cli(*args)
    try:
        assert proc.returncode == 127
        assert b'"nosuchcmd": executable file not found in $PATH' in proc.stderr
        new_dirs = set(os.listdir(daemon.data_root / "containers")) - dirs_before
        if rm:  # the container is gone entirely
            assert daemon.cli("inspect", "nf-cmd").returncode == 1
            assert not new_dirs
            assert not [m for m in mounts_under(daemon.data_root) if "/containers/" in m]
        else:  # kept in `created`, with its directory but nothing mounted or running
            cid = _status(daemon, "nf-cmd", "{{.Id}}")
            assert new_dirs == {cid}
            assert _status(daemon, "nf-cmd") == "created 127"
            assert leftovers(daemon, cid, keep_dir=True).empty, leftovers(daemon, cid, True)
        assert wait_for(lambda: shim_pids(daemon) <= shims_before), \
            shim_pids(daemon) - shims_before
    finally:
        _rm(daemon, "nf-cmd")
    if not rm:
        assert leftovers(daemon, cid).empty


@pytest.mark.parametrize(("args", "message"), [
    (["--name", "x"], b"Invalid container name (x), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"),
    (["--name", "bad/name"], b"Invalid container name (bad/name)"),
    (["--memory", "lots"], b"invalid argument \"lots\" for \"-m, --memory\" flag"),
    (["--runtime", "nosuchruntime"], b"Unknown runtime specified nosuchruntime"),
], ids=["short-name", "slash-name", "bad-memory", "bad-runtime"])
def test_bad_input_is_125_and_creates_nothing(daemon, args, message):
    before = set(os.listdir(daemon.data_root / "containers"))
    proc = daemon.cli("run", "--rm", *args, "busybox", "true")
    assert proc.returncode == 125
    assert message in proc.stderr, proc.stderr
    assert set(os.listdir(daemon.data_root / "containers")) == before


def test_unknown_image_and_duplicate_name_create_nothing(daemon):
    before = set(os.listdir(daemon.data_root / "containers"))
    proc = daemon.cli("run", "--name", "ghost1", "no-such-image-here:v1", "true")
    assert proc.returncode == 125
    assert daemon.cli("inspect", "ghost1").returncode == 1
    daemon.out("create", "--name", "dup-keep", "busybox", "true")
    try:
        mid = set(os.listdir(daemon.data_root / "containers"))
        proc = daemon.cli("run", "-d", "--name", "dup-keep", "busybox", "true")
        assert proc.returncode == 125
        assert b"Conflict. The container name \"/dup-keep\" is already in use" in proc.stderr
        assert set(os.listdir(daemon.data_root / "containers")) == mid
        assert len(mid - before) == 1
    finally:
        _rm(daemon, "dup-keep")


def test_failed_start_keeps_created_and_can_be_removed(daemon):
    cid = daemon.out("create", "--name", "fs1", "busybox", "/no/such/bin").strip()
    try:
        proc = daemon.cli("start", "fs1")
        assert proc.returncode == 1
        assert b"Error response from daemon:" in proc.stderr
        assert b"Error: failed to start containers: fs1" in proc.stderr
        assert _status(daemon, "fs1") == "created 127"
        assert "no such file or directory" in _status(daemon, "fs1", "{{.State.Error}}")
        assert leftovers(daemon, cid, keep_dir=True).empty
        row = daemon.out("ps", "-a", "--filter", "name=fs1", "--format", "{{.Status}}")
        assert row.strip() == "Created"
        assert daemon.cli("start", "fs1").returncode == 1  # again: same answer, no leak
        assert leftovers(daemon, cid, keep_dir=True).empty
    finally:
        _rm(daemon, "fs1")
    assert leftovers(daemon, cid).empty
