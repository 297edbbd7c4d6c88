"""TLS for berthd's TCP listeners (dockerd's ``--tls``/``--tlsverify`` flags).

``--tls`` serves TCP hosts over TLS with the daemon's certificate; ``--tlsverify`` (which
implies ``--tls``) also requires every client to present a certificate signed by
``--tlscacert``. Unix sockets never use TLS: their file mode is their access control.
``TLSListener`` serves a TCP socket over TLS (why not asyncio's TLS transport: see there).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from berth.errors import InvalidArgument

log = logging.getLogger(__name__)

# dockerd's defaults: the files in ~/.docker of the user running the daemon.
DEFAULT_CERT_DIR = Path("~/.docker")


@dataclass(frozen=True)
class TLSSettings:
    enabled: bool = False
    verify: bool = False
    cacert: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    @property
    def active(self) -> bool:
        return self.enabled or self.verify


def _file(path: Path | None, default: str) -> Path:
    return path if path is not None else (DEFAULT_CERT_DIR / default).expanduser()


def server_context(settings: TLSSettings) -> ssl.SSLContext | None:
    """The SSL context for TCP listeners, or None when TLS is off.

    TLS 1.2 at least (dockerd's minimum); with ``verify`` a client without a certificate
    signed by the CA fails the handshake, before any HTTP is read."""
    if not settings.active:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    cert, key = _file(settings.cert, "cert.pem"), _file(settings.key, "key.pem")
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as err:
        raise InvalidArgument(f"Could not load X509 key pair ({cert}, {key}): {err}") from err
    if settings.verify:
        ca = _file(settings.cacert, "ca.pem")
        try:
            ctx.load_verify_locations(cafile=str(ca))
        except (OSError, ssl.SSLError) as err:
            raise InvalidArgument(f"Could not read CA certificate {ca}: {err}") from err
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


# -- serving a TCP listener over TLS ------------------------------------------------------------

# What Go's net/http answers plain HTTP on a TLS port (dockerd does the same), so that both
# CLIs say "Error response from daemon: Client sent an HTTP request to an HTTPS server."
_PLAIN_HTTP_ANSWER = (b"HTTP/1.0 400 Bad Request\r\n\r\n"
                      b"Client sent an HTTP request to an HTTPS server.\n")
_HTTP_STARTS = (b"GET /", b"HEAD ", b"POST ", b"PUT /", b"OPTIO")
_TLS_HANDSHAKE = 0x16  # the content type of the first TLS record
_HANDSHAKE_TIMEOUT = 60.0  # asyncio's default for TLS handshakes
_CHUNK = 65536

Serve = Callable[[socket.socket], Awaitable[object]]


class TLSListener:
    """Serves one listening TCP socket over TLS, half-closes included.

    asyncio's TLS transport closes the whole connection when the client sends close_notify,
    but ``docker run -i`` over TLS sends it when its stdin ends and then reads the rest of the
    output (Go keeps writing after the peer's close_notify). So TLS is terminated here, with
    an ``SSLObject`` over memory buffers, and each connection is relayed to one end of a unix
    socket pair whose other end ``serve`` hands to the HTTP server as a plain connection: a
    close_notify becomes a half-close there, which the hijacked attach streams already handle.
    A client that speaks plain HTTP gets Go's 400 answer.
    """

    def __init__(self, sock: socket.socket, ctx: ssl.SSLContext, serve: Serve) -> None:
        self._sock = sock
        self._ctx = ctx
        self._serve = serve
        self._accepting: asyncio.Task[None] | None = None
        self._relays: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._accepting = asyncio.get_running_loop().create_task(self._accept_loop())

    async def stop_accepting(self) -> None:
        if self._accepting is not None:
            self._accepting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._accepting
            self._accepting = None
        self._sock.close()

    async def close(self) -> None:
        """Stop accepting and end every relayed connection (call after the HTTP server has
        finished with them)."""
        await self.stop_accepting()
        for task in list(self._relays):
            task.cancel()
        await asyncio.gather(*self._relays, return_exceptions=True)

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _ = await loop.sock_accept(self._sock)
            except OSError as err:  # e.g. EMFILE: keep serving the connections we have
                log.warning("accepting a TLS connection failed: %s", err)
                await asyncio.sleep(0.1)
                continue
            task = loop.create_task(self._relay(conn))
            self._relays.add(task)
            task.add_done_callback(self._relays.discard)

    async def _relay(self, conn: socket.socket) -> None:
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        app: socket.socket | None = None
        try:
            link = await asyncio.wait_for(self._handshake(conn), _HANDSHAKE_TIMEOUT)
            if link is None:
                return
            app, plain = socket.socketpair()
            app.setblocking(False)
            await self._serve(plain)
            reader = asyncio.ensure_future(link.client_to_app(app))
            try:
                await link.app_to_client(app)  # until the HTTP server closes the connection
            finally:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
        except (OSError, TimeoutError, ssl.SSLError) as err:
            log.debug("TLS connection ended: %s", err)
        finally:
            if app is not None:
                app.close()
            conn.close()

    async def _handshake(self, conn: socket.socket) -> _Link | None:
        loop = asyncio.get_running_loop()
        first = b""
        while len(first) < 5:  # a record header, or enough to recognise an HTTP request
            data = await loop.sock_recv(conn, _CHUNK)
            if not data:
                return None
            first += data
            if first[0] == _TLS_HANDSHAKE:
                break
        if first[0] != _TLS_HANDSHAKE:
            if first.startswith(_HTTP_STARTS):
                await loop.sock_sendall(conn, _PLAIN_HTTP_ANSWER)
            return None
        link = _Link(conn, self._ctx)
        link.incoming.write(first)
        await link.handshake()
        return link


class _Link:
    """One client connection: TLS records on ``conn``, plain bytes through ``tls``."""

    def __init__(self, conn: socket.socket, ctx: ssl.SSLContext) -> None:
        self.conn = conn
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.incoming, self.outgoing, server_side=True)
        self._send_lock = asyncio.Lock()  # records leave in the order they were made

    async def flush(self) -> None:
        async with self._send_lock:
            data = self.outgoing.read()
            if data:
                await asyncio.get_running_loop().sock_sendall(self.conn, data)

    async def _receive(self) -> bool:
        data = await asyncio.get_running_loop().sock_recv(self.conn, _CHUNK)
        if data:
            self.incoming.write(data)
        else:
            self.incoming.write_eof()
        return bool(data)

    async def handshake(self) -> None:
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self.flush()
                if not await self._receive():
                    raise ConnectionResetError("client closed during the TLS handshake") from None
            except ssl.SSLError:
                with contextlib.suppress(OSError):
                    await self.flush()  # the alert that tells the client why
                raise
        await self.flush()

    async def client_to_app(self, app: socket.socket) -> None:
        """Decrypted input to the HTTP server; the client's close_notify (or EOF) becomes a
        half-close of the plain socket."""
        loop = asyncio.get_running_loop()
        more = True  # records may have come with the handshake's last flight: read them first
        while True:
            while True:
                try:
                    data = self.tls.read(_CHUNK)
                except ssl.SSLWantReadError:
                    break
                except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
                    data = b""
                if not data:
                    more = False
                    break
                try:
                    await loop.sock_sendall(app, data)
                except OSError:  # the HTTP server is done with this connection
                    return
            await self.flush()  # reading may have produced records (a key update's answer)
            if not more:
                with contextlib.suppress(OSError):
                    app.shutdown(socket.SHUT_WR)
                return
            more = await self._receive()

    async def app_to_client(self, app: socket.socket) -> None:
        """The HTTP server's output, encrypted; when it is done, close_notify and a
        half-close of the TCP connection."""
        loop = asyncio.get_running_loop()
        while True:
            data = await loop.sock_recv(app, _CHUNK)
            if not data:
                break
            self.tls.write(data)
            await self.flush()
        with contextlib.suppress(ssl.SSLError):
            self.tls.unwrap()  # queues close_notify; the client's own may never come
        with contextlib.suppress(OSError):
            await self.flush()
            self.conn.shutdown(socket.SHUT_WR)
