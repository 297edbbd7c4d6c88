"""One HTTP/1.1 exchange with a registry over ``http.client``, and its failures in Docker's words.

Connection-level failures become ``Unavailable`` with Go's wording (``Get "URL": dial tcp
HOST: connect: connection refused``), so a user sees what ``docker pull`` would print.

Proxies come from berthd's environment as dockerd takes them (``HTTPS_PROXY``, ``HTTP_PROXY``,
``NO_PROXY``, any case): HTTPS goes through a CONNECT tunnel, plain HTTP asks the proxy with
the absolute URL, and ``localhost`` and loopback addresses are never proxied (Go's rule).
"""

from __future__ import annotations

import errno
import http.client
import ipaddress
import json
import socket
import ssl
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import BinaryIO

from berth.errors import Unavailable

_SEND_BLOCK = 256 * 1024  # a streamed request body is read this much at a time (default 8 KiB)


@dataclass(frozen=True)
class Endpoint:
    scheme: str  # "https" or "http"
    host: str  # host[:port] as in the URL
    tls: ssl.SSLContext | None

    def url(self, target: str) -> str:
        return f"{self.scheme}://{self.host}{target}"

    @property
    def tls_verified(self) -> bool:
        return self.tls is not None and self.tls.verify_mode != ssl.CERT_NONE


class Response:
    """A response whose body is read as a stream; closing it closes the connection."""

    def __init__(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse,
                 sock: socket.socket | None = None) -> None:
        self._conn = conn
        self._resp = resp
        self._sock = sock
        self.status = resp.status
        self.reason = resp.reason

    def header(self, name: str) -> str:
        return self._resp.getheader(name) or ""

    @property
    def length(self) -> int | None:
        value = self.header("Content-Length")
        return int(value) if value.isdigit() else None

    def read(self, size: int = -1) -> bytes:
        return self._resp.read(size if size >= 0 else None)

    def read_all(self, limit: int = 1 << 20) -> bytes:
        """The body up to ``limit`` bytes (one more tells the caller it was longer); closes."""
        try:
            return self._resp.read(limit + 1)
        except (OSError, http.client.HTTPException):
            return b""
        finally:
            self.close()

    def close(self) -> None:
        self._resp.close()
        self._conn.close()

    def abort(self) -> None:
        """Cut the connection, from any thread: a read blocked on it returns at once."""
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # closed already


def _go_error(err: BaseException, host: str) -> str:
    """Go's net/http wording for what went wrong, as docker prints it."""
    if isinstance(err, ssl.SSLCertVerificationError):
        if err.verify_code in (18, 19, 20, 21):
            return "x509: certificate signed by unknown authority"
        if err.verify_code == 62:
            return f"x509: certificate is not valid for {host.rsplit(':', 1)[0]}"
        return f"x509: {err.verify_message}"
    if isinstance(err, ssl.SSLError):
        return "http: server gave HTTP response to HTTPS client" \
            if "WRONG_VERSION_NUMBER" in str(err) else f"tls: {err.reason or err}"
    if isinstance(err, socket.timeout | TimeoutError):
        return f"dial tcp {host}: i/o timeout"
    if isinstance(err, socket.gaierror):
        return f"dial tcp: lookup {host.rsplit(':', 1)[0]}: no such host"
    if isinstance(err, ConnectionRefusedError):
        return f"dial tcp {host}: connect: connection refused"
    if isinstance(err, OSError) and err.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return f"dial tcp {host}: connect: {err.strerror.lower() if err.strerror else err}"
    if isinstance(err, http.client.RemoteDisconnected | ConnectionResetError):
        return "EOF"
    return str(err) or type(err).__name__


def proxy_for(endpoint: Endpoint) -> tuple[str, int] | None:
    """The (host, port) of the proxy ``endpoint`` is reached through, if any."""
    proxies = urllib.request.getproxies_environment()
    url = proxies.get(endpoint.scheme)
    if not url:
        return None
    host = urllib.parse.urlsplit(f"//{endpoint.host}").hostname or ""
    if host == "localhost" or _is_loopback(host) or \
            urllib.request.proxy_bypass_environment(  # type: ignore[attr-defined]
                endpoint.host, proxies):
        return None
    parsed = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
    return parsed.hostname or "", parsed.port or (443 if parsed.scheme == "https" else 80)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def request(endpoint: Endpoint, method: str, target: str, headers: dict[str, str],
            body: bytes | BinaryIO | None, connect_timeout: float,
            read_timeout: float) -> Response:
    conn: http.client.HTTPConnection
    proxy = proxy_for(endpoint)
    path = target
    host, port = proxy if proxy is not None else (endpoint.host, None)
    if endpoint.scheme == "https":
        conn = http.client.HTTPSConnection(host, port, timeout=connect_timeout,
                                           context=endpoint.tls, blocksize=_SEND_BLOCK)
        if proxy is not None:
            conn.set_tunnel(endpoint.host)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=connect_timeout,
                                          blocksize=_SEND_BLOCK)
        if proxy is not None:
            path = endpoint.url(target)
    sent = {"User-Agent": "berth", **headers}
    if body is None and method in ("POST", "PUT", "PATCH"):
        sent.setdefault("Content-Length", "0")
    connected = False
    try:
        conn.connect()
        connected = True
        if conn.sock is not None:
            conn.sock.settimeout(read_timeout)
        conn.request(method, path, body=body, headers=sent)
        sock = conn.sock  # getresponse forgets it when the server will close the connection
        resp = conn.getresponse()
    except (OSError, http.client.HTTPException) as err:
        conn.close()
        where = f"{conn.host}:{conn.port}"
        text = _go_error(err, where)
        if proxy is not None and not connected:
            text = f"proxyconnect tcp: {text}"
        raise Unavailable(f'{method.title()} "{endpoint.url(target)}": {text}') from err
    return Response(conn, resp, sock)


def error_text(status: int, reason: str, body: bytes) -> str:
    """A registry's error body as docker's errcode prints it: ``manifest unknown: <message>``."""
    try:
        data = json.loads(body) if body else None
    except ValueError:
        data = None
    errors = data.get("errors") if isinstance(data, dict) else None
    if isinstance(errors, list) and errors:
        texts = []
        for item in errors:
            if not isinstance(item, dict):
                continue
            code = str(item.get("code") or "unknown").lower().replace("_", " ")
            message = str(item.get("message") or "")
            texts.append(f"{code}: {message}" if message else code)
        if texts:
            return texts[0] if len(texts) == 1 else "errors:\n" + "\n".join(texts)
    if status == 401:
        # Docker Hub's token server: {"details": "incorrect username or password"}
        details = data.get("details") if isinstance(data, dict) else None
        if not isinstance(details, str) or not details:
            details = "authentication required"
        return f"unauthorized: {details}"
    if status == 404:
        return "not found"
    return f"unexpected status code {status} {reason}".rstrip()
