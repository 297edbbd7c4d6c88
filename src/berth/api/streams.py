"""Request and response plumbing that route handlers share.

- query parameters as Docker reads them (``query_bool``, ``query_filters``);
- JSON documents (``json_response``) and JSON message streams (``JsonMessageStream``: the
  ``{"stream": ...}`` / ``{"status": ...}`` / ``{"errorDetail": ...}`` lines of load, pull, build);
- hijacked connections for attach and exec (``hijack``), Docker's 8-byte multiplexed frames
  (``encode_frame``, ``FrameDecoder``);
- bridges for blocking work: ``run_blocking`` runs a function in the API's thread pool, and
  ``BodyReader``/``ResponseWriter`` let that function read the request body or write the response
  as ordinary file objects. The event loop never blocks, so one long request never holds up another.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import struct
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web

from berth.errors import InvalidArgument

T = TypeVar("T")

RAW_STREAM = "application/vnd.docker.raw-stream"
MULTIPLEXED_STREAM = "application/vnd.docker.multiplexed-stream"

STDIN, STDOUT, STDERR, SYSTEMERR = 0, 1, 2, 3
_FRAME_HEADER = struct.Struct(">BxxxL")

# The API's own thread pool, created with the app and shut down with it (see berth.api.app).
EXECUTOR_KEY = web.AppKey("executor", ThreadPoolExecutor)


# -- query parameters ---------------------------------------------------------------------------


def query_bool(request: web.Request, name: str, default: bool = False) -> bool:
    """Docker's boolean query value: absent → default; "", 0, no, false, none → False."""
    if name not in request.query:
        return default
    value = request.query[name].strip().lower()
    return value not in ("", "0", "no", "false", "none")


def query_filters(request: web.Request) -> dict[str, list[str]]:
    """The ``filters`` parameter: ``{"key":{"value":true}}`` or the older ``{"key":["value"]}``."""
    raw = request.query.get("filters", "")
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as err:
        raise InvalidArgument(f"invalid filter: {err.msg}") from err
    if not isinstance(data, dict):
        raise InvalidArgument("invalid filter: filters must be a JSON object")
    out: dict[str, list[str]] = {}
    for key, values in data.items():
        if isinstance(values, dict):
            out[key] = [str(v) for v, on in values.items() if on]
        elif isinstance(values, list):
            out[key] = [str(v) for v in values]
        else:
            raise InvalidArgument(f"invalid filter '{key}'")
    return out


def check_filter_keys(filters: Mapping[str, list[str]], accepted: set[str]) -> None:
    for key in filters:
        if key not in accepted:
            raise InvalidArgument(f"invalid filter '{key}'")


# -- JSON bodies --------------------------------------------------------------------------------


def encode_json(data: Any) -> bytes:
    """Go's encoding as the daemon uses it: compact, UTF-8, no HTML escaping."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def json_response(data: Any, status: int = 200) -> web.Response:
    # json.Encoder.Encode in Go ends the document with a newline; clients see the same bytes.
    return web.Response(body=encode_json(data) + b"\n", status=status,
                        content_type="application/json")


def error_response(status: int, message: str) -> web.Response:
    if status == 304:
        return web.Response(status=304)
    return json_response({"message": message}, status=status)


async def read_json_body(request: web.Request) -> Any:
    """The request body as JSON; an empty body is ``None``."""
    raw = await request.read()
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError as err:
        raise InvalidArgument(f"invalid JSON: {err.msg}") from err
    except RecursionError as err:  # absurdly deep nesting
        raise InvalidArgument("invalid JSON: nested too deeply") from err


# -- JSON message streams -----------------------------------------------------------------------


def stream_message(text: str) -> dict[str, Any]:
    return {"stream": text}


def status_message(status: str, id: str | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"status": status}
    if id is not None:
        msg["id"] = id
    return msg


def error_message(text: str) -> dict[str, Any]:
    return {"errorDetail": {"message": text}, "error": text}


def aux_message(aux: Any) -> dict[str, Any]:
    return {"aux": aux}


class JsonMessageStream:
    """A ``200 application/json`` response of JSON messages, one per line (``\\r\\n``), flushed
    one by one. Headers go out with the first message, so a handler that fails before sending
    anything can still answer with an ordinary error status, as dockerd does."""

    def __init__(self, request: web.Request) -> None:
        self._request = request
        self._response = web.StreamResponse(status=200)
        self._response.content_type = "application/json"

    @property
    def started(self) -> bool:
        return self._response.prepared

    async def send(self, message: Mapping[str, Any]) -> None:
        if not self._response.prepared:
            await self._response.prepare(self._request)
        await self._response.write(encode_json(message) + b"\r\n")

    async def finish(self) -> web.StreamResponse:
        if not self._response.prepared:
            await self._response.prepare(self._request)
        await self._response.write_eof()
        return self._response


# -- blocking work ------------------------------------------------------------------------------


async def run_blocking(request: web.Request, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` in the API's thread pool and wait for it without blocking the loop."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(request.app[EXECUTOR_KEY], lambda: fn(*args))


class BodyReader(io.RawIOBase):
    """The request body as a blocking, read-only file, for code running in ``run_blocking``."""

    def __init__(self, request: web.Request, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._content = request.content
        self._loop = loop

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        future = asyncio.run_coroutine_threadsafe(self._content.read(len(view)), self._loop)
        data = future.result()
        view[: len(data)] = data
        return len(data)


class ResponseWriter(io.RawIOBase):
    """A streamed response as a blocking, write-only file, for code running in ``run_blocking``.

    The status line and headers are sent with the first write, so a failure before any output
    still becomes a normal error response. Each write waits for the socket to take the data,
    which is the back-pressure a slow client needs to exert.
    """

    def __init__(self, request: web.Request, response: web.StreamResponse,
                 loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._request = request
        self._response = response
        self._loop = loop

    @property
    def started(self) -> bool:
        return self._response.prepared

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        if chunk:
            asyncio.run_coroutine_threadsafe(self._send(chunk), self._loop).result()
        return len(chunk)

    async def _send(self, chunk: bytes) -> None:
        if not self._response.prepared:
            await self._response.prepare(self._request)
        await self._response.write(chunk)


# -- multiplexed frames -------------------------------------------------------------------------


def encode_frame(stream: int, data: bytes) -> bytes:
    """One frame of Docker's multiplexed stream: ``[stream, 0, 0, 0, size (uint32 BE)]`` + data."""
    return _FRAME_HEADER.pack(stream, len(data)) + data


