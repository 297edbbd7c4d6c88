"""berth-runtime driven like runc: what the container sees, lifecycle, errors, limits, tty."""

from __future__ import annotations

import array
import json
import os
import signal
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conftest import Bundle, Runtime  # type: ignore[import-not-found]

PROBE = r"""#!/bin/sh
echo "pid=$$"
echo "hostname=$(hostname)"
echo "uid=$(id -u) gid=$(id -g) groups=$(id -G)"
echo "cwd=$(pwd)"
echo "root=$(awk '$5 == "/" {print $4}' /proc/self/mountinfo | tail -n1)"
echo "env_FOO=$FOO"
grep -E '^(Cap(Eff|Bnd|Prm)|SigIgn|SigBlk)' /proc/self/status | tr -d '\t' | sed 's/:/=/'
if touch /sys/probe 2>/dev/null; then echo sys=rw; else echo sys=ro; fi
echo "masked_file=$(wc -c </proc/timer_list)"
echo "masked_dir=$(ls -A /sys/firmware | wc -l)"
if [ -c /dev/null ] && [ -c /dev/zero ] && [ -c /dev/urandom ] && [ -L /dev/ptmx ]; then
  echo devs=ok; fi
if echo 1 > /proc/sys/kernel/ns_last_pid 2>/dev/null; then echo procsys=rw; else
  echo procsys=ro; fi
"""


def _probe(bundle: Bundle) -> None:
    path = bundle.rootfs / "probe"
    path.write_text(PROBE)
    path.chmod(0o755)


