"""The real docker CLI drives berthd (``DOCKER_HOST=unix://<socket>``): the commands people type,
with the output and exit codes dockerd gives them (see shared/reference/docker-cli-traffic).

Build and commit through the docker CLI are covered elsewhere.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

DOCKER = Path("/usr/local/bin/docker")

pytestmark = [
    pytest.mark.compat,
    pytest.mark.skipif(not DOCKER.exists(),
                       reason="the docker CLI is not installed at /usr/local/bin/docker"),
]


class DockerCLI:
    def __init__(self, host: str, config_dir: str) -> None:
        self.env = dict(os.environ)
        self.env.update({"DOCKER_HOST": host, "DOCKER_CONFIG": config_dir,
                         "DOCKER_CLI_HINTS": "false", "DOCKER_BUILDKIT": "0"})
        self.env.pop("DOCKER_CONTEXT", None)
        self.names: list[str] = []

    def run(self, *args: str, input: bytes | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(DOCKER), *args], input=input, capture_output=True,
                              timeout=timeout, env=self.env)
        return subprocess.CompletedProcess(proc.args, proc.returncode,
                                           proc.stdout.decode(errors="replace"),
                                           proc.stderr.decode(errors="replace"))

    def ok(self, *args: str, input: bytes | None = None, timeout: float = 60) -> str:
        proc = self.run(*args, input=input, timeout=timeout)
        assert proc.returncode == 0, f"docker {' '.join(args)}: {proc.returncode}\n" \
            f"{proc.stdout}\n{proc.stderr}"
        return proc.stdout

    def name(self) -> str:
        """A container name of the test's own, removed at the end of the test."""
        name = f"dcli-{uuid.uuid4().hex[:10]}"
        self.names.append(name)
        return name


@pytest.fixture()
def docker(daemon) -> Iterator[DockerCLI]:  # type: ignore[no-untyped-def]
    with tempfile.TemporaryDirectory(prefix="berth-test-dockercfg-") as cfg:
        cli = DockerCLI(daemon.host, cfg)
        try:
            yield cli
        finally:
            if cli.names:
                cli.run("rm", "-f", *cli.names, timeout=120)


