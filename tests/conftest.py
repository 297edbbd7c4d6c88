"""Fixtures shared by the whole suite: real test images, a real berthd, the berth CLI.

The daemon runs as its own process on a private socket, data root and exec root under a temp
dir, so the suite never touches a berthd the user may run. At the end of the session the suite
checks that nothing of berth is left mounted or running.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
IMAGE_CACHE = Path(os.environ.get("BERTH_TEST_IMAGES", "/var/tmp/berth-test-images"))


def _tool(name: str) -> list[str]:
    exe = VENV_BIN / name
    return [str(exe)] if exe.exists() else [sys.executable, "-m", {
        "berth": "berth.cli.main", "berthd": "berth.engine.daemon"}[name]]


@pytest.fixture(scope="session", autouse=True)
def hybrid_cgroups_ready_for_crun() -> None:
    """Tests run containers under crun too; see tests.support.host."""
    from tests.support.host import move_cgroup2_controllers_to_v1

    move_cgroup2_controllers_to_v1()


@pytest.fixture(scope="session")
def test_images():  # type: ignore[no-untyped-def]
    from tests.support.images import build_test_images

    return build_test_images(IMAGE_CACHE)


@dataclass
class Daemon:
    root: Path
    socket: Path
    data_root: Path
    exec_root: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ()  # extra berthd flags, kept across restarts

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    def cli(self, *args: str, input: bytes | None = None, timeout: float = 60,
            check: bool = False) -> subprocess.CompletedProcess[bytes]:
        proc = subprocess.run([*_tool("berth"), "-H", self.host, *args], input=input,
                              capture_output=True, timeout=timeout, env=self.env)
        if check and proc.returncode != 0:
            raise AssertionError(f"berth {' '.join(args)} failed ({proc.returncode}):\n"
                                 f"{proc.stdout.decode()}\n{proc.stderr.decode()}")
        return proc

    def out(self, *args: str, input: bytes | None = None, timeout: float = 60) -> str:
        return self.cli(*args, input=input, timeout=timeout, check=True).stdout.decode()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def restart(self) -> None:
        self.stop()
        self.process = _spawn_daemon(self.root, self.socket, self.data_root, self.exec_root,
                                     self.log_path, self.args)


def _offline_env() -> dict[str, str]:
    """berthd's environment: every registry or download request that is not to loopback goes
    to a proxy port nobody listens on, so no test can reach (or even resolve) Docker Hub."""
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    dead = "http://127.0.0.1:9"
    return {**env, "HTTP_PROXY": dead, "HTTPS_PROXY": dead,
            "NO_PROXY": "localhost,127.0.0.1,::1"}


def _spawn_daemon(root: Path, sock: Path, data_root: Path, exec_root: Path,
                  log_path: Path, args: tuple[str, ...] = ()) -> subprocess.Popen[bytes]:
    logf = open(log_path, "ab")  # noqa: SIM115 - owned by the daemon process
    proc = subprocess.Popen(
        [*_tool("berthd"), "-H", f"unix://{sock}", "--data-root", str(data_root),
         "--exec-root", str(exec_root), "--pidfile", str(root / "berthd.pid"),
         "--config-file", str(root / "daemon.json"),
         # e.g. "--default-runtime berth": run the whole suite under another runtime
         *os.environ.get("BERTH_TEST_DAEMON_ARGS", "").split(), *args],
        stdout=logf, stderr=subprocess.STDOUT, start_new_session=True, env=_offline_env())
    logf.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"berthd exited: {log_path.read_text()[-3000:]}")
        if sock.exists():
            try:
                import socket as s

                with s.socket(s.AF_UNIX) as c:  # closed also when connect fails
                    c.connect(str(sock))
                    c.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
                    if c.recv(100).startswith(b"HTTP/1."):
                        return proc
            except OSError:
                pass
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"berthd did not answer: {log_path.read_text()[-3000:]}")


def start_daemon(root: Path, args: tuple[str, ...] = ()) -> Daemon:
    """A berthd on its own socket and roots under ``root``; ``args``: extra berthd flags."""
    root.mkdir(parents=True, exist_ok=True)
    # a remapped container's root must pass through here (0700 from mkdtemp stops it)
    root.chmod(0o711)
    (root / "daemon.json").write_text("{}")
    sock = root / "berth.sock"
    data_root, exec_root = root / "data", root / "exec"
    log_path = root / "berthd.log"
    proc = _spawn_daemon(root, sock, data_root, exec_root, log_path, args)
    env = dict(os.environ)
    env.pop("BERTH_HOST", None)
    env["HOME"] = str(root / "home")
    return Daemon(root=root, socket=sock, data_root=data_root, exec_root=exec_root,
                  process=proc, log_path=log_path, env=env, args=args)


def stop_daemon(d: Daemon) -> None:
    if d.process.poll() is None:
        ids = d.cli("ps", "-aq").stdout.decode().split()
        if ids:
            d.cli("rm", "-f", *ids, timeout=120)
    d.stop()
    leftovers = mounts_under(d.root)
    for target in reversed(leftovers):
        subprocess.run(["umount", "-l", target], check=False)
    shutil.rmtree(d.root, ignore_errors=True)
    assert not leftovers, f"berth left mounts behind: {leftovers}"


def mounts_under(path: Path) -> list[str]:
    prefix = str(path)
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            target = line.split()[4]
            if target.startswith(prefix):
                found.append(target)
    return found


@pytest.fixture(scope="session")
def daemon(test_images) -> Iterator[Daemon]:  # type: ignore[no-untyped-def]
    """One berthd for the session, with busybox and layered images loaded."""
    root = Path(tempfile.mkdtemp(prefix="berth-test-"))
    d = start_daemon(root)
    try:
        d.out("load", "-i", str(test_images.busybox_docker_tar))
        yield d
    finally:
        stop_daemon(d)


@pytest.fixture()
def fresh_daemon(tmp_path_factory) -> Iterator[Daemon]:  # type: ignore[no-untyped-def]
    """A berthd of the test's own, for tests that restart or break it."""
    root = Path(tempfile.mkdtemp(prefix="berth-test-own-"))
    d = start_daemon(root)
    try:
        yield d
    finally:
        stop_daemon(d)


@pytest.fixture()
def daemon_with() -> Iterator[Callable[..., Daemon]]:
    """Start berthds with extra flags: ``daemon_with("--userns-remap", "default")``; each is
    stopped and cleaned up at the end of the test."""
    started: list[Daemon] = []

    def start(*args: str) -> Daemon:
        d = start_daemon(Path(tempfile.mkdtemp(prefix="berth-test-own-")), tuple(args))
        started.append(d)
        return d

    try:
        yield start
    finally:
        for d in started:
            stop_daemon(d)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Nothing of berth may outlive the suite: no mounts, no shims, no containers."""
    if os.environ.get("BERTH_SKIP_LEAK_CHECK"):
        return
    deadline = time.monotonic() + 10  # shims linger a moment after their container exits
    while True:
        leaked = [m for m in mounts_under(Path(tempfile.gettempdir())) if "berth-test" in m]
        procs = subprocess.run(["pgrep", "-af", "berth"], capture_output=True,
                               text=True).stdout.strip()
        procs = "\n".join(line for line in procs.splitlines()
                          if "berth-test" in line and "pytest" not in line)
        if not (leaked or procs) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if leaked or procs:
        sys.stderr.write(f"\nberth leaked resources after the suite:\nmounts: {leaked}\n"
                         f"processes:\n{procs}\n")
        session.exitstatus = 1
