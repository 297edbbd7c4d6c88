"""Helpers for the container tests: host-side leak checks, a pty driver, a raw API call."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import socket
import struct
import termios
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import _tool, mounts_under

CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_dirs(container_id: str) -> list[Path]:
    """Every cgroup directory the container has on this host (v1 hierarchies and v2)."""
    found = [p for p in CGROUP_ROOT.glob(f"*/berth/{container_id}") if p.is_dir()]
    v2 = CGROUP_ROOT / "berth" / container_id
    if v2.is_dir():
        found.append(v2)
    return found


def shim_pids(daemon: Any) -> set[int]:
    """Shims of this daemon: processes that carry its exec root on their command line and
    are no longer the daemon's children (a shim outlives berthd, so it is re-parented)."""
    label = str(daemon.exec_root).encode()
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        if label in cmd and ppid != daemon.process.pid:
            pids.add(int(entry.name))
    return pids


@dataclass(frozen=True)
class Leftovers:
    mounts: list[str]
    cgroups: list[Path]
    container_dir: bool
    shim_dir: bool

    @property
    def empty(self) -> bool:
        return not (self.mounts or self.cgroups or self.container_dir or self.shim_dir)


def leftovers(daemon: Any, container_id: str, keep_dir: bool = False) -> Leftovers:
    """What of one container is still on the host. ``keep_dir``: the container still exists
    (created/exited), so its directory is expected and only mounts etc. count."""
    cdir = daemon.data_root / "containers" / container_id
    return Leftovers(
        mounts=[m for m in mounts_under(daemon.data_root) if container_id in m],
        cgroups=cgroup_dirs(container_id),
        container_dir=cdir.exists() and not keep_dir,
        shim_dir=(daemon.exec_root / "shims" / container_id[:24]).exists())


def wait_for(predicate: Any, timeout: float = 10.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def api(daemon: Any, method: str, path: str, body: Any = None,
        timeout: float = 30) -> tuple[int, Any]:
    """One Engine API request over the daemon's socket (the body ends when it closes)."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    s.connect(str(daemon.socket))
    data = b"" if body is None else json.dumps(body).encode()
    head = (f"{method} {path} HTTP/1.1\r\nHost: berth\r\nConnection: close\r\n"
            f"Content-Length: {len(data)}\r\n"
            f"Content-Type: application/json\r\n\r\n").encode()
    s.sendall(head + data)
    chunks = []
    while chunk := s.recv(65536):
        chunks.append(chunk)
    s.close()
    raw = b"".join(chunks)
    header, _, payload = raw.partition(b"\r\n\r\n")
    status = int(header.split()[1])
    if b"chunked" in header.lower():
        payload = _dechunk(payload)
    text = payload.decode().strip()
    return status, (json.loads(text) if text else None)


def _dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2:]
    return out


class Terminal:
    """``berth ARGS`` on a pseudo-terminal of our own, as a person at a keyboard runs it."""

    def __init__(self, daemon: Any, *args: str, rows: int = 24, cols: int = 80) -> None:
        argv = [*_tool("berth"), "-H", daemon.host, *args]
        pid, fd = pty.fork()
        if pid == 0:  # the child: become the CLI
            try:
                os.execve(argv[0], argv, daemon.env)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        self.output = b""
        self.resize(rows, cols)

    def resize(self, rows: int, cols: int) -> None:
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def send(self, data: bytes) -> None:
        os.write(self.fd, data)

    def read_until(self, marker: bytes, timeout: float = 10.0) -> bytes:
        """Read until ``marker`` appears in what came since the last call; returns that."""
        start = len(self.output)
        deadline = time.monotonic() + timeout
        while marker not in self.output[start:] and time.monotonic() < deadline:
            ready, _, _ = select.select([self.fd], [], [], 0.05)
            if not ready:
                continue
            try:
                data = os.read(self.fd, 4096)
            except OSError:  # EIO: the CLI exited and closed the terminal
                break
            if not data:
                break
            self.output += data
        return self.output[start:]

    def wait(self, timeout: float = 15.0) -> int:
        """The CLI's exit code (reading on so that it never blocks on a full terminal)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
            self.read_until(b"\0\0never", 0.05)
        raise TimeoutError(f"the CLI did not exit; output so far: {self.output!r}")

    def kill(self) -> None:
        try:
            os.kill(self.pid, 9)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        try:
            os.close(self.fd)
        except OSError:
            pass
