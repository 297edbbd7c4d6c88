"""berthd on TCP: ``--tlsverify`` requires a client certificate signed by ``--tlscacert``;
without it a tcp:// host is plain HTTP with dockerd's warning. Certificates are made here
with the ``openssl`` CLI; all traffic stays on 127.0.0.1."""

from __future__ import annotations

import http.client
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from tests.support.tls import HAVE_OPENSSL, TCPDaemon, make_certs, server_flags

pytestmark = pytest.mark.skipif(not HAVE_OPENSSL, reason="needs the openssl CLI")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture()
def start(tmp_path: Path) -> Iterator[object]:
    started: list[TCPDaemon] = []

    def _start(*flags: str, ready: bool = True) -> TCPDaemon:
        root = tmp_path / f"d{len(started)}"
        root.mkdir()
        d = TCPDaemon(root, *flags)
        started.append(d)
        if ready:
            d.wait_ready()
        return d

    yield _start
    for d in started:
        d.stop()


@pytest.fixture(scope="module")
def verifying(tmp_path_factory: pytest.TempPathFactory, certs) -> Iterator[TCPDaemon]:  # type: ignore[no-untyped-def]
    """One ``--tlsverify`` daemon for the tests that only talk to it."""
    d = TCPDaemon(tmp_path_factory.mktemp("tlsd"), *server_flags(certs))
    try:
        d.wait_ready()
        yield d
    finally:
        d.stop()


def _ping(port: int, ctx: ssl.SSLContext | None) -> tuple[int, bytes]:
    conn: http.client.HTTPConnection
    if ctx is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    else:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=ctx)
    try:
        conn.request("GET", "/_ping")
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _client_ctx(certs: dict[str, tuple[Path, Path]], who: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(certs["ca"][0]))
    if who is not None:
        ctx.load_cert_chain(*certs[who])
    return ctx


def test_tlsverify_accepts_a_client_signed_by_the_ca(verifying, certs, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # requests lets these variables override the session's CA (docker-py's ca_cert)
    for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(var, raising=False)
    d = verifying
    assert _ping(d.port, _client_ctx(certs, "client")) == (200, b"OK")
    # docker-py, as a user would connect
    tls = docker.tls.TLSConfig(client_cert=(str(certs["client"][0]), str(certs["client"][1])),
                               ca_cert=str(certs["ca"][0]), verify=True)
    client = docker.APIClient(base_url=f"https://127.0.0.1:{d.port}", tls=tls, timeout=10,
                              version="1.41")
    try:
        assert client.ping() is True
        assert client.version()["ApiVersion"]
    finally:
        client.close()
    assert "without --tlsverify is insecure" not in d.log.read_text()


@pytest.mark.parametrize("who", [None, "rogue"])
def test_tlsverify_refuses_clients_without_a_good_certificate(verifying, certs, who) -> None:  # type: ignore[no-untyped-def]
    d = verifying
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _ping(d.port, _client_ctx(certs, who))
    # plain HTTP on the TLS port gets no API answer either: Go's 400, as from dockerd
    assert _ping(d.port, None) == (400, b"Client sent an HTTP request to an HTTPS server.\n")
    # and the daemon is still fine for a good client
    assert _ping(d.port, _client_ctx(certs, "client")) == (200, b"OK")


def test_tcp_listener_binds_loopback_only(verifying) -> None:  # type: ignore[no-untyped-def]
    d = verifying
    out = subprocess.run(["ss", "-Hltn", f"sport = :{d.port}"], capture_output=True,
                         text=True, check=True).stdout.split("\n")
    locals_ = {line.split()[3] for line in out if line.strip()}
    assert locals_ == {f"127.0.0.1:{d.port}"}, out


def test_without_tlsverify_tcp_is_plain_with_a_warning(start) -> None:  # type: ignore[no-untyped-def]
    d = start()
    assert _ping(d.port, None) == (200, b"OK")
    assert "Binding to IP address without --tlsverify is insecure" in d.log.read_text()


def test_unreadable_certificates_stop_the_daemon(start, tmp_path, certs) -> None:  # type: ignore[no-untyped-def]
    d = start("--tlsverify", "--tlscacert", str(certs["ca"][0]),
              "--tlscert", str(tmp_path / "missing.pem"), "--tlskey", str(certs["server"][1]),
              ready=False)
    assert d.proc.wait(20) == 1
    assert "Could not load X509 key pair" in d.log.read_text()
    assert not d.sock.exists()


def test_tls_settings_from_flags_and_daemon_json(tmp_path: Path) -> None:
    from berth.engine.config import load_config, parse_args
    from berth.engine.tls import TLSSettings
    from berth.errors import InvalidArgument

    empty = tmp_path / "empty.json"
    empty.write_text("{}")
    cfg = load_config(parse_args(["--config-file", str(empty), "--tlsverify",
                                  "--tlscacert", "ca.pem", "--tlscert", "/c.pem"]))
    assert cfg.tls == TLSSettings(enabled=False, verify=True, cacert=Path("ca.pem").absolute(),
                                  cert=Path("/c.pem"), key=None)
    assert cfg.tls.active
    assert not load_config(parse_args(["--config-file", str(empty)])).tls.active
    file = tmp_path / "daemon.json"
    file.write_text('{"tls": true, "tlskey": "/k.pem"}')
    cfg = load_config(parse_args(["--config-file", str(file)]))
    assert cfg.tls == TLSSettings(enabled=True, key=Path("/k.pem"))
    with pytest.raises(InvalidArgument, match="tlskey"):
        load_config(parse_args(["--config-file", str(file), "--tlskey", "/x.pem"]))
