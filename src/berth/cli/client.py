"""A small Engine API client: HTTP/1.1 over a unix socket (or TCP), nothing more.

Why not ``http.client``: it costs ~34 ms of imports (the email parser) on every CLI start,
and it cannot hand a connection over after a ``101`` upgrade. This module imports only
``_socket`` (``socket`` drags in ``enum`` and ``selectors``); JSON goes through ``_json``
(``berth.cli._json``), imported when a body is encoded or decoded.

Wire spellings of Docker (PascalCase keys, query names) live in the commands; this module
knows HTTP framing, Docker's stream multiplexing and how to report an unreachable daemon.
"""

from __future__ import annotations

import _socket

from berth.errors import BerthError, Unavailable

TYPE_CHECKING = False  # typing costs ~5 ms at start-up; annotations are strings anyway
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping
    from typing import Any, BinaryIO

DEFAULT_HOST = "unix:///run/berth/berth.sock"
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


def resolve_host(flag: str | None, environ: Mapping[str, str]) -> str:
    """``-H`` wins, then ``BERTH_HOST``, then the default socket.

    ``DOCKER_HOST`` is deliberately ignored: it usually points at a real dockerd, and a berth
    command silently driving another engine would be a nasty surprise.
    """
    return flag or environ.get("BERTH_HOST") or DEFAULT_HOST


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

    def __init__(self, sock: _socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.eof = False

    def _fill(self) -> bool:
        data = self.sock.recv(_CHUNK)
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
        try:
            self.sock.shutdown(_socket.SHUT_WR)
        except OSError:
            pass

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
                 ping: bool = True, timeout: float | None = None) -> None:
        self.host = host
        self.scheme, self.address = parse_host(host)
        self.version = version
        self._idle: Connection | None = None
        self._opened: list[Connection] = []  # closed with the client, whatever their state
        self._pinged = not ping
        self._timeout = timeout

    # -- connections --------------------------------------------------------------------
    def _connect(self) -> Connection:
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
            raise DaemonUnreachable(self.host) from err
        conn = Connection(sock)
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
            raise DaemonUnreachable(self.host) from err
        except ProtocolError:
            conn.close()
            raise
        has_body = method != "HEAD" and status not in (101, 204, 304)
        release = None if upgrade else self._release
        return Response(conn, status, reason, rhdrs, has_body, release)

    def request(self, method: str, path: str, query: Mapping[str, Any] | None = None,
                body: Any = None, json: Any = None,
                stream: Iterable[bytes] | BinaryIO | None = None,
                headers: Mapping[str, str] | None = None, ok: Iterable[int] = ()) -> Response:
        """Send one request; raise ``ApiError`` for a status ≥ 400 (unless listed in ``ok``)."""
        if not self._pinged:
            self.ping()
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
        if not self._pinged:
            self.ping()
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
        return bool(self.conn.buf)

    def close(self) -> None:
        self.conn.close()


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
