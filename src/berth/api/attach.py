"""``POST /containers/{id}/attach``: a hijacked connection joined to the container's shim.

Output comes from the shim as multiplexed frames; a tty container's stream goes to the client
raw (no frame headers), as Docker sends it. The client's stdin goes to the shim unframed; its
half-close ends the container's stdin (``docker run -i`` with piped input), and the detach
sequence (default Ctrl-P Ctrl-Q) ends the attachment without touching the container.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiohttp import web

from berth.api.streams import RAW_STREAM, FrameDecoder, encode_frame, hijack
from berth.engine.logs import LogQuery, read_logs
from berth.engine.model import ContainerRecord
from berth.errors import BerthError, InvalidArgument

log = logging.getLogger(__name__)

DEFAULT_DETACH_KEYS = b"\x10\x11"  # ctrl-p, ctrl-q


def parse_detach_keys(spec: str | None) -> bytes:
    """Docker's ``detachKeys``: comma-separated ``ctrl-<x>`` or single characters."""
    if not spec:
        return DEFAULT_DETACH_KEYS
    keys = bytearray()
    for part in spec.split(","):
        part = part.strip()
        if part.startswith("ctrl-") and len(part) == 6:
            ch = part[5]
            if ch.isalpha():
                keys.append(ord(ch.lower()) - ord("a") + 1)
            elif ch in "@[\\]^_":
                keys.append({"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}[ch])
            else:
                raise InvalidArgument(f"Invalid escape keys ({spec}) provided")
        elif len(part) == 1:
            keys.append(ord(part))
        else:
            raise InvalidArgument(f"Invalid escape keys ({spec}) provided")
    return bytes(keys)


class DetachMatcher:
    """Spots the detach sequence in stdin; holds back a partial match until it is decided."""

    def __init__(self, keys: bytes) -> None:
        self.keys = keys
        self._held = b""

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """(bytes to forward, detach requested)."""
        if not self.keys or (not self._held and self.keys[0] not in data):
            return data, False
        out = bytearray()
        for byte in data:
            candidate = self._held + bytes([byte])
            if self.keys.startswith(candidate):
                if candidate == self.keys:
                    return bytes(out), True
                self._held = candidate
            else:
                out += candidate
                self._held = b""
        return bytes(out), False


async def serve_attach(request: web.Request, service: Any, record: ContainerRecord, *,
                       stdin: bool, stdout: bool, stderr: bool, logs: bool, stream: bool,
                       detach_keys: str | None) -> web.StreamResponse:
    keys = parse_detach_keys(detach_keys)
    tty = record.config.tty
    # API 1.41 (dockerd 20.10) labels both kinds raw-stream; the multiplexed label came in 1.42
    conn = await hijack(request, RAW_STREAM)
    try:
        if logs:
            entries, _ = await asyncio.to_thread(
                read_logs, service.log_path(record.id), LogQuery(stdout=stdout, stderr=stderr))
            for entry in entries:
                conn.writer.write(entry.data if tty else
                                  encode_frame(1 if entry.stream == "stdout" else 2, entry.data))
            await conn.writer.drain()
        if stream:
            await _pump(conn, service, record, stdin, stdout, stderr, tty, keys)
    except (ConnectionError, OSError):
        pass  # the client went away: the container goes on
    except BerthError as err:
        log.debug("attach to %s ended: %s", record.id, err)
    finally:
        await conn.close()
    return conn.response


async def _pump(conn: Any, service: Any, record: ContainerRecord, stdin: bool, stdout: bool,
                stderr: bool, tty: bool, keys: bytes) -> None:
    _, shim = await service.shim_for_attach(record.id)
    reader, writer = await shim.attach(stdin=stdin, stdout=stdout, stderr=stderr)
    await relay(conn, reader, writer, tty=tty, stdin=stdin, detach_keys=keys)


async def relay(conn: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                tty: bool, stdin: bool, detach_keys: bytes) -> None:
    """Join a hijacked client connection to a process's streams (attach and exec): framed
    output to the client (raw with a tty), its stdin to the process until it half-closes or,
    with a tty only, types the detach keys (dockerd copies a non-tty stdin untouched)."""

    async def outbound() -> None:
        decoder = FrameDecoder()
        while chunk := await reader.read(65536):
            for stream_id, data in decoder.feed(chunk):
                conn.writer.write(data if tty else encode_frame(stream_id, data))
            await conn.writer.drain()

    async def inbound() -> None:
        matcher = DetachMatcher(detach_keys if tty else b"")
        while chunk := await conn.reader.read(65536):
            data, detach = matcher.feed(chunk)
            if data:
                writer.write(data)
                await writer.drain()
            if detach:
                return
        # the client half-closed: the process's stdin ends (StdinOnce); output goes on
        if writer.can_write_eof():
            writer.write_eof()
        await asyncio.Event().wait()

    out_task = asyncio.ensure_future(outbound())
    in_task = asyncio.ensure_future(inbound()) if stdin else None
    try:
        waiters = {out_task} | ({in_task} if in_task else set())
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (out_task, in_task):
            if task is None:
                continue
            if not task.done():
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task  # also retrieves a failed task's exception
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
