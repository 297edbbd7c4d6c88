"""berthd on TCP: ``--tlsverify`` requires a client certificate signed by ``--tlscacert``;
without it a tcp:// host is plain HTTP with dockerd's warning. Certificates are made here
with the ``openssl`` CLI; all traffic stays on 127.0.0.1."""

from __future__ import annotations

import http.client
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

pytestmark = pytest.mark.skipif(subprocess.run(["which", "openssl"], capture_output=True)
                                .returncode != 0, reason="needs the openssl CLI")


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)


def _ca(d: Path, name: str) -> tuple[Path, Path]:
    key, cert = d / f"{name}-key.pem", d / f"{name}.pem"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
             "-subj", f"/CN={name}")
    return cert, key


def _signed(d: Path, name: str, ca: tuple[Path, Path], ext: str) -> tuple[Path, Path]:
    key, csr, cert, extfile = (d / f"{name}-key.pem", d / f"{name}.csr", d / f"{name}.pem",
                               d / f"{name}.ext")
    extfile.write_text(ext + "\n")
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
             "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(extfile))
    return cert, key


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    d = tmp_path_factory.mktemp("certs")
    ca, rogue = _ca(d, "ca"), _ca(d, "rogue-ca")
    return {
        "ca": ca,
        "server": _signed(d, "server", ca, "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                                           "extendedKeyUsage=serverAuth"),
        "client": _signed(d, "client", ca, "extendedKeyUsage=clientAuth"),
        "rogue": _signed(d, "rogue", rogue, "extendedKeyUsage=clientAuth"),
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Berthd:
    def __init__(self, root: Path, *flags: str) -> None:
        self.root, self.port = root, _free_port()
        self.sock = root / "berthd.sock"
        (root / "daemon.json").write_text("{}")
        self.log = root / "berthd.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "berth.engine.daemon", "-H", f"unix://{self.sock}",
                 "-H", f"tcp://127.0.0.1:{self.port}", "--data-root", str(root / "data"),
                 "--exec-root", str(root / "exec"), "--pidfile", str(root / "berthd.pid"),
                 "--config-file", str(root / "daemon.json"), *flags],
                stdout=log, stderr=log, start_new_session=True)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"berthd exited:\n{self.log.read_text()}")
            if "Daemon has completed initialization" in self.log.read_text():
                return
            time.sleep(0.05)
        raise AssertionError(f"berthd did not start:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture()
def start(tmp_path: Path) -> Iterator[object]:
    started: list[_Berthd] = []

    def _start(*flags: str, ready: bool = True) -> _Berthd:
        root = tmp_path / f"d{len(started)}"
        root.mkdir()
        d = _Berthd(root, *flags)
        started.append(d)
        if ready:
            d.wait_ready()
        return d

    yield _start
    for d in started:
        d.stop()


def _tls_flags(certs: dict[str, tuple[Path, Path]]) -> list[str]:
    return ["--tlsverify", "--tlscacert", str(certs["ca"][0]),
            "--tlscert", str(certs["server"][0]), "--tlskey", str(certs["server"][1])]


@pytest.fixture(scope="module")
def verifying(tmp_path_factory: pytest.TempPathFactory, certs) -> Iterator[_Berthd]:  # type: ignore[no-untyped-def]
    """One ``--tlsverify`` daemon for the tests that only talk to it."""
    d = _Berthd(tmp_path_factory.mktemp("tlsd"), *_tls_flags(certs))
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
    # plain HTTP on the TLS port gets no API answer either
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        _ping(d.port, None)
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
