"""Raw Engine API access for the hostile corpus: status codes matter here, not CLI output."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 60) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


Response = tuple[int, bytes]
Api = Callable[..., Response]


def request(sock: Path, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None, timeout: float = 60) -> Response:
    conn = UnixHTTPConnection(str(sock), timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


@pytest.fixture()
def api(daemon) -> Api:  # type: ignore[no-untyped-def]
    def call(method: str, path: str, body: Any = None, *, raw: bytes | None = None,
             headers: dict[str, str] | None = None) -> Response:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        hdrs = {"Content-Type": "application/json"} if data is not None else {}
        hdrs.update(headers or {})
        return request(daemon.socket, method, path, data, hdrs)

    return call


def listing(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under a data root (mode, size), the database and per-container logs aside."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.name.startswith("berth.db") or p.is_symlink():
            continue
        try:
            st = p.lstat()
        except FileNotFoundError:
            continue
        out[str(p.relative_to(root))] = (st.st_mode, st.st_size if p.is_file() else -1)
    return out
