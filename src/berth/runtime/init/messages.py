"""The parent ↔ init handshake over two CLOEXEC pipes.

parent                                 init (cloned child)
  clone ───────────────────────────────▶ joins namespaces by path, waits
  (with a user namespace an intermediate child comes first: it joins, unshares the user
   namespace and asks for its maps ("map" ▶ written, go), unshares the rest, clones the init
   as the parent's own child and reports its pid ("pid"), then exits)
  cgroup add_pid, send_go ─────────────▶ rootfs, devices, pivot_root, user, caps ...
  wait_ready ◀──────────────────────── send_ready (or send_error, then exit)
  (start) open exec.fifo ──────────────▶ exec
  read until EOF ◀──────────────────── the pipe closes at exec (CLOEXEC), or send_error

A message is one JSON line, written with a single write(2) so it cannot interleave.
"""

from __future__ import annotations

import json
import os
from typing import NamedTuple

from berth.errors import RuntimeFailure

_GO = b"G"


class InitMessage(NamedTuple):
    kind: str  # "ready" | "error"; from an intermediate: "map" | "pid"
    text: str = ""


def send_go(fd: int) -> None:
    os.write(fd, _GO)


def wait_go(fd: int) -> None:
    """Block until the parent has placed us in the cgroup (EOF means the parent died)."""
    if os.read(fd, 1) != _GO:
        raise RuntimeFailure("parent went away before the container was set up")


def send_ready(fd: int) -> None:
    os.write(fd, b'{"kind": "ready"}\n')


def send(fd: int, kind: str, text: str = "") -> None:
    os.write(fd, (json.dumps({"kind": kind, "text": text}) + "\n").encode())


def send_error(fd: int, text: str) -> None:
    os.write(fd, (json.dumps({"kind": "error", "text": text}) + "\n").encode())


class MessageReader:
    """Reads InitMessages from the init's pipe; ``None`` once the pipe is closed."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = b""

    def next(self) -> InitMessage | None:
        while b"\n" not in self._buffer:
            chunk = os.read(self._fd, 65536)
            if not chunk:
                return None
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        raw = json.loads(line)
        return InitMessage(str(raw["kind"]), str(raw.get("text", "")))
