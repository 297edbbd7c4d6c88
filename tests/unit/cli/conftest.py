"""A tiny scripted Engine API server on a unix socket in tmp_path, and a way to run the CLI.

The server speaks just enough HTTP/1.1 (keep-alive, Content-Length and chunked request bodies,
``Upgrade: tcp``) for the client to be tested against real sockets; each test gives it a
``route`` function that answers from the captured docker traffic.
"""

from __future__ import annotations

import io
import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from berth.cli.main import main

# captures of the real docker CLI 28 talking to dockerd 20.10 (request, response, output)
CAPTURES = Path(__file__).parent / "captures"


@dataclass
class Request:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    conn: int

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def query(self) -> str:
        return self.target.partition("?")[2]

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    body: bytes | Any = b""
    headers: dict[str, str] = field(default_factory=dict)
    chunked: bool = False
    # For hijacked streams: raw bytes sent after the 101, then the socket is closed.
    raw: bytes | None = None
    # Called with the socket after a 101 (to read what the client writes).
    on_upgrade: Callable[[socket.socket], None] | None = None
    # Wait for this event before sending the body (the ``wait`` endpoint).
    hold: threading.Event | None = None


Route = Callable[[Request], Reply]


class FakeDaemon:
    def __init__(self, path: Path, route: Route) -> None:
        self.path = path
        self.route = route
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(16)
        self.threads: list[threading.Thread] = []
        self.conns = 0
        self.stopping = False
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    @property
    def host(self) -> str:
        return f"unix://{self.path}"

    def _accept(self) -> None:
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns += 1
            t = threading.Thread(target=self._serve, args=(conn, self.conns), daemon=True)
            self.threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        reader = conn.makefile("rb")
        try:
            while True:
                line = reader.readline()
                if not line:
                    return
                method, target, _ = line.decode().split(" ", 2)
                headers: dict[str, str] = {}
                while True:
                    h = reader.readline().decode().rstrip("\r\n")
                    if not h:
                        break
                    k, _, v = h.partition(":")
                    headers[k.strip().lower()] = v.strip()
                body = b""
                if headers.get("transfer-encoding") == "chunked":
                    while True:
                        size = int(reader.readline().strip(), 16)
                        if size == 0:
                            reader.readline()
                            break
                        body += reader.read(size)
                        reader.read(2)
                elif "content-length" in headers:
                    body = reader.read(int(headers["content-length"]))
                req = Request(method, target, headers, body, number)
                with self.lock:
                    self.requests.append(req)
                if method == "HEAD" and target == "/_ping":
                    conn.sendall(b"HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Length: 0\r\n"
                                 b"Content-Type: text/plain; charset=utf-8\r\n\r\n")
                    continue
                reply = self.route(req)
                if reply.status == 101:
                    conn.sendall(b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker."
                                 b"raw-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
                    if reply.on_upgrade is not None:
                        reply.on_upgrade(conn)
                    if reply.raw:
                        conn.sendall(reply.raw)
                    conn.shutdown(socket.SHUT_RDWR)
                    return
                self._reply(conn, reply, head_only=method == "HEAD")
        except (OSError, ValueError):
            return
        finally:
            reader.close()
            conn.close()

    def _reply(self, conn: socket.socket, reply: Reply, head_only: bool = False) -> None:
        body = reply.body
        headers = dict(reply.headers)
        if not isinstance(body, bytes):
            body = json.dumps(body).encode() + b"\n"
            headers.setdefault("Content-Type", "application/json")
        reason = {200: "OK", 201: "Created", 204: "No Content", 404: "Not Found",
                  409: "Conflict", 500: "Internal Server Error"}.get(reply.status, "X")
        head = f"HTTP/1.1 {reply.status} {reason}\r\n"
        if reply.chunked:
            headers["Transfer-Encoding"] = "chunked"
        elif reply.status != 204:
            headers["Content-Length"] = str(len(body))
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        conn.sendall(head.encode())
        if head_only:
            return
        if reply.hold is not None:
            while not reply.hold.wait(0.02) and not self.stopping:
                pass
        if reply.chunked:
            if body:
                conn.sendall(b"%x\r\n%b\r\n" % (len(body), body))
            conn.sendall(b"0\r\n\r\n")
        elif reply.status != 204:
            conn.sendall(body)

    def close(self) -> None:
        self.stopping = True
        self.sock.close()
        for t in self.threads:
            t.join(5)


@pytest.fixture()
def fake_daemon(tmp_path: Path) -> Iterator[Callable[[Route], FakeDaemon]]:
    made: list[FakeDaemon] = []

    def start(route: Route) -> FakeDaemon:
        d = FakeDaemon(tmp_path / "berth.sock", route)
        made.append(d)
        return d

    yield start
    for d in made:
        d.close()


@dataclass
class Result:
    code: int
    out: str
    err: str
    raw_out: bytes


class _Out(io.TextIOWrapper):
    pass


def run_cli(host: str, *args: str, stdin: bytes = b"", env: dict[str, str] | None = None) -> Result:
    """Run ``berth -H host args`` in-process with captured binary-capable streams."""
    out_buf, err_buf = io.BytesIO(), io.BytesIO()
    out = io.TextIOWrapper(out_buf, encoding="utf-8", write_through=True)
    err = io.TextIOWrapper(err_buf, encoding="utf-8", write_through=True)
    code = main(["-H", host, *args], stdout=out, stderr=err, stdin=io.BytesIO(stdin),
                environ=env or {"HOME": "/nonexistent"})
    out.flush()
    err.flush()
    raw = out_buf.getvalue()
    return Result(code, raw.decode(errors="replace"), err_buf.getvalue().decode(), raw)


def capture_output(name: str) -> str:
    """The CLI output recorded at the end of a capture file (``# | `` lines)."""
    text = (CAPTURES / name).read_text()
    tail = text.split("# ---- CLI exit status", 1)[1].split("\n", 1)[1]
    return "".join(line[4:] + "\n" for line in tail.splitlines() if line.startswith("# | ")
                   or line == "# |")


def capture_bodies(name: str) -> list[tuple[str, str]]:
    """(request line, JSON body) pairs of CLI→daemon requests in a capture file."""
    lines = (CAPTURES / name).read_text().splitlines()
    out = []
    for i, line in enumerate(lines):
        if line.startswith(("POST /", "PUT /")) and line.endswith("HTTP/1.1\\r"):
            for follow in lines[i + 1 : i + 8]:
                if follow.startswith("{"):
                    out.append((line[:-len(" HTTP/1.1\\r")], follow))
                    break
    return out


def capture_response(name: str, request_prefix: str) -> str:
    """The first JSON line answered after the request line starting with ``request_prefix``."""
    lines = (CAPTURES / name).read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith(request_prefix):
            for follow in lines[i + 1 :]:
                if follow.startswith(("{", "[")):
                    return follow
    raise KeyError(request_prefix)