def run_in_pty(argv: list[str], env: dict[str, str], typed: bytes,
               timeout: float = 30) -> tuple[bytes, int]:
    """Run ``argv`` on a pseudo-terminal, type ``typed`` once a prompt shows; (output, exit)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: exec at once, nothing else
        os.execve(argv[0], argv, env)
    out = b""
    sent = False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                out += data
            if not sent and b"# " in out:
                os.write(fd, typed)
                sent = True
    finally:
        if time.monotonic() >= deadline:
            os.kill(pid, 9)
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return out, os.waitstatus_to_exitcode(status)


# -- system ------------------------------------------------------------------------------------


def test_version_and_info(docker: DockerCLI) -> None:
    assert docker.ok("version", "--format", "{{.Server.APIVersion}}").strip() == "1.41"
    info = json.loads(docker.ok("info", "--format", "{{json .}}"))
    assert info["OSType"] == "linux"
    assert isinstance(info["Containers"], int)


def test_system_df(docker: DockerCLI) -> None:
    name = docker.name()
    docker.ok("create", "--name", name, "busybox", "true")
    out = docker.ok("system", "df")
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["TYPE", "TOTAL", "ACTIVE"]
    assert any(line.startswith("Images") for line in lines)
    containers = next(line for line in lines if line.startswith("Containers"))
    assert int(containers.split()[1]) >= 1
    verbose = docker.ok("system", "df", "-v")
    assert name in verbose


# -- images ------------------------------------------------------------------------------------


def test_load_images_tag_rmi(docker: DockerCLI, test_images) -> None:  # type: ignore[no-untyped-def]
    out = docker.ok("load", "-i", str(test_images.layered_docker_tar))
    assert "Loaded image: layered:latest" in out
    tag = f"dcli/layered:{uuid.uuid4().hex[:8]}"
    try:
        docker.ok("tag", "layered:latest", tag)
        listed = docker.ok("images", "--format", "{{.Repository}}:{{.Tag}}")
        assert tag in listed.split()
        assert "busybox:latest" in listed.split()
        assert docker.ok("rmi", tag).strip() == f"Untagged: {tag}"
        assert tag not in docker.ok("images", "--format", "{{.Repository}}:{{.Tag}}").split()
    finally:
        docker.run("rmi", tag)
        docker.run("rmi", "layered:latest")


def test_image_errors(docker: DockerCLI) -> None:
    proc = docker.run("image", "inspect", "no-such-image:latest")
    assert proc.returncode == 1
    assert "Error response from daemon: no such image: no-such-image:latest: " \
        "No such image: no-such-image:latest" in proc.stderr


# -- run ---------------------------------------------------------------------------------------


def test_run_attached(docker: DockerCLI) -> None:
    assert docker.ok("run", "--rm", "busybox", "echo", "hi") == "hi\n"
    proc = docker.run("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "out\n", "err\n")


def test_run_env_and_name(docker: DockerCLI) -> None:
    name = docker.name()
    out = docker.ok("run", "--name", name, "-e", "GREETING=hello", "busybox",
                    "sh", "-c", "echo $GREETING; hostname")
    greeting, hostname = out.split()
    assert greeting == "hello"
    assert docker.ok("inspect", "-f", "{{.Config.Hostname}} {{.State.Status}}", name).split() \
        == [hostname, "exited"]
    assert docker.ok("ps", "-a", "--filter", f"name={name}", "--format", "{{.Names}}").strip() \
        == name


def test_run_rm_removes(docker: DockerCLI) -> None:
    name = docker.name()
    docker.ok("run", "--rm", "--name", name, "busybox", "true")
    proc = docker.run("inspect", name)
    assert proc.returncode == 1
    assert f"No such object: {name}" in proc.stderr


def test_run_stdin_piped(docker: DockerCLI) -> None:
    out = docker.ok("run", "--rm", "-i", "busybox", "sh", "-c", "cat; echo done",
                    input=b"line one\nline two\n")
    assert out == "line one\nline two\ndone\n"


def test_run_it_under_pty(docker: DockerCLI) -> None:
    out, code = run_in_pty([str(DOCKER), "run", "-it", "--rm", "busybox", "sh"], docker.env,
                           b"echo hi; exit 4\r")
    assert code == 4, out
    assert b"\r\nhi\r\n" in out


def test_name_conflict(docker: DockerCLI) -> None:
    name = docker.name()
    cid = docker.ok("create", "--name", name, "busybox", "true").strip()
    proc = docker.run("create", "--name", name, "busybox", "true")
    assert proc.returncode != 0
    assert f'Error response from daemon: Conflict. The container name "/{name}" is already in ' \
        f'use by container "{cid}". You have to remove (or rename) that container to be able ' \
        "to reuse that name." in proc.stderr


# -- a detached container's life -----------------------------------------------------------------


def test_detached_lifecycle(docker: DockerCLI) -> None:
    name = docker.name()
    cid = docker.ok("run", "-d", "--name", name, "busybox",
                    "sh", "-c", "echo started; exec sleep 300").strip()
    assert len(cid) == 64
    assert docker.ok("ps", "--format", "{{.ID}} {{.Names}}").split().count(name) == 1
    deadline = time.monotonic() + 10
    while "started" not in docker.ok("logs", name) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert docker.ok("logs", name) == "started\n"

    assert docker.ok("pause", name).strip() == name
    assert docker.ok("inspect", "-f", "{{.State.Status}}", name).strip() == "paused"
    proc = docker.run("exec", name, "true")
    assert proc.returncode != 0
    # dockerd names the container as the request did (checked against dockerd 20.10.24)
    assert f"Container {name} is paused, unpause the container before exec" in proc.stderr
    assert docker.ok("unpause", name).strip() == name
    assert docker.ok("inspect", "-f", "{{.State.Running}}", name).strip() == "true"

    assert docker.ok("stop", "-t", "1", name).strip() == name
    assert docker.ok("inspect", "-f", "{{.State.Status}}", name).strip() == "exited"
    assert docker.ok("stop", name).strip() == name  # 304: already stopped, not an error
    assert docker.ok("start", name).strip() == name
    assert docker.ok("start", name).strip() == name  # 304: already started
    assert docker.ok("restart", "-t", "1", name).strip() == name
    assert docker.ok("inspect", "-f", "{{.State.Running}}", name).strip() == "true"

    proc = docker.run("rm", name)
    assert proc.returncode == 1
    assert f"You cannot remove a running container {cid}" in proc.stderr
    assert docker.ok("kill", name).strip() == name
    assert docker.ok("wait", name).strip() == "137"
    proc = docker.run("kill", name)
    assert f"Container {cid} is not running" in proc.stderr
    assert docker.ok("start", name).strip() == name
    assert docker.ok("rm", "-f", name).strip() == name
    proc = docker.run("rm", name)
    assert proc.returncode == 1
    assert f"Error response from daemon: No such container: {name}" in proc.stderr


# -- exec --------------------------------------------------------------------------------------


@pytest.fixture()
def sleeper(docker: DockerCLI) -> str:
    name = docker.name()
    docker.ok("run", "-d", "--name", name, "-e", "A=b", "busybox", "sleep", "300")
    return name


def test_exec(docker: DockerCLI, sleeper: str) -> None:
    env = docker.ok("exec", sleeper, "env").splitlines()
    assert "A=b" in env and "HOME=/root" in env
    assert any(line.startswith("PATH=") for line in env)
    assert docker.ok("exec", "-e", "A=c", "-e", "B=d", sleeper, "sh", "-c", "echo $A $B") \
        == "c d\n"
    assert docker.ok("exec", "-u", "nobody", "-w", "/tmp", sleeper,
                     "sh", "-c", "id -u; pwd").split() == ["65534", "/tmp"]
    proc = docker.run("exec", sleeper, "sh", "-c", "echo out; echo err >&2; exit 5")
    assert (proc.returncode, proc.stdout, proc.stderr) == (5, "out\n", "err\n")
    assert docker.ok("exec", "-i", sleeper, "cat", input=b"line one\nline two\n") \
        == "line one\nline two\n"


def test_exec_detached_and_inspect(docker: DockerCLI, sleeper: str) -> None:
    docker.ok("exec", "-d", sleeper, "sh", "-c", "sleep 0.3; touch /tmp/marker")
    exec_ids = docker.ok("inspect", "-f", "{{json .ExecIDs}}", sleeper)
    assert len(json.loads(exec_ids)) == 1
    deadline = time.monotonic() + 10
    while docker.run("exec", sleeper, "test", "-e", "/tmp/marker").returncode != 0:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    deadline = time.monotonic() + 5
    while docker.ok("inspect", "-f", "{{json .ExecIDs}}", sleeper).strip() != "null":
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_exec_errors(docker: DockerCLI, sleeper: str) -> None:
    proc = docker.run("exec", sleeper, "no-such-command")
    assert proc.returncode == 127
    assert "executable file not found" in proc.stdout + proc.stderr
    name = docker.name()
    cid = docker.ok("create", "--name", name, "busybox", "true").strip()
    proc = docker.run("exec", name, "true")
    assert proc.returncode == 1
    assert f"Error response from daemon: Container {cid} is not running" in proc.stderr
    proc = docker.run("exec", "no-such-container", "true")
    assert "No such container: no-such-container" in proc.stderr


def test_exec_it_under_pty(docker: DockerCLI, sleeper: str) -> None:
    out, code = run_in_pty([str(DOCKER), "exec", "-it", sleeper, "sh"], docker.env,
                           b"echo hi; exit 4\r")
    assert code == 4, out
    assert b"\r\nhi\r\n" in out


# -- events and stats --------------------------------------------------------------------------


def test_events_window(docker: DockerCLI) -> None:
    name = docker.name()
    since = int(time.time()) - 1
    docker.ok("run", "--name", name, "busybox", "true")
    docker.ok("rm", name)
    until = int(time.time()) + 1
    time.sleep(max(0.0, until - time.time()) + 0.05)
    out = docker.ok("events", "--since", str(since), "--until", str(until),
                    "--filter", f"container={name}", "--format", "{{.Type}} {{.Action}}",
                    timeout=30)
    actions = [line.split()[1] for line in out.splitlines()]
    assert actions == ["create", "start", "die", "destroy"], out
    out = docker.ok("events", "--since", str(since), "--until", str(until),
                    "--filter", f"container={name}", "--filter", "event=die", timeout=30)
    assert out.count("container die") == 1
    assert f"name={name}" in out and "exitCode=0" in out and "image=busybox" in out


def test_stats_no_stream(docker: DockerCLI, sleeper: str) -> None:
    out = docker.ok("stats", "--no-stream", sleeper)
    header, row = out.splitlines()
    assert header.split()[:4] == ["CONTAINER", "ID", "NAME", "CPU"]
    fields = row.split()
    assert fields[1] == sleeper
    assert fields[2].endswith("%")
    assert fields[-1] == "1"  # PIDS
    mem = json.loads(docker.ok("stats", "--no-stream", "--format", "{{json .}}", sleeper))
    assert mem["Name"] == sleeper and mem["PIDs"] == "1"


def test_system_prune(fresh_daemon, test_images) -> None:  # type: ignore[no-untyped-def]
    """On a daemon of its own: prune removes every stopped container."""
    with tempfile.TemporaryDirectory(prefix="berth-test-dockercfg-") as cfg:
        docker = DockerCLI(fresh_daemon.host, cfg)
        docker.ok("load", "-i", str(test_images.busybox_docker_tar))
        cid = docker.ok("create", "busybox", "true").strip()
        out = docker.ok("system", "prune", "-f")
        assert out.startswith(f"Deleted Containers:\n{cid}\n")
        assert "Total reclaimed space:" in out
        assert docker.ok("ps", "-aq") == ""


def test_container_prune_with_label_filter(docker: DockerCLI) -> None:
    mark = uuid.uuid4().hex[:8]
    doomed, kept = docker.name(), docker.name()
    doomed_id = docker.ok("create", "--name", doomed, "--label", f"dcli.prune={mark}",
                          "busybox", "true").strip()
    docker.ok("create", "--name", kept, "busybox", "true")
    out = docker.ok("container", "prune", "-f", "--filter", f"label=dcli.prune={mark}")
    assert out.splitlines()[:2] == ["Deleted Containers:", doomed_id]
    assert docker.run("inspect", doomed).returncode == 1
    assert docker.ok("inspect", "-f", "{{.State.Status}}", kept).strip() == "created"
    proc = docker.run("container", "prune", "-f", "--filter", "colour=red")
    assert "invalid filter 'colour'" in proc.stderr


# -- export, diff, update ------------------------------------------------------------------------


def test_export_diff_update(docker: DockerCLI, tmp_path: Path) -> None:
    name = docker.name()
    since = int(time.time()) - 1
    docker.ok("run", "-d", "--name", name, "busybox", "sh", "-c",
              "rm /bin/printenv; mkdir /new; echo n > /new/f; exec sleep 300")
    deadline = time.monotonic() + 10
    while "A /new/f" not in docker.ok("diff", name) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert docker.ok("diff", name) == "C /bin\nD /bin/printenv\nA /new\nA /new/f\n"
    assert docker.ok("container", "diff", name) == docker.ok("diff", name)

    out = tmp_path / "export.tar"
    assert docker.ok("export", "-o", str(out), name) == ""
    import tarfile

    with tarfile.open(out) as tar:
        names = tar.getnames()
    assert "new/f" in names and "bin/busybox" in names and "bin/printenv" not in names
    proc = docker.run("export", "-o", "/dcli-no-such-dir/x.tar", name)
    assert (proc.returncode, proc.stderr) == (
        1, "failed to export container: invalid output path: stat /dcli-no-such-dir: no such "
           "file or directory\n")

    assert docker.ok("update", "--memory", "64m", "--memory-swap", "128m", "--cpus", "0.5",
                     "--pids-limit", "40", "--restart", "unless-stopped", name) == f"{name}\n"
    assert docker.ok("inspect", "-f", "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} "
                     "{{.HostConfig.PidsLimit}} {{.HostConfig.RestartPolicy.Name}}", name) \
        == f"{64 << 20} 500000000 40 unless-stopped\n"
    proc = docker.run("update", "--memory", "1m", name, "dcli-no-such")
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == ("Error response from daemon: Minimum memory limit allowed is 6MB\n"
                           "Error response from daemon: No such container: dcli-no-such\n")
    proc = docker.run("update", "--blkio-weight", "300", name)
    assert proc.returncode == 0 and proc.stdout.startswith(f"{name}\n")

    until = int(time.time()) + 1
    time.sleep(max(0.0, until - time.time()) + 0.05)
    out = docker.ok("events", "--since", str(since), "--until", str(until), "--filter",
                    f"container={name}", "--format", "{{.Action}}", timeout=30)
    assert [a for a in out.split() if a in ("export", "update")] == ["export", "update",
                                                                      "update"], out


def test_inspect_template_errors(docker: DockerCLI) -> None:
    # the docker CLI does the templating (typed pass, then raw JSON with missingkey=error):
    # berthd's inspect JSON must give it the same answers dockerd's does
    name = docker.name()
    docker.ok("create", "--name", name, "-l", "k=v", "busybox", "true")
    assert docker.ok("inspect", "-f", "{{.Config.Labels.k}} {{.Config.Labels.nope}}", name) \
        == "v <no value>\n"
    proc = docker.run("inspect", "-f", "{{.Bogus}}", name)
    assert proc.returncode == 1
    assert 'executing "" at <.Bogus>: map has no entry for key "Bogus"' in proc.stderr


def test_log_driver_none_and_stop_signal(docker: DockerCLI) -> None:
    name = docker.name()
    assert docker.ok("run", "--name", name, "--log-driver", "none", "busybox", "echo", "x") \
        == "x\n"
    proc = docker.run("logs", name)
    assert (proc.returncode, proc.stderr) == (
        1, "Error response from daemon: configured logging driver does not support reading\n")
    proc = docker.run("create", "--stop-signal", "SIGFOO", "busybox", "true")
    assert proc.returncode != 0
    assert "Error response from daemon: Invalid signal: SIGFOO" in proc.stderr
