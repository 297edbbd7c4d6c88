"""Certificates made with the ``openssl`` CLI, and a berthd serving TCP on 127.0.0.1 (with TLS
when given the flags), for the daemon's and the CLI's TLS tests. Nothing leaves loopback."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

HAVE_OPENSSL = shutil.which("openssl") is not None

Pair = tuple[Path, Path]  # (certificate, key)


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)


def _ca(d: Path, name: str) -> Pair:
    key, cert = d / f"{name}-key.pem", d / f"{name}.pem"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
             "-subj", f"/CN={name}")
    return cert, key


def _signed(d: Path, name: str, ca: Pair, ext: str) -> Pair:
    key, csr, cert, extfile = (d / f"{name}-key.pem", d / f"{name}.csr", d / f"{name}.pem",
                               d / f"{name}.ext")
    extfile.write_text(ext + "\n")
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
             "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(extfile))
    return cert, key


def make_certs(d: Path) -> dict[str, Pair]:
    """A CA with a server (127.0.0.1, localhost) and a client certificate; a second, rogue CA
    with a client certificate of its own."""
    ca, rogue = _ca(d, "ca"), _ca(d, "rogue-ca")
    return {
        "ca": ca,
        "rogue-ca": rogue,
        "server": _signed(d, "server", ca, "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                                           "extendedKeyUsage=serverAuth"),
        "client": _signed(d, "client", ca, "extendedKeyUsage=clientAuth"),
        "rogue": _signed(d, "rogue", rogue, "extendedKeyUsage=clientAuth"),
    }


def cert_dir(d: Path, certs: dict[str, Pair], ca: str = "ca", client: str = "client") -> Path:
    """A directory laid out as ``~/.berth`` (``~/.docker``): ca.pem, cert.pem, key.pem."""
    d.mkdir(parents=True, exist_ok=True)
    shutil.copy(certs[ca][0], d / "ca.pem")
    shutil.copy(certs[client][0], d / "cert.pem")
    shutil.copy(certs[client][1], d / "key.pem")
    return d


def server_flags(certs: dict[str, Pair]) -> list[str]:
    return ["--tlsverify", "--tlscacert", str(certs["ca"][0]),
            "--tlscert", str(certs["server"][0]), "--tlskey", str(certs["server"][1])]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TCPDaemon:
    """A berthd on a unix socket and ``tcp://127.0.0.1:<free port>``."""

    def __init__(self, root: Path, *flags: str) -> None:
        self.root, self.port = root, free_port()
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

    @property
    def tcp(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    @property
    def unix(self) -> str:
        return f"unix://{self.sock}"

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