def _parse(output: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


def _caps_mask(names: list[str]) -> str:
    from berth.runtime.init.capabilities import parse_capabilities

    return f"{parse_capabilities(names, 'test'):016x}"


def test_run_shows_an_isolated_container(bundle: Bundle, runtime: Runtime,
                                         container_id: str) -> None:
    _probe(bundle)

    def change(c: dict[str, Any]) -> None:
        c["process"]["args"] = ["/probe"]
        c["process"]["env"].append("FOO=bar baz")
        c["process"]["cwd"] = "/made/by/runtime"
        c["process"]["user"] = {"uid": 65534, "gid": 65534, "additionalGids": [5, 7]}
        c["hostname"] = "probe-host"

    bundle.edit(change)
    caps = bundle.config()["process"]["capabilities"]
    proc = runtime("run", "--bundle", str(bundle.path), container_id)
    assert proc.returncode == 0, proc.stderr
    seen = _parse(proc.stdout)
    assert seen["pid"] == "1"
    assert seen["hostname"] == "probe-host"
    assert seen["uid"] == "65534 gid=65534 groups=65534 5 7"
    assert seen["cwd"] == "/made/by/runtime"
    assert seen["root"].endswith("/bundle/rootfs")  # the bind-mounted rootfs became "/"
    assert seen["env_FOO"] == "bar baz"
    assert seen["CapBnd"] == _caps_mask(caps["bounding"])
    # A non-root user keeps only ambient capabilities across exec (none are inheritable here).
    assert seen["CapEff"] == "0" * 16
    assert seen["SigIgn"] == seen["SigBlk"] == "0" * 16  # nothing of Python's leaks through exec
    assert seen["sys"] == "ro"
    assert seen["masked_file"] == "0"  # /dev/null over it
    assert seen["masked_dir"] == "0"  # an empty tmpfs over it
    assert seen["devs"] == "ok"
    assert seen["procsys"] == "ro"
    assert (bundle.rootfs / "made" / "by" / "runtime").is_dir()


def test_root_gets_the_spec_capabilities(bundle: Bundle, runtime: Runtime,
                                         container_id: str) -> None:
    _probe(bundle)
    names = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_SETUID"]

    def change(c: dict[str, Any]) -> None:
        c["process"]["args"] = ["/probe"]
        for key in ("bounding", "effective", "permitted"):
            c["process"]["capabilities"][key] = names
        c["process"]["capabilities"]["ambient"] = []

    bundle.edit(change)
    seen = _parse(runtime.ok("run", "--bundle", str(bundle.path), container_id))
    assert seen["CapEff"] == seen["CapBnd"] == seen["CapPrm"] == _caps_mask(names)


def test_exit_status_of_run(bundle: Bundle, runtime: Runtime, container_id: str) -> None:
    bundle.set_args("sh", "-c", "exit 3")
    assert runtime("run", "--bundle", str(bundle.path), container_id).returncode == 3


def test_run_killed_by_signal_reports_128_plus_signal(bundle: Bundle, runtime: Runtime,
                                                      container_id: str) -> None:
    bundle.set_args("sleep", "60")
    proc = runtime.popen("run", "--bundle", str(bundle.path), container_id)
    _wait_status(runtime, container_id, "running")
    runtime.ok("kill", container_id, "KILL")
    proc.communicate(timeout=10)
    assert proc.returncode == 128 + signal.SIGKILL


def test_lifecycle_create_start_state_kill_delete(bundle: Bundle, runtime: Runtime,
                                                  container_id: str, subreaper: None,
                                                  tmp_path: Path) -> None:
    bundle.set_args("sh", "-c", "trap 'exit 3' TERM; while :; do sleep 0.05; done")
    pid_file = tmp_path / "pid"
    runtime.ok("create", "--bundle", str(bundle.path), "--pid-file", str(pid_file), container_id)
    state = runtime.state(container_id)
    assert state["status"] == "created"
    assert state["id"] == container_id and state["bundle"] == str(bundle.path)
    assert state["ociVersion"] and "annotations" in state
    assert int(pid_file.read_text()) == state["pid"]
    # Blocked before exec: the init is still our Python, not sh.
    assert Path(f"/proc/{state['pid']}/comm").read_text().strip() != "sh"

    runtime.ok("start", container_id)
    assert runtime.state(container_id)["status"] == "running"
    assert state["pid"] in json.loads(runtime.ok("ps", "--format", "json", container_id))
    runtime.ok("kill", container_id)  # TERM by default
    _, status = os.waitpid(state["pid"], 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 3
    assert runtime.state(container_id)["status"] == "stopped"
    runtime.ok("delete", container_id)
    proc = runtime("state", container_id)
    assert proc.returncode == 1 and "container does not exist" in proc.stderr


def test_killed_container_is_seen_as_signalled(bundle: Bundle, runtime: Runtime,
                                               container_id: str, subreaper: None) -> None:
    bundle.set_args("sleep", "60")
    runtime.ok("run", "--detach", "--bundle", str(bundle.path), container_id)
    pid = runtime.state(container_id)["pid"]
    runtime.ok("kill", container_id, "9")
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    runtime.ok("delete", container_id)


def test_delete_of_running_needs_force(bundle: Bundle, runtime: Runtime,
                                       container_id: str, subreaper: None) -> None:
    bundle.set_args("sleep", "60")
    runtime.ok("run", "-d", "--bundle", str(bundle.path), container_id)
    proc = runtime("delete", container_id)
    assert proc.returncode == 1
    assert f"cannot delete container {container_id} that is not stopped: running" in proc.stderr
    runtime.ok("delete", "--force", container_id)


def test_missing_command_is_reported_like_runc(bundle: Bundle, runtime: Runtime,
                                               container_id: str, tmp_path: Path) -> None:
    bundle.set_args("nosuchcmd")
    log = tmp_path / "log.json"
    proc = runtime("--log", str(log), "--log-format", "json", "create", "--bundle",
                   str(bundle.path), container_id)
    assert proc.returncode == 1
    assert 'exec: \\"nosuchcmd\\": executable file not found in $PATH' in proc.stderr
    assert "executable file not found" in json.loads(log.read_text())["msg"]
    assert runtime("state", container_id).returncode == 1


def test_not_executable_is_permission_denied(bundle: Bundle, runtime: Runtime,
                                             container_id: str) -> None:
    bundle.set_args("/etc/passwd")
    proc = runtime("run", "--bundle", str(bundle.path), container_id)
    assert proc.returncode == 1
    assert 'exec: \\"/etc/passwd\\": permission denied' in proc.stderr


def test_pause_and_resume_freeze_the_container(bundle: Bundle, runtime: Runtime,
                                               container_id: str, subreaper: None,
                                               tmp_path: Path) -> None:
    bundle.set_args("sh", "-c", "while :; do date +%s%N > /tmp/tick; sleep 0.01; done")
    runtime.ok("run", "-d", "--bundle", str(bundle.path), container_id)
    tick = bundle.rootfs / "tmp" / "tick"
    _wait_for(lambda: tick.exists())
    runtime.ok("pause", container_id)
    assert runtime.state(container_id)["status"] == "paused"
    before = tick.read_text()
    time.sleep(0.1)
    assert tick.read_text() == before
    runtime.ok("resume", container_id)
    assert runtime.state(container_id)["status"] == "running"
    _wait_for(lambda: tick.read_text() != before)
    runtime.ok("delete", "-f", container_id)


def test_memory_limit_ends_in_an_oom_kill(bundle: Bundle, runtime: Runtime,
                                          container_id: str, subreaper: None) -> None:
    from berth.runtime.init.state import load_state

    limit = 16 * 1024 * 1024

    def change(c: dict[str, Any]) -> None:
        c["process"]["args"] = ["sh", "-c", "head -c 200m /dev/zero | tail > /dev/null"]
        c["linux"]["resources"]["memory"] = {"limit": limit, "swap": limit}
        c["linux"]["resources"]["pids"] = {"limit": 50}

    bundle.edit(change)
    runtime.ok("run", "-d", "--bundle", str(bundle.path), container_id)
    state = load_state(str(runtime.root), container_id)
    cgroup = state.cgroup()
    assert cgroup.memory_limit() == limit
    os.waitpid(state.pid, 0)
    assert cgroup.oom_kill_count() >= 1
    runtime.ok("delete", container_id)


def test_terminal_goes_through_the_console_socket(bundle: Bundle, runtime: Runtime,
                                                  container_id: str, subreaper: None,
                                                  tmp_path: Path) -> None:
    bundle.set_args("sh", "-c", "tty; stty size; echo done", terminal=True)
    sock_path = str(tmp_path / "console.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(sock_path)
    listener.listen(1)
    proc = runtime.popen("create", "--bundle", str(bundle.path), "--console-socket", sock_path,
                         container_id)
    conn, _ = listener.accept()
    fds = array.array("i")
    msg, ancdata, _, _ = conn.recvmsg(1024, socket.CMSG_SPACE(fds.itemsize))
    fds.frombytes(ancdata[0][2][: fds.itemsize])
    master = fds[0]
    conn.close()
    listener.close()
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    pid = runtime.state(container_id)["pid"]
    runtime.ok("start", container_id)
    output = b""
    while b"done" not in output:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    os.close(master)
    os.waitpid(pid, 0)
    runtime.ok("delete", container_id)
    assert msg.startswith(b"/dev/pts/")
    assert b"/dev/pts/0" in output
    assert b"done" in output


def _wait_status(runtime: Runtime, container_id: str, status: str) -> None:
    def ready() -> bool:
        proc = runtime("state", container_id)
        return proc.returncode == 0 and bool(json.loads(proc.stdout)["status"] == status)

    _wait_for(ready)


def _wait_for(check: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_mounts_limits_and_a_read_only_root(bundle: Bundle, runtime: Runtime,
                                            container_id: str, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "hello").write_text("from the host")
    outside = tmp_path / "outside"
    outside.mkdir()
    # A hostile image: a symlink that points out of the rootfs, used as a mount destination.
    os.symlink(str(outside), bundle.rootfs / "escape")

    def change(c: dict[str, Any]) -> None:
        c["root"]["readonly"] = True
        c["mounts"].append({"destination": "/data", "type": "bind", "source": str(shared),
                            "options": ["rbind", "ro"]})
        c["mounts"].append({"destination": "/escape/scratch", "type": "tmpfs",
                            "source": "tmpfs", "options": ["size=1m"]})
        c["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 123, "hard": 456}]
        c["linux"]["devices"] = [{"path": "/dev/mydev", "type": "c", "major": 1, "minor": 3,
                                  "fileMode": 0o640, "uid": 0, "gid": 5}]
        c["process"]["oomScoreAdj"] = 500
        c["linux"]["sysctl"] = {"net.ipv4.ip_unprivileged_port_start": "80"}
        c["process"]["args"] = ["sh", "-c", " ; ".join([
            "cat /data/hello; echo",
            "touch /data/x 2>/dev/null && echo data=rw || echo data=ro",
            "touch /newfile 2>/dev/null && echo root=rw || echo root=ro",
            "touch /escape/scratch/x && echo scratch=rw",
            "echo nofile=$(ulimit -n) hard=$(ulimit -Hn)",
            "echo oom=$(cat /proc/self/oom_score_adj)",
            "echo port=$(cat /proc/sys/net/ipv4/ip_unprivileged_port_start)",
            "stat -c 'dev=%A %t:%T %g' /dev/mydev",
            "grep NoNewPrivs /proc/self/status | tr -d '\\t'",
        ])]

    bundle.edit(change)
    out = runtime.ok("run", "--bundle", str(bundle.path), container_id)
    assert "from the host" in out
    for expected in ("data=ro", "root=ro", "scratch=rw", "nofile=123 hard=456", "oom=500",
                     "port=80", "dev=crw-r----- 1:3 5", "NoNewPrivs:1"):
        assert expected in out, out
    assert list(outside.iterdir()) == []  # the mount point was made inside the rootfs
    assert (bundle.rootfs / "escape").is_symlink()


def test_invalid_config_is_rejected_before_anything_happens(bundle: Bundle, runtime: Runtime,
                                                            container_id: str) -> None:
    def change(c: dict[str, Any]) -> None:
        c["process"]["capabilities"]["bounding"].append("CAP_NOT_A_THING")

    bundle.edit(change)
    proc = runtime("create", "--bundle", str(bundle.path), container_id)
    assert proc.returncode == 1
    assert "unknown capability 'CAP_NOT_A_THING'" in proc.stderr
    assert runtime("state", container_id).returncode == 1


def test_namespace_path_is_joined(bundle: Bundle, runtime: Runtime, container_id: str) -> None:
    """A ``path`` joins an existing namespace (how the engine hands over a prepared network)."""
    host_net = os.readlink("/proc/self/ns/net")
    host_pid = os.readlink("/proc/self/ns/pid")

    def change(c: dict[str, Any]) -> None:
        for ns in c["linux"]["namespaces"]:
            if ns["type"] == "network":
                ns["path"] = f"/proc/{os.getpid()}/ns/net"
        c["process"]["args"] = ["sh", "-c",
                                "readlink /proc/self/ns/net; readlink /proc/self/ns/pid"]

    bundle.edit(change)
    net, pid = runtime.ok("run", "--bundle", str(bundle.path), container_id).split()
    assert net == host_net
    assert pid != host_pid


def test_exec_joins_the_running_container(bundle: Bundle, runtime: Runtime, container_id: str,
                                          subreaper: None, tmp_path: Path) -> None:
    def change(c: dict[str, Any]) -> None:
        c["process"]["args"] = ["sleep", "60"]
        c["hostname"] = "exec-host"

    bundle.edit(change)
    runtime.ok("run", "-d", "--bundle", str(bundle.path), container_id)
    init_pid = runtime.state(container_id)["pid"]
    out = runtime.ok("exec", container_id, "sh", "-c",
                     "hostname; echo $$; readlink /proc/1/exe; id -u; pwd")
    hostname, pid, exe, uid, cwd = out.split()
    assert hostname == "exec-host"
    assert pid != "1" and exe == "/bin/busybox"  # PID 1 of the container is visible: same pid ns
    assert (uid, cwd) == ("0", "/")

    process = bundle.config()["process"]
    process["args"] = ["sh", "-c", "exit 7"]
    process["user"] = {"uid": 65534, "gid": 65534}
    (tmp_path / "process.json").write_text(json.dumps(process))
    proc = runtime("exec", "--process", str(tmp_path / "process.json"), container_id)
    assert proc.returncode == 7

    process["args"] = ["nosuchcmd"]
    (tmp_path / "process.json").write_text(json.dumps(process))
    proc = runtime("exec", "--process", str(tmp_path / "process.json"), "--detach",
                   container_id)
    assert proc.returncode == 1 and "executable file not found in $PATH" in proc.stderr

    pid_file = tmp_path / "exec.pid"
    process["args"] = ["sleep", "60"]
    (tmp_path / "process.json").write_text(json.dumps(process))
    runtime.ok("exec", "--process", str(tmp_path / "process.json"), "--detach",
               "--pid-file", str(pid_file), container_id)
    exec_pid = int(pid_file.read_text())
    assert exec_pid in json.loads(runtime.ok("ps", "--format", "json", container_id))
    assert exec_pid != init_pid
    runtime.ok("delete", "--force", container_id)
    os.waitpid(exec_pid, 0)  # killed with the container's pid namespace
