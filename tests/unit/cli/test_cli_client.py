"""The HTTP/1.1 client against a real unix socket: framing, keep-alive, upgrade, frames."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from berth.cli.client import (
    ApiError,
    Client,
    DaemonUnreachable,
    encode_query,
    go_json,
    parse_host,
    quote,
    resolve_host,
)
from berth.cli.frames import FrameDecoder, demux

from .conftest import FakeDaemon, Reply, Request, Route, run_cli

Start = Callable[[Route], FakeDaemon]


def frame(stream: int, data: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + len(data).to_bytes(4, "big") + data


def test_content_length_and_keep_alive(fake_daemon: Start) -> None:
    d = fake_daemon(lambda r: Reply(body={"path": r.path}))
    with Client(d.host) as c:
        assert c.get_json("/version") == {"path": "/v1.41/version"}
        assert c.get_json("/info") == {"path": "/v1.41/info"}
    assert [r.target for r in d.requests] == ["/_ping", "/v1.41/version", "/v1.41/info"]
    assert {r.conn for r in d.requests} == {1}  # one keep-alive connection
    assert d.requests[1].headers["host"] == "api.moby.localhost"


def test_chunked_response_and_json_lines(fake_daemon: Start) -> None:
    body = b'{"status":"a"}\r\n{"status":"b"}\r\n{"stream":"c\\n"}'
    d = fake_daemon(lambda r: Reply(body=body, chunked=True))
    with Client(d.host, ping=False) as c:
        assert list(c.request("GET", "/events").iter_json()) == [
            {"status": "a"}, {"status": "b"}, {"stream": "c\n"}]


def test_close_delimited_response(tmp_path: Path) -> None:
    path = tmp_path / "raw.sock"
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(str(path))
    srv.listen(1)

    def serve() -> None:
        conn, _ = srv.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it")
        conn.close()

    t = threading.Thread(target=serve)
    t.start()
    try:
        with Client(f"unix://{path}", ping=False) as c:
            assert c.request("GET", "/x").read() == b"all of it"
    finally:
        t.join(5)
        srv.close()


def test_chunked_request_body_streamed(fake_daemon: Start, tmp_path: Path) -> None:
    d = fake_daemon(lambda r: Reply(body={"n": len(r.body)}))
    src = tmp_path / "blob"
    src.write_bytes(b"x" * 200_000)
    with src.open("rb") as fh, Client(d.host, ping=False) as c:
        assert c.request("POST", "/images/load", stream=fh).json() == {"n": 200_000}
    assert d.requests[0].headers["transfer-encoding"] == "chunked"


def test_error_status_raises_with_daemon_message(fake_daemon: Start) -> None:
    d = fake_daemon(lambda r: Reply(404, {"message": "No such image: x:latest"}))
    with pytest.raises(ApiError) as info, Client(d.host) as c:
        c.get_json("/images/x:latest/json")
    assert info.value.status == 404
    assert info.value.message == "No such image: x:latest"


def test_connection_refused_is_docker_message(tmp_path: Path) -> None:
    host = f"unix://{tmp_path}/none.sock"
    with pytest.raises(DaemonUnreachable) as info, Client(host) as c:
        c.get_json("/version")
    assert str(info.value) == (f"Cannot connect to the berth daemon at {host}. "
                               "Is the berth daemon running?")
    result = run_cli(host, "ps")
    assert result.code == 1
    assert result.err == (f"Cannot connect to the berth daemon at {host}. Is the berth daemon "
                          "running?\n(start it with: berthd &)\n")


def test_hijack_upgrade_keeps_bytes_sent_with_the_101(fake_daemon: Start) -> None:
    payload = frame(1, b"hi\n") + frame(2, b"oops\n")
    received: list[bytes] = []

    def on_upgrade(conn: socket.socket) -> None:
        data = b""
        while True:
            piece = conn.recv(4096)
            if not piece:
                break
            data += piece
        received.append(data)

    d = fake_daemon(lambda r: Reply(101, raw=payload, on_upgrade=on_upgrade))
    chunks = []
    with Client(d.host, ping=False) as c:
        hj = c.hijack("/containers/c/attach", {"stream": 1, "stdin": 1})
        hj.send(b"input")
        hj.close_write()
        while True:
            data = hj.recv()
            if not data:
                break
            chunks.append(data)
        hj.close()
    assert list(demux(chunks)) == [(1, b"hi\n"), (2, b"oops\n")]
    assert received == [b"input"]
    req = d.requests[0]
    assert req.target == "/v1.41/containers/c/attach?stdin=1&stream=1"
    assert req.headers["upgrade"] == "tcp" and req.headers["connection"] == "Upgrade"


def test_frame_decoder_handles_split_headers() -> None:
    data = frame(1, b"hello") + frame(2, b"") + frame(1, b"x" * 70000)
    dec = FrameDecoder()
    out = []
    for i in range(0, len(data), 3):
        out += list(dec.feed(data[i : i + 3]))
    assert out == [(1, b"hello"), (2, b""), (1, b"x" * 70000)]
    assert dec.pending == 0


def test_query_encoding_is_gos() -> None:
    assert encode_query({"stream": 1, "stderr": 1, "stdout": 1}) == "?stderr=1&stdout=1&stream=1"
    assert encode_query({"changes": ['CMD ["sh"]'], "comment": "add /y", "x": None}) == (
        "?changes=CMD+%5B%22sh%22%5D&comment=add+%2Fy")
    assert encode_query({"repo": "docker.io/me/bb"}) == "?repo=docker.io%2Fme%2Fbb"
    assert quote("localhost:5000/a") == "localhost%3A5000%2Fa"


def test_go_json_escapes_like_go() -> None:
    assert go_json({"a": "<x> & y", "b": [1, None]}) == (
        '{"a":"\\u003cx\\u003e \\u0026 y","b":[1,null]}')
    # what the docker CLI prints (inspect, {{json}}) has that escaping switched off
    assert go_json({"a": "<x> & y\u2028"}, escape_html=False) == '{"a":"<x> & y\\u2028"}'


@pytest.mark.parametrize("host, parsed", [
    ("unix:///run/berth/berth.sock", ("unix", "/run/berth/berth.sock")),
    ("/tmp/x.sock", ("unix", "/tmp/x.sock")),
    ("tcp://127.0.0.1:2375", ("tcp", ("127.0.0.1", 2375))),
    ("tcp://[::1]:2376", ("tcp", ("::1", 2376))),
])
def test_parse_host(host: str, parsed: tuple[str, object]) -> None:
    assert parse_host(host) == parsed


def test_host_resolution_order() -> None:
    assert resolve_host("unix:///a", {"BERTH_HOST": "unix:///b"}) == "unix:///a"
    assert resolve_host(None, {"BERTH_HOST": "unix:///b"}) == "unix:///b"
    assert resolve_host(None, {"DOCKER_HOST": "unix:///d"}) == "unix:///run/berth/berth.sock"


def test_tcp_host(fake_daemon: Start) -> None:
    srv = socket.socket(socket.AF_INET)
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]

    def serve() -> None:
        conn, _ = srv.accept()
        req = conn.recv(65536)
        assert req.startswith(b"GET /v1.41/version HTTP/1.1\r\nHost: 127.0.0.1:")
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        conn.close()

    t = threading.Thread(target=serve)
    t.start()
    try:
        with Client(f"tcp://127.0.0.1:{port}", ping=False) as c:
            assert c.get_json("/version") == {}
    finally:
        t.join(5)
        srv.close()


def test_ping_negotiates_down(fake_daemon: Start) -> None:
    def route(r: Request) -> Reply:
        return Reply(body={})

    d = fake_daemon(route)
    with Client(d.host, version="1.43") as c:
        c.get_json("/version")
    assert d.requests[-1].target == "/v1.41/version"
