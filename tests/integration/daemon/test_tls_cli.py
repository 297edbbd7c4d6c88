"""The berth CLI against a ``--tlsverify`` berthd on 127.0.0.1: docker's ``--tls*`` flags and
``BERTH_TLS_VERIFY``/``BERTH_CERT_PATH``; requests, and hijacked attach streams (with stdin's
half-close), over TLS; and the docker CLI's wording when TLS is refused, both from berth and,
where it is installed, from the real docker CLI against the same daemon."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import _tool
from tests.support.tls import HAVE_OPENSSL, Pair, TCPDaemon, cert_dir, make_certs, server_flags

pytestmark = pytest.mark.skipif(not HAVE_OPENSSL, reason="needs the openssl CLI")

DOCKER = shutil.which("docker") or "/usr/local/bin/docker"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Pair]:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def tlsd(tmp_path_factory: pytest.TempPathFactory, certs, test_images) -> Iterator[TCPDaemon]:  # type: ignore[no-untyped-def]
    d = TCPDaemon(tmp_path_factory.mktemp("tlscli"), *server_flags(certs))
    try:
        d.wait_ready()
        subprocess.run([*_tool("berth"), "-H", d.unix, "load", "-i",
                        str(test_images.busybox_docker_tar)], check=True, capture_output=True)
        yield d
    finally:
        ids = subprocess.run([*_tool("berth"), "-H", d.unix, "ps", "-aq"], capture_output=True,
                             text=True).stdout.split()
        if ids:
            subprocess.run([*_tool("berth"), "-H", d.unix, "rm", "-f", *ids],
                           capture_output=True, timeout=60)
        d.stop()


@pytest.fixture()
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    return h


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("BERTH_", "DOCKER_"))}
    env.update(HOME=str(home), **extra)
    return env


def berth(d: TCPDaemon, home: Path, *args: str, input: bytes | None = None,
          env: dict[str, str] | None = None, host: str | None = None
          ) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*_tool("berth"), "-H", host or d.tcp, *args], input=input,
                          capture_output=True, timeout=60, env=env or _env(home))


def _verify(certs: dict[str, Pair], ca: str = "ca", client: str | None = "client") -> list[str]:
    flags = ["--tlsverify", "--tlscacert", str(certs[ca][0])]
    if client is not None:
        flags += ["--tlscert", str(certs[client][0]), "--tlskey", str(certs[client][1])]
    return flags


def _url(d: TCPDaemon, scheme: str = "https") -> str:
    return f'Get "{scheme}://127.0.0.1:{d.port}/v1.41/containers/json"'


# -- working over TLS -------------------------------------------------------------------------


def test_ps_and_run_over_tlsverify(tlsd, certs, home) -> None:  # type: ignore[no-untyped-def]
    ps = berth(tlsd, home, *_verify(certs), "ps")
    assert ps.returncode == 0, ps.stderr
    assert ps.stdout.decode().startswith("CONTAINER ID")
    run = berth(tlsd, home, *_verify(certs), "run", "--rm", "busybox", "echo", "ok")
    assert (run.returncode, run.stdout, run.stderr) == (0, b"ok\n", b"")


def test_environment_and_default_cert_dir(tlsd, certs, home, tmp_path) -> None:  # type: ignore[no-untyped-def]
    elsewhere = cert_dir(tmp_path / "elsewhere", certs)
    env = _env(home, BERTH_TLS_VERIFY="1", BERTH_CERT_PATH=str(elsewhere))
    assert berth(tlsd, home, "ps", "-q", env=env).returncode == 0
    cert_dir(home / ".berth", certs)  # docker's ~/.docker, berth's ~/.berth
    res = berth(tlsd, home, "--tlsverify", "ps", "-q")
    assert (res.returncode, res.stderr) == (0, b"")
    # unix sockets ignore TLS settings, as docker's CLI does
    res = berth(tlsd, home, "ps", "-q", env=_env(home, BERTH_TLS_VERIFY="1"), host=tlsd.unix)
    assert res.returncode == 0, res.stderr


def test_tls_without_verify_trusts_any_server(tlsd, certs, home, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # --tls presents the client certificate but does not check the server's (the CA given
    # here is not the one that signed it)
    d = cert_dir(tmp_path / "c", certs, ca="rogue-ca")
    res = berth(tlsd, home, "--tls", "ps", "-q", env=_env(home, BERTH_CERT_PATH=str(d)))
    assert (res.returncode, res.stderr) == (0, b"")
    res = berth(tlsd, home, "--tlsverify", "ps", "-q", env=_env(home, BERTH_CERT_PATH=str(d)))
    assert res.returncode == 1


def test_logs_follow_and_attach_stream_over_tls(tlsd, certs, home) -> None:  # type: ignore[no-untyped-def]
    tls = _verify(certs)
    script = "sleep 1; for i in 1 2 3; do echo line $i; sleep 0.2; done; echo err >&2; exit 3"
    cid = berth(tlsd, home, *tls, "run", "-d", "busybox", "sh", "-c", script).stdout.decode()
    try:
        attached = berth(tlsd, home, *tls, "attach", cid.strip())
        assert attached.returncode == 3
        assert attached.stdout == b"line 1\nline 2\nline 3\n"
        assert attached.stderr == b"err\n"
        logs = berth(tlsd, home, *tls, "logs", "-f", cid.strip())
        assert (logs.returncode, logs.stdout, logs.stderr) == (
            0, b"line 1\nline 2\nline 3\n", b"err\n")
    finally:
        berth(tlsd, home, *tls, "rm", "-f", cid.strip())


def test_stdin_half_close_over_tls_keeps_the_output(tlsd, certs, home) -> None:  # type: ignore[no-untyped-def]
    """``run -i``: at the end of stdin the CLI sends close_notify (TLS's half-close) and still
    reads what the container writes afterwards."""
    tls = _verify(certs)
    res = berth(tlsd, home, *tls, "run", "--rm", "-i", "busybox", "sh", "-c",
                "cat; sleep 0.2; echo after-eof", input=b"a\nb\n")
    assert (res.returncode, res.stdout, res.stderr) == (0, b"a\nb\nafter-eof\n", b"")
    big = berth(tlsd, home, *tls, "run", "--rm", "-i", "busybox", "wc", "-c",
                input=b"\0" * (3 << 20))
    assert (big.returncode, big.stdout.strip()) == (0, str(3 << 20).encode())


# -- refused, in the docker CLI's words ---------------------------------------------------------


def test_plain_http_to_a_tls_daemon(tlsd, home) -> None:  # type: ignore[no-untyped-def]
    res = berth(tlsd, home, "ps")
    assert (res.returncode, res.stderr.decode()) == (
        1, "Error response from daemon: Client sent an HTTP request to an HTTPS server.\n")


def test_refused_without_a_client_certificate(tlsd, certs, home) -> None:  # type: ignore[no-untyped-def]
    res = berth(tlsd, home, *_verify(certs, client=None), "ps")
    assert (res.returncode, res.stderr.decode()) == (
        1, f"error during connect: {_url(tlsd)}: remote error: tls: certificate required\n")


def test_refused_with_a_client_certificate_of_another_ca(tlsd, certs, home) -> None:  # type: ignore[no-untyped-def]
    res = berth(tlsd, home, *_verify(certs, client="rogue"), "ps")
    assert (res.returncode, res.stderr.decode()) == (
        1, f"error during connect: {_url(tlsd)}: remote error: tls: unknown certificate "
           "authority\n")


def test_server_signed_by_another_ca(tlsd, certs, home) -> None:  # type: ignore[no-untyped-def]
    res = berth(tlsd, home, *_verify(certs, ca="rogue-ca"), "ps")
    assert (res.returncode, res.stderr.decode()) == (
        1, f"error during connect: {_url(tlsd)}: tls: failed to verify certificate: x509: "
           "certificate signed by unknown authority\n")


def test_missing_default_ca(tlsd, home) -> None:  # type: ignore[no-untyped-def]
    res = berth(tlsd, home, "--tlsverify", "ps")
    assert (res.returncode, res.stderr.decode()) == (
        1, "Failed to initialize: unable to resolve berth endpoint: "
           f"open {home}/.berth/ca.pem: no such file or directory\n")


@pytest.mark.compat
@pytest.mark.skipif(not os.access(DOCKER, os.X_OK), reason="needs the docker CLI")
@pytest.mark.parametrize("case", ["plain", "no-client-cert", "rogue-client", "rogue-ca", "ok"])
def test_docker_cli_says_the_same(tlsd, certs, home, case) -> None:  # type: ignore[no-untyped-def]
    flags = {"plain": [], "no-client-cert": _verify(certs, client=None),
             "rogue-client": _verify(certs, client="rogue"),
             "rogue-ca": _verify(certs, ca="rogue-ca"), "ok": _verify(certs)}[case]
    ours = berth(tlsd, home, *flags, "ps", "-q")
    theirs = subprocess.run([DOCKER, "-H", tlsd.tcp, *flags, "ps", "-q"], capture_output=True,
                            timeout=60, env=_env(home))

    def same(text: bytes) -> str:  # docker asks for its own newest API version
        # Go reports a TLS 1.3 alert from wherever it reads it first: the handshake or, at
        # random, its connection's read loop ("readLoopPeekFailLocked: ...")
        text_ = re.sub(r"/v1\.\d+/", "/v1.x/", text.decode()).replace("berth", "docker")
        return text_.replace("readLoopPeekFailLocked: ", "")

    assert ours.returncode == theirs.returncode
    assert same(ours.stderr) == same(theirs.stderr)
