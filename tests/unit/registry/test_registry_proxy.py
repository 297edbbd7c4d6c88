"""Registry requests honour berthd's HTTP(S)_PROXY / NO_PROXY as dockerd does."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from berth.errors import Unavailable
from berth.registry._http import Endpoint, proxy_for, request


class RecordingProxy:
    """Accepts one connection at a time, keeps its request line, answers 200 with ``{}``."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.lines: list[str] = []
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                self.lines.append(data.split(b"\r\n", 1)[0].decode())
                if data.startswith(b"CONNECT"):
                    conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                else:
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingProxy]:
    for name in ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY",
                 "NO_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    server = RecordingProxy()
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{server.port}")
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{server.port}")
    yield server
    server.sock.close()


def test_plain_http_asks_the_proxy_with_the_absolute_url(proxy: RecordingProxy) -> None:
    endpoint = Endpoint("http", "registry.test:5000", None)
    resp = request(endpoint, "GET", "/v2/", {}, None, 5, 5)
    assert resp.read_all() == b"{}"
    assert proxy.lines == ["GET http://registry.test:5000/v2/ HTTP/1.1"]


def test_https_tunnels_with_connect(proxy: RecordingProxy) -> None:
    import ssl

    endpoint = Endpoint("https", "registry.test", ssl.create_default_context())
    with pytest.raises(Unavailable):
        request(endpoint, "GET", "/v2/", {}, None, 5, 5)
    assert proxy.lines == ["CONNECT registry.test:443 HTTP/1.0"]


def test_loopback_and_no_proxy_hosts_go_direct(proxy: RecordingProxy,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    for host in ("127.0.0.1:5000", "localhost:5000", "[::1]:5000"):
        assert proxy_for(Endpoint("http", host, None)) is None
    monkeypatch.setenv("NO_PROXY", "internal.example,.corp")
    assert proxy_for(Endpoint("http", "internal.example:5000", None)) is None
    assert proxy_for(Endpoint("http", "reg.corp", None)) is None
    assert proxy_for(Endpoint("https", "registry-1.docker.io", None)) == ("127.0.0.1",
                                                                          proxy.port)


def test_a_proxy_that_refuses_fails_at_once_in_gos_words(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    import ssl

    endpoint = Endpoint("https", "registry-1.docker.io", ssl.create_default_context())
    with pytest.raises(Unavailable) as err:
        request(endpoint, "GET", "/v2/", {}, None, 5, 5)
    assert str(err.value) == (f'Get "https://registry-1.docker.io/v2/": proxyconnect tcp: '
                              f"dial tcp 127.0.0.1:{port}: connect: connection refused")
