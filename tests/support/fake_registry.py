"""A registry that holds nothing and writes down every request: for client request sequences.

``FakeRegistry(mode)`` answers on 127.0.0.1 like a registry whose answers are fixed:

- ``auth``: every endpoint wants ``Authorization: Bearer <TOKEN>`` and challenges with
  ``WWW-Authenticate: Bearer realm=".../token",service="<SERVICE>"``; ``/token`` issues the token
  (as both ``token`` and ``access_token``) for any scope. No manifests exist; every blob exists
  (HEAD 200); manifest PUTs are accepted; upload POSTs are denied.
- ``index``: no auth; every tag is a manifest list whose entries are ``linux/arm64/v8`` and
  ``linux/arm/v7`` only.

``requests`` lists what arrived, as ``Request`` records, in order.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import urllib.parse
from dataclasses import dataclass, field

from tests.support.loopback_http import LoopbackHTTP

TOKEN = "fake-registry-token"
SERVICE = "fake-registry"
MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_LIST_V2 = "application/vnd.docker.distribution.manifest.list.v2+json"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _documents() -> tuple[bytes, bytes]:
    """(an empty amd64 image manifest, a list that names it for arm platforms only)."""
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": MANIFEST_V2,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "size": len(config), "digest": _digest(config)},
        "layers": []}).encode()
    entry = {"mediaType": MANIFEST_V2, "size": len(manifest), "digest": _digest(manifest)}
    index = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST_LIST_V2, "manifests": [
        {**entry, "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
        {**entry, "platform": {"architecture": "arm", "os": "linux", "variant": "v7"}},
    ]}).encode()
    return manifest, index


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: str  # percent-decoded, in the order sent
    headers: dict[str, str]

    @property
    def line(self) -> str:
        return f"{self.method} {self.path}" + (f"?{self.query}" if self.query else "")


@dataclass
class FakeRegistry:
    mode: str = "auth"
    requests: list[Request] = field(default_factory=list)
    port: int = 0
    _server: LoopbackHTTP | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def index_digest(self) -> str:
        return _digest(_documents()[1])

    def lines(self) -> list[str]:
        return [r.line for r in self.requests]

    def start(self) -> None:
        owner = self
        _, index = _documents()

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, status: int, body: bytes = b"",
                        content_type: str = "application/json",
                        headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Docker-Distribution-API-Version", "registry/2.0")
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _error(self, status: int, code: str, message: str,
                       headers: dict[str, str] | None = None) -> None:
                body = json.dumps({"errors": [{"code": code, "message": message}]}).encode()
                self._answer(status, body, headers=headers)

            def _handle(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                owner.requests.append(Request(self.command, url.path,
                                              urllib.parse.unquote(url.query),
                                              dict(self.headers.items())))
                body = b""
                if self.headers.get("Content-Length"):
                    body = self.rfile.read(int(self.headers["Content-Length"]))
                if url.path == "/token":
                    token = json.dumps({"token": TOKEN, "access_token": TOKEN,
                                        "expires_in": 300}).encode()
                    return self._answer(200, token)
                if owner.mode == "auth" and \
                        self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    challenge = (f'Bearer realm="http://{owner.host}/token",'
                                 f'service="{SERVICE}"')
                    return self._error(401, "UNAUTHORIZED", "authentication required",
                                       {"WWW-Authenticate": challenge})
                if url.path == "/v2/":
                    return self._answer(200, b"{}")
                if "/manifests/" in url.path and self.command == "PUT":
                    return self._answer(201, headers={"Docker-Content-Digest": _digest(body)})
                if "/manifests/" in url.path and owner.mode == "index":
                    return self._answer(200, index, MANIFEST_LIST_V2,
                                        {"Docker-Content-Digest": _digest(index)})
                if "/blobs/" in url.path and self.command == "HEAD":
                    return self._answer(200, content_type="application/octet-stream",
                                        headers={"Docker-Content-Digest":
                                                 url.path.rsplit("/", 1)[1]})
                if self.command == "POST":
                    return self._error(403, "DENIED",
                                       "requested access to the resource is denied")
                return self._error(404, "MANIFEST_UNKNOWN", "manifest unknown")

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = _handle  # noqa: N815

        self._server = LoopbackHTTP(Handler)
        self.port = self._server.port

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
