"""A real registry for tests: Debian's ``docker-registry`` (distribution 2.8) on a loopback port.

``start_registry`` writes its YAML config under a temp dir and runs it open, with htpasswd basic
auth, behind TLS (``make_ca`` makes a CA and a server certificate for 127.0.0.1 with openssl), or
with token auth (``TokenServer``: a small HTTP token server signing RS256 JWTs with a key the
registry trusts through ``rootcertbundle``). Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tests.support.loopback_http import LoopbackHTTP

REGISTRY_BIN = "/usr/bin/docker-registry"
USER, PASSWORD = "berthuser", "s3cret-pass"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            text = log.read_text()[-2000:]
            if "address already in use" in text:
                raise _PortLost(text)
            raise RuntimeError(f"docker-registry exited: {text}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                pass
        except OSError:
            time.sleep(0.05)
            continue
        time.sleep(0.05)  # someone else's listener answers too: make sure ours is alive
        if proc.poll() is None:
            return
    raise RuntimeError(f"docker-registry did not listen: {log.read_text()[-2000:]}")


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@dataclass(frozen=True)
class TestCA:
    __test__ = False
    ca_cert: Path
    server_cert: Path
    server_key: Path


def make_ca(folder: Path) -> TestCA:
    """A CA and a server certificate for IP 127.0.0.1 signed by it."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = folder / "ca.key", folder / "ca.crt"
    key, csr, cert = folder / "server.key", folder / "server.csr", folder / "server.crt"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key),
             "-out", str(ca_cert), "-days", "2", "-subj", "/CN=berth test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
             "-subj", "/CN=127.0.0.1")
    ext = folder / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
             "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext))
    return TestCA(ca_cert, cert, key)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TokenServer:
    """Issues JWTs for any requested scope to one user (or anonymously for pull, if allowed)."""

    folder: Path
    username: str
    password: str
    service: str = "berth-test-registry"
    issuer: str = "berth-test-issuer"
    requests: list[dict[str, list[str]]] = field(default_factory=list)
    port: int = 0
    _server: LoopbackHTTP | None = None

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.key = self.folder / "token.key"
        self.cert = self.folder / "token.crt"
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(self.key),
                 "-out", str(self.cert), "-days", "2", "-subj", "/CN=berth token signer")
        der = subprocess.run(["openssl", "pkey", "-in", str(self.key), "-pubout",
                              "-outform", "DER"], check=True, capture_output=True).stdout
        # libtrust's key ID, which distribution matches against the JWT's "kid"
        encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
        self.kid = ":".join(encoded[i:i + 4] for i in range(0, len(encoded), 4))

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def sign(self, claims: dict[str, object]) -> str:
        header = {"typ": "JWT", "alg": "RS256", "kid": self.kid}
        signing_input = f"{_b64url(json.dumps(header).encode())}." \
                        f"{_b64url(json.dumps(claims).encode())}"
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)],
                             input=signing_input.encode(), check=True,
                             capture_output=True).stdout
        return f"{signing_input}.{_b64url(sig)}"

    def start(self) -> None:
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                owner.requests.append(query)
                header = self.headers.get("Authorization", "")
                user = ""
                if header.startswith("Basic "):
                    pair = base64.b64decode(header[6:]).decode()
                    user, _, password = pair.partition(":")
                    if (user, password) != (owner.username, owner.password):
                        body = b'{"details":"incorrect username or password"}'
                        self.send_response(401)
                        self.send_header("Content-Type", "application/json")
                        self.send_header("Content-Length", str(len(body)))
                        self.end_headers()
                        self.wfile.write(body)
                        return
                access = []
                for scope in query.get("scope", []):
                    kind, rest = scope.split(":", 1)
                    name, _, actions = rest.rpartition(":")
                    granted = actions.split(",") if user else \
                        [a for a in actions.split(",") if a == "pull"]
                    access.append({"type": kind, "name": name, "actions": granted})
                now = int(time.time())
                token = owner.sign({"iss": owner.issuer, "sub": user, "aud": owner.service,
                                    "exp": now + 300, "nbf": now - 10, "iat": now,
                                    "jti": secrets.token_hex(8), "access": access})
                body = json.dumps({"token": token, "expires_in": 300}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = LoopbackHTTP(Handler)
        self.port = self._server.port

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()


@dataclass
class Registry:
    root: Path
    port: int
    process: subprocess.Popen[bytes]
    scheme: str = "http"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def storage(self) -> Path:
        return self.root / "data"

    def blob_file(self, digest: str) -> Path:
        hexpart = digest.split(":", 1)[1]
        return (self.storage / "docker/registry/v2/blobs/sha256" / hexpart[:2] / hexpart
                / "data")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def htpasswd_line(user: str, password: str) -> str:
    import bcrypt

    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()
    return f"{user}:{hashed}\n"


def start_registry(root: Path, *, htpasswd: tuple[str, str] | None = None,
                   tls: TestCA | None = None, token: TokenServer | None = None) -> Registry:
    """Start one; a port another process took between choosing and binding means a retry."""
    for attempt in range(3):
        try:
            return _start_registry(root, htpasswd, tls, token)
        except _PortLost:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


class _PortLost(RuntimeError):
    pass


def _start_registry(root: Path, htpasswd: tuple[str, str] | None, tls: TestCA | None,
                    token: TokenServer | None) -> Registry:
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config: dict[str, object] = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(root / "data")},
                    "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": secrets.token_hex(16)},
    }
    http_conf = config["http"]
    assert isinstance(http_conf, dict)
    if tls is not None:
        http_conf["tls"] = {"certificate": str(tls.server_cert), "key": str(tls.server_key)}
    if htpasswd is not None:
        path = root / "htpasswd"
        path.write_text(htpasswd_line(*htpasswd))
        config["auth"] = {"htpasswd": {"realm": "berth-test", "path": str(path)}}
    elif token is not None:
        config["auth"] = {"token": {"realm": token.realm, "service": token.service,
                                    "issuer": token.issuer,
                                    "rootcertbundle": str(token.cert)}}
    (root / "config.yml").write_text(yaml.safe_dump(config))
    log = root / "registry.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([REGISTRY_BIN, "serve", str(root / "config.yml")],
                                stdout=out, stderr=subprocess.STDOUT,
                                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    try:
        _wait_port(port, proc, log)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return Registry(root, port, proc, "https" if tls else "http")
