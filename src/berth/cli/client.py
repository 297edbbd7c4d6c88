"""A small Engine API client: HTTP/1.1 over a unix socket (or TCP, maybe TLS), nothing more.

Why not ``http.client``: it costs ~34 ms of imports (the email parser) on every CLI start,
and it cannot hand a connection over after a ``101`` upgrade. This module imports only
``_socket`` (``socket`` drags in ``enum`` and ``selectors``); JSON goes through ``_json``
(``berth.cli._json``), imported when a body is encoded or decoded.

Wire spellings of Docker (PascalCase keys, query names) live in the commands; this module
knows HTTP framing, Docker's stream multiplexing and how to report an unreachable daemon.
TLS (``berth.cli.tls``, which imports ``ssl``) is loaded only for a connection that uses it.
"""

from __future__ import annotations

import _socket

from berth.errors import BerthError, Unavailable

TYPE_CHECKING = False  # typing costs ~5 ms at start-up; annotations are strings anyway
if TYPE_CHECKING:
    import ssl
    from collections.abc import Callable, Iterable, Iterator, Mapping
    from typing import Any, BinaryIO

    from berth.cli.tls import TLSOptions

DEFAULT_HOST = "unix:///run/berth/berth.sock"
DEFAULT_TLS_HOST = "tcp://localhost:2376"  # docker's default when TLS is on and no host given
API_VERSION = "1.41"
USER_AGENT = "Berth-Client/0.1.0 (linux)"
_CHUNK = 65536
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")


class DaemonUnreachable(Unavailable):
    """No daemon answers at the host; the message is Docker's, with berth's names."""

    def __init__(self, host: str) -> None:
        super().__init__(
            f"Cannot connect to the berth daemon at {host}. Is the berth daemon running?"
        )
        self.host = host


class ApiError(BerthError):
    """The daemon answered with an error status; ``message`` is its ``{"message": ...}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ProtocolError(BerthError):
    """The peer does not speak HTTP/1.1 as we expect."""


class ConnectFailed(Unavailable):
    """A connection was made but failed before an answer (TLS refused, closed at once); the
    message is the docker CLI's ``error during connect: Get "<url>": <why>``."""