class FrameDecoder:
    """Incremental decoder of multiplexed frames; feed bytes as they arrive."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buffer += data
        frames: list[tuple[int, bytes]] = []
        while len(self._buffer) >= _FRAME_HEADER.size:
            stream, size = _FRAME_HEADER.unpack_from(self._buffer)
            end = _FRAME_HEADER.size + size
            if len(self._buffer) < end:
                break
            frames.append((stream, bytes(self._buffer[_FRAME_HEADER.size:end])))
            del self._buffer[:end]
        return frames

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame still buffered."""
        return len(self._buffer)


# -- hijacked connections -----------------------------------------------------------------------


class _HijackedResponse(web.StreamResponse):
    """What a hijacking handler returns: its status line went out raw, so aiohttp must write
    nothing more and must close its side of the connection afterwards."""

    def __init__(self, status: int) -> None:
        super().__init__(status=status)
        self.force_close()

    async def prepare(self, request: web.BaseRequest) -> None:
        return None

    async def write_eof(self, data: bytes = b"") -> None:
        return None


@dataclass
class HijackedConnection:
    """The client's connection after the upgrade: a raw, two-way byte pipe.

    ``reader`` sees EOF when the client half-closes (``docker run -i`` does after stdin ends);
    ``writer`` stays usable after that. ``close()`` ends the connection; the handler then
    returns ``response``.
    """

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    response: web.StreamResponse

    async def close(self) -> None:
        if self.writer.is_closing():
            return
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass

    async def close_write(self) -> None:
        """Half-close: tell the client no more output comes, keep reading its input."""
        if self.writer.can_write_eof() and not self.writer.is_closing():
            self.writer.write_eof()


async def hijack(request: web.Request, content_type: str = RAW_STREAM) -> HijackedConnection:
    """Take over the connection of ``request`` as Docker does for attach and exec start.

    With ``Upgrade: tcp`` the answer is ``101 UPGRADED``; without it ``200 OK``; either way the
    socket is a raw stream afterwards. aiohttp's transport closes the socket when the client
    half-closes, so the stream runs on a duplicate of the socket with asyncio's own protocol,
    which keeps writing after the peer's EOF.
    """
    transport = request.transport
    if transport is None:
        raise ConnectionResetError("client went away before the stream started")
    sock = transport.get_extra_info("socket")
    if sock is None:
        raise ConnectionResetError("client went away before the stream started")
    upgrade = request.headers.get("Upgrade", "").lower() == "tcp" or (
        "upgrade" in request.headers.get("Connection", "").lower())
    # Bytes a client sends before it has read our answer are not part of the stream: aiohttp's
    # pure-Python parser keeps them as the upgrade's tail (taken here), its C parser reads them
    # as the start of a next request. The docker CLI and docker-py wait for the answer first.
    early = bytes(getattr(request.protocol, "_message_tail", b""))
    transport.pause_reading()
    dup = socket.socket(sock.family, sock.type, sock.proto, fileno=os.dup(sock.fileno()))
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**20, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    raw_transport, _ = await loop.connect_accepted_socket(lambda: protocol, sock=dup)
    writer = asyncio.StreamWriter(raw_transport, protocol, reader, loop)
    if early:
        reader.feed_data(early)
    if upgrade:
        head = ("HTTP/1.1 101 UPGRADED\r\n"
                f"Content-Type: {content_type}\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
        status = 101
    else:
        head = f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n\r\n"
        status = 200
    writer.write(head.encode())
    await writer.drain()
    return HijackedConnection(reader, writer, _HijackedResponse(status))