class _Broken(Exception):
    """Raised inside a request, turned into ``ConnectFailed`` where the request is known."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


def resolve_host(flag: str | None, environ: Mapping[str, str], tls: bool = False) -> str:
    """``-H`` wins, then ``BERTH_HOST``, then the default socket (with TLS on, docker's
    ``tcp://localhost:2376``).

    ``DOCKER_HOST`` is deliberately ignored: it usually points at a real dockerd, and a berth
    command silently driving another engine would be a nasty surprise.
    """
    return flag or environ.get("BERTH_HOST") or (DEFAULT_TLS_HOST if tls else DEFAULT_HOST)


def parse_host(host: str) -> tuple[str, Any]:
    """``unix:///path`` → ("unix", "/path"); ``tcp://h:p`` → ("tcp", (h, p)); bare path ok."""
    if host.startswith("unix://"):
        return "unix", host[len("unix://") :]
    if host.startswith("/"):
        return "unix", host
    rest = host[len("tcp://") :] if host.startswith("tcp://") else host
    if host.startswith(("http://", "https://")):
        raise BerthError(f"unsupported host scheme: {host} (use tcp:// or unix://)")
    rest = rest.rstrip("/")
    name, sep, port = rest.rpartition(":")
    if not sep:
        name, port = rest, "2375"
    name = name.strip("[]") or "127.0.0.1"
    if not port.isdigit():
        raise BerthError(f"invalid bind address format: {host}")
    return "tcp", (name, int(port))


def quote(text: str, safe: bytes = b"") -> str:
    """Percent-encoding as Go's ``url.QueryEscape`` does it (space → ``+``)."""
    out = []
    for byte in text.encode():
        if byte in _SAFE or byte in safe:
            out.append(chr(byte))
        elif byte == 0x20 and not safe:
            out.append("+")
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


def encode_query(query: Mapping[str, Any] | None) -> str:
    """Keys sorted, as Go's ``url.Values.Encode``; lists repeat the key; None is skipped."""
    if not query:
        return ""
    parts = []
    for key in sorted(query):
        value = query[key]
        if value is None:
            continue
        values = value if isinstance(value, list | tuple) else [value]
        for item in values:
            if isinstance(item, bool):
                item = "1" if item else "0"
            parts.append(f"{quote(key)}={quote(str(item))}")
    return "?" + "&".join(parts) if parts else ""


def quote_path(path: str) -> str:
    """Path escaping that leaves ``/`` and ``:`` alone, so ``/images/me/bb:1.0`` goes as is."""
    return quote(path, safe=b"/:@+,;=!$'()*")


def go_json(value: Any, indent: int | None = None, *, escape_html: bool = True) -> str:
    """JSON as Go's encoder writes it: compact, UTF-8, ``<``, ``>``, ``&`` escaped.

    ``escape_html=False`` is the docker CLI's own output (``inspect``, ``{{json .}}``), which
    switches that escaping off.
    """
    from berth.cli import _json  # json's C core without the ``re``/``enum`` imports

    sep = (",", ": ") if indent else (",", ":")
    text = _json.dumps(value, separators=sep, indent=indent)
    if escape_html:
        text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


class Connection:
    """One socket with a read buffer; knows nothing of HTTP beyond lines and byte counts."""

    def __init__(self, sock: _socket.socket, tls: bool = False) -> None:
        self.sock = sock
        self.tls = tls  # an ``ssl.SSLSocket``
        self.buf = bytearray()
        self.eof = False

    def _fill(self) -> bool:
        try:
            data = self.sock.recv(_CHUNK)
        except OSError as err:
            if not (self.tls and _closed_by_peer(err)):
                raise
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def read_line(self) -> bytes:
        while True:
            idx = self.buf.find(b"\n")
            if idx >= 0:
                line = bytes(self.buf[: idx + 1])
                del self.buf[: idx + 1]
                return line
            if not self._fill():
                line = bytes(self.buf)
                self.buf.clear()
                return line

    def read_exact(self, count: int) -> bytes:
        while len(self.buf) < count:
            if not self._fill():
                raise ProtocolError("connection closed before the end of the body")
        data = bytes(self.buf[:count])
        del self.buf[:count]
        return data

    def read_some(self, limit: int = _CHUNK) -> bytes:
        """Whatever is buffered, else one recv; b"" at end of stream."""
        if not self.buf and not self._fill():
            return b""
        data = bytes(self.buf[:limit])
        del self.buf[:limit]
        return data

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close_write(self) -> None:
        if self.tls:
            self._send_close_notify()
            return
        try:
            self.sock.shutdown(_socket.SHUT_WR)
        except OSError:
            pass

    def _send_close_notify(self) -> None:
        """TLS's half-close (what Go's ``CloseWrite`` does): send close_notify, keep reading.
        ``SSLSocket.shutdown`` would drop the TLS layer instead, and a blocking ``unwrap``
        would wait for the daemon's close_notify; a non-blocking ``unwrap`` sends ours, then
        stops at "want read" with the TLS layer still in place for the rest of the output."""
        import select
        import ssl

        sock = self.sock
        timeout = sock.gettimeout()
        sock.setblocking(False)
        try:
            while True:
                try:
                    sock.unwrap()  # type: ignore[attr-defined]
                    return
                except ssl.SSLWantWriteError:  # the send buffer is full: wait, then again
                    select.select([], [sock], [], timeout)
                except ssl.SSLWantReadError:  # ours is sent; the daemon's comes at the end
                    return
        except OSError:
            pass
        finally:
            sock.settimeout(timeout)

    def pending(self) -> bool:
        """Decrypted bytes that TLS holds and ``select`` cannot see."""
        return bool(self.tls and self.sock.pending())  # type: ignore[attr-defined]

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()


class Response:
    """Status and headers are read; the body is read on demand (it may be an endless stream)."""

    def __init__(
        self, conn: Connection, status: int, reason: str, headers: dict[str, str],
        has_body: bool, release: Callable[[Connection], None] | None,
    ) -> None:
        self.conn = conn
        self.status = status
        self.reason = reason
        self.headers = headers
        self._release = release
        self._done = not has_body
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length = headers.get("content-length")
        self._remaining = int(length) if length is not None and not self._chunked else -1
        if self._remaining == 0:
            self._done = True
        if self._done:
            self._finish()

    def _finish(self) -> None:
        self._done = True
        release, self._release = self._release, None
        if release is not None and self.headers.get("connection", "").lower() != "close":
            release(self.conn)

    def iter_raw(self) -> Iterator[bytes]:
        """The body as it arrives, de-chunked; ends with the body."""
        conn = self.conn
        while not self._done:
            if self._chunked:
                line = conn.read_line()
                if not line:
                    raise ProtocolError("connection closed inside a chunked body")
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while conn.read_line().strip():  # trailers, then the blank line
                        pass
                    self._finish()
                    return
                data = conn.read_exact(size)
                conn.read_exact(2)
                yield data
            elif self._remaining >= 0:
                data = conn.read_some(min(self._remaining, _CHUNK))
                if not data:
                    raise ProtocolError("connection closed before the end of the body")
                self._remaining -= len(data)
                if self._remaining == 0:
                    self._finish()
                yield data
            else:
                data = conn.read_some()
                if not data:
                    self._done = True
                    conn.close()
                    return
                yield data

    def read(self) -> bytes:
        return b"".join(self.iter_raw())

    def json(self) -> Any:
        from berth.cli import _json

        data = self.read()
        return _json.loads(data) if data.strip() else None

    def iter_json(self) -> Iterator[Any]:
        """A stream of JSON documents one per line (events, progress, build output)."""
        from berth.cli import _json

        pending = b""
        for data in self.iter_raw():
            pending += data
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if line.strip():
                    yield _json.loads(line)
        if pending.strip():
            # Some daemons concatenate documents without newlines; decode them one by one.
            import json

            decoder = json.JSONDecoder()
            text = pending.decode().strip()
            while text:
                obj, end = decoder.raw_decode(text)
                yield obj
                text = text[end:].lstrip()

    def close(self) -> None:
        if not self._done:
            self._done = True
            self._release = None
            self.conn.close()


def error_message(status: int, body: bytes) -> str:
    """The daemon's ``{"message": ...}``, or the raw body when it is not JSON."""
    import json

    text = body.decode("utf-8", "replace").strip()
    try:
        doc = json.loads(text)
    except ValueError:
        return text or f"status {status}"
    if isinstance(doc, dict) and isinstance(doc.get("message"), str):
        return str(doc["message"])
    return text


class Client:
    """Engine API client. One idle keep-alive connection is reused; busy ones are not."""

    def __init__(self, host: str = DEFAULT_HOST, version: str | None = API_VERSION,
                 ping: bool = True, timeout: float | None = None,
                 tls: TLSOptions | None = None) -> None:
        self.host = host
        self.scheme, self.address = parse_host(host)
        self._tls = tls if self.scheme == "tcp" else None  # unix sockets never use TLS
        self._tls_context: ssl.SSLContext | None = None
        self.version = version
        self._idle: Connection | None = None
        self._opened: list[Connection] = []  # closed with the client, whatever their state
        self._pinged = not ping
        self._timeout = timeout

    # -- connections --------------------------------------------------------------------
    def _connect(self) -> Connection:
        if self._tls is not None and self._tls_context is None:
            self._tls_context = self._make_tls_context()  # bad files fail before connecting
        try:
            if self.scheme == "unix":
                sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
                sock.settimeout(self._timeout)
                try:
                    sock.connect(self.address)
                except OSError:
                    sock.close()
                    raise
            else:
                sock = self._connect_tcp()
        except OSError as err:
            raise DaemonUnreachable(self._display_host()) from err
        if self._tls is not None:
            sock = self._handshake(sock)
        conn = Connection(sock, tls=self._tls is not None)
        self._opened.append(conn)
        return conn

    def _connect_tcp(self) -> _socket.socket:
        name, port = self.address
        last: OSError | None = None
        for family, kind, proto, _canon, addr in _socket.getaddrinfo(
            name, port, 0, _socket.SOCK_STREAM
        ):
            sock = _socket.socket(family, kind, proto)
            sock.settimeout(self._timeout)
            try:
                sock.connect(addr)
                sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
                return sock
            except OSError as err:
                sock.close()
                last = err
        raise last or OSError(f"cannot resolve {name}")

    def _make_tls_context(self) -> ssl.SSLContext:
        from berth.cli import tls

        assert self._tls is not None
        try:
            return tls.client_context(self._tls)
        except tls.TLSSetupError as err:
            raise BerthError(err.message) from err

    def _handshake(self, sock: _socket.socket) -> Any:
        from berth.cli import tls

        assert self._tls_context is not None
        try:
            return tls.wrap(sock, self._tls_context, self.address[0])
        except OSError as err:
            sock.close()
            raise _Broken(tls.describe(err)) from err

    def _display_host(self) -> str:
        if self.scheme == "tcp":
            name, port = self.address
            return f"tcp://{f'[{name}]' if ':' in name else name}:{port}"
        return self.host

    def _url(self, target: str) -> str:
        """The request's URL as Go prints it in docker's ``error during connect``."""
        if self.scheme == "unix":
            return "http://" + quote(self.address, safe=b"") + target
        scheme = "https" if self._tls is not None else "http"
        return f"{scheme}://{self._display_host()[len('tcp://'):]}{target}"

    def _release(self, conn: Connection) -> None:
        if self._idle is None:
            self._idle = conn
        else:
            conn.close()

    def _take(self) -> Connection:
        conn, self._idle = self._idle, None
        return conn if conn is not None else self._connect()

    def close(self) -> None:
        """Close every connection this client opened (streams left half-read included)."""
        self._idle = None
        for conn in self._opened:
            conn.close()
        self._opened.clear()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests -----------------------------------------------------------------------
    def _head_block(self, method: str, target: str, headers: Mapping[str, str]) -> bytes:
        host = "api.moby.localhost" if self.scheme == "unix" else "{}:{}".format(*self.address)
        lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", f"User-Agent: {USER_AGENT}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _read_head(self, conn: Connection) -> tuple[int, str, dict[str, str]]:
        line = conn.read_line()
        if not line:
            raise ProtocolError("the daemon closed the connection without answering")
        parts = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise ProtocolError(f"malformed status line: {line!r}")
        headers: dict[str, str] = {}
        if parts[0] == "HTTP/1.0":  # no keep-alive: the peer closes after this answer
            headers.setdefault("connection", "close")
        while True:
            raw = conn.read_line()
            text = raw.decode("latin-1").rstrip("\r\n")
            if not text:
                break
            key, _, value = text.partition(":")
            headers[key.strip().lower()] = value.strip()
        return int(parts[1]), parts[2] if len(parts) > 2 else "", headers

    def ping(self) -> dict[str, str]:
        """``HEAD /_ping`` as the docker CLI sends before its first request."""
        resp = self._send("HEAD", "/_ping", versioned=False)
        self._pinged = True
        server = resp.headers.get("api-version")
        if server and self.version and _version_tuple(server) < _version_tuple(self.version):
            self.version = server
        return resp.headers

    def _ensure_pinged(self) -> None:
        if self._pinged:
            return
        try:
            self.ping()
        except ConnectFailed:
            # as the docker CLI: a failed ping is not the error to show; the request that
            # follows fails the same way and names itself
            self._pinged = True

    def _target(self, path: str, query: Mapping[str, Any] | None, versioned: bool) -> str:
        prefix = f"/v{self.version}" if versioned and self.version else ""
        return prefix + quote_path(path) + encode_query(query)

    def _send(self, method: str, path: str, query: Mapping[str, Any] | None = None,
              body: bytes | None = None, stream: Iterable[bytes] | BinaryIO | None = None,
              headers: Mapping[str, str] | None = None, versioned: bool = True,
              upgrade: bool = False) -> Response:
        hdrs = dict(headers or {})
        if stream is not None:
            hdrs.setdefault("Transfer-Encoding", "chunked")
        elif body is not None or method in ("POST", "PUT"):
            hdrs = {"Content-Length": str(len(body or b"")), **hdrs}
        if upgrade:
            hdrs.update({"Connection": "Upgrade", "Upgrade": "tcp"})
            hdrs.setdefault("Content-Type", "text/plain")
        target = self._target(path, query, versioned)
        try:
            return self._exchange(method, target, hdrs, body, stream, upgrade)
        except _Broken as err:
            raise ConnectFailed(f'error during connect: {method.capitalize()} '
                                f'"{self._url(target)}": {err.why}') from err

    def _exchange(self, method: str, target: str, hdrs: dict[str, str], body: bytes | None,
                  stream: Iterable[bytes] | BinaryIO | None, upgrade: bool) -> Response:
        conn = self._connect() if upgrade else self._take()
        try:
            head = self._head_block(method, target, hdrs)
            if stream is not None:
                conn.sendall(head)
                for piece in _pieces(stream):
                    if piece:
                        conn.sendall(b"%x\r\n%b\r\n" % (len(piece), piece))
                conn.sendall(b"0\r\n\r\n")
            else:
                conn.sendall(head + (body or b""))
            status, reason, rhdrs = self._read_head(conn)
        except OSError as err:
            conn.close()
            if conn.tls:  # the daemon refused us after the handshake (TLS 1.3 client certs)
                from berth.cli.tls import describe

                raise _Broken(describe(err)) from err
            raise DaemonUnreachable(self._display_host()) from err
        except ProtocolError as err:
            conn.close()
            if not conn.buf and conn.eof and self.scheme == "tcp":
                raise _Broken("EOF") from err  # closed without a word: a TLS-only daemon?
            raise
        has_body = method != "HEAD" and status not in (101, 204, 304)
        release = None if upgrade else self._release
        return Response(conn, status, reason, rhdrs, has_body, release)

    def request(self, method: str, path: str, query: Mapping[str, Any] | None = None,
                body: Any = None, json: Any = None,
                stream: Iterable[bytes] | BinaryIO | None = None,
                headers: Mapping[str, str] | None = None, ok: Iterable[int] = ()) -> Response:
        """Send one request; raise ``ApiError`` for a status ≥ 400 (unless listed in ``ok``)."""
        self._ensure_pinged()
        hdrs = dict(headers or {})
        if json is not None:
            body = (go_json(json) + "\n").encode()
            hdrs.setdefault("Content-Type", "application/json")
        resp = self._send(method, path, query, body, stream, hdrs)
        if resp.status >= 400 and resp.status not in ok:
            raise ApiError(resp.status, error_message(resp.status, resp.read()))
        return resp

    def get_json(self, path: str, query: Mapping[str, Any] | None = None) -> Any:
        return self.request("GET", path, query).json()

    def post_json(self, path: str, query: Mapping[str, Any] | None = None, json: Any = None,
                  headers: Mapping[str, str] | None = None) -> Any:
        return self.request("POST", path, query, json=json, headers=headers).json()

    def hijack(self, path: str, query: Mapping[str, Any] | None = None,
               json: Any = None) -> Hijacked:
        """POST with ``Upgrade: tcp``; after ``101`` the socket is a raw bidirectional pipe."""
        self._ensure_pinged()
        body = None
        hdrs: dict[str, str] = {}
        if json is not None:
            body = (go_json(json) + "\n").encode()
            hdrs["Content-Type"] = "application/json"
        resp = self._send("POST", path, query, body, None, hdrs, upgrade=True)
        if resp.status >= 400:
            resp._done = False
            resp._remaining = int(resp.headers.get("content-length", "-1"))
            raise ApiError(resp.status, error_message(resp.status, resp.read()))
        if resp.status not in (101, 200):
            resp.conn.close()
            raise ProtocolError(f"expected 101 from {path}, got {resp.status}")
        return Hijacked(resp.conn)


class Hijacked:
    """The raw stream after an upgrade: bytes the daemon already sent stay in the buffer."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def recv(self, limit: int = _CHUNK) -> bytes:
        return self.conn.read_some(limit)

    def send(self, data: bytes) -> None:
        self.conn.sendall(data)

    def close_write(self) -> None:
        self.conn.close_write()

    def fileno(self) -> int:
        return self.conn.fileno()

    def buffered(self) -> bool:
        return bool(self.conn.buf) or self.conn.pending()

    def close(self) -> None:
        self.conn.close()


def _closed_by_peer(err: OSError) -> bool:
    """The daemon's close_notify after ours: the end of the stream, not a failure."""
    import ssl

    return isinstance(err, ssl.SSLZeroReturnError)


def _pieces(stream: Iterable[bytes] | BinaryIO) -> Iterator[bytes]:
    if hasattr(stream, "read"):
        read = stream.read
        while True:
            data = read(_CHUNK)
            if not data:
                return
            yield data
    else:
        yield from stream


def _version_tuple(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in text.split("."))
    except ValueError:
        return (0,)
