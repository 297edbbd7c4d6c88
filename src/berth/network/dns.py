"""The embedded DNS server of user-defined networks (Docker's 127.0.0.11).

berthd binds one UDP socket at 127.0.0.11:53 *inside* each such container's network namespace
(a socket keeps the namespace it was made in) and serves all of them from its event loop. A
query for a name the engine knows (container names and aliases on a shared network) gets an
A answer; anything else is forwarded, from the host's namespace, to the host's resolvers.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from berth.network.netns import netns_socket

log = logging.getLogger(__name__)

ADDRESS = "127.0.0.11"
_TYPE_A = 1
_TYPE_AAAA = 28
_CLASS_IN = 1
_FORWARD_TIMEOUT = 3.0

# (container id, name asked) → the IPv4 addresses it means, or None when the name is not ours
Resolver = Callable[[str, str], list[str] | None]


@dataclass(frozen=True)
class Question:
    name: str
    qtype: int
    qclass: int
    end: int  # offset just after the question section


def parse_question(packet: bytes) -> Question | None:
    """The first question of a query, or None for anything we cannot read."""
    if len(packet) < 12:
        return None
    (qdcount,) = struct.unpack_from("!H", packet, 4)
    if qdcount < 1:
        return None
    labels: list[str] = []
    pos = 12
    while True:
        if pos >= len(packet):
            return None
        length = packet[pos]
        pos += 1
        if length == 0:
            break
        if length & 0xC0 or pos + length > len(packet):
            return None
        labels.append(packet[pos:pos + length].decode("ascii", "replace"))
        pos += length
    if pos + 4 > len(packet):
        return None
    qtype, qclass = struct.unpack_from("!HH", packet, pos)
    return Question(".".join(labels).lower(), qtype, qclass, pos + 4)


def build_answer(query: bytes, question: Question, addresses: list[str], ttl: int = 600) -> bytes:
    """A response to ``query`` with one A record per address (none for AAAA: NOERROR, empty)."""
    (qid, flags) = struct.unpack_from("!HH", query, 0)
    rd = flags & 0x0100
    records = addresses if question.qtype == _TYPE_A else []
    header = struct.pack("!HHHHHH", qid, 0x8400 | rd | 0x0080, 1, len(records), 0, 0)
    body = query[12:question.end]
    for addr in records:
        body += struct.pack("!HHHIH", 0xC00C, _TYPE_A, _CLASS_IN, ttl, 4)
        body += socket.inet_aton(addr)
    return header + body


def build_error(query: bytes, question: Question | None, rcode: int) -> bytes:
    qid, flags = struct.unpack_from("!HH", query, 0) if len(query) >= 4 else (0, 0)
    qd = 1 if question else 0
    header = struct.pack("!HHHHHH", qid, 0x8000 | (flags & 0x0100) | 0x0080 | rcode, qd, 0, 0, 0)
    return header + (query[12:question.end] if question else b"")


def host_nameservers(resolv_conf: str) -> list[str]:
    """The IPv4 nameservers of the host's resolv.conf (loopback ones too: berthd asks them from
    the host's namespace)."""
    out = []
    for line in resolv_conf.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver" and ":" not in parts[1]:
            out.append(parts[1])
    return out


class _Upstream(asyncio.DatagramProtocol):
    def __init__(self, done: asyncio.Future[bytes]) -> None:
        self.done = done

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if not self.done.done():
            self.done.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.done.done():
            self.done.set_exception(exc)


class _Listener(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer, container_id: str) -> None:
        self.server = server
        self.container_id = container_id
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.server.handle(self, data, addr)


class DnsServer:
    def __init__(self, resolve: Resolver, upstreams: Callable[[str], list[str]]) -> None:
        self._resolve = resolve
        self._upstreams = upstreams
        self._listeners: dict[str, asyncio.DatagramTransport] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def serve(self, container_id: str, netns: Path) -> None:
        """Start answering at 127.0.0.11:53 in ``netns`` (its lo must be up)."""
        if container_id in self._listeners:
            return

        def make() -> socket.socket:
            sock = netns_socket(netns, socket.AF_INET, socket.SOCK_DGRAM)
            try:
                sock.bind((ADDRESS, 53))
            except OSError:
                sock.close()
                raise
            sock.setblocking(False)
            return sock

        sock = await asyncio.to_thread(make)
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Listener(self, container_id), sock=sock)
        self._listeners[container_id] = transport

    def stop(self, container_id: str) -> None:
        transport = self._listeners.pop(container_id, None)
        if transport is not None:
            transport.close()

    def close(self) -> None:
        for cid in list(self._listeners):
            self.stop(cid)
        for task in self._tasks:
            task.cancel()

    def handle(self, listener: _Listener, data: bytes, addr: tuple[str, int]) -> None:
        question = parse_question(data)
        transport = listener.transport
        if transport is None:
            return
        if question is None:
            if len(data) >= 12:
                transport.sendto(build_error(data, None, 1), addr)  # FORMERR
            return
        name = question.name.rstrip(".")
        if question.qclass == _CLASS_IN and question.qtype in (_TYPE_A, _TYPE_AAAA):
            found = self._resolve(listener.container_id, name)
            if found:
                transport.sendto(build_answer(data, question, found), addr)
                return
        task = asyncio.get_running_loop().create_task(
            self._forward(listener.container_id, transport, data, question, addr))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _forward(self, container_id: str, transport: asyncio.DatagramTransport,
                       data: bytes, question: Question, addr: tuple[str, int]) -> None:
        loop = asyncio.get_running_loop()
        for server in self._upstreams(container_id):
            done: asyncio.Future[bytes] = loop.create_future()
            try:
                upstream, _ = await loop.create_datagram_endpoint(
                    functools.partial(_Upstream, done), remote_addr=(server, 53))
            except OSError:
                continue
            try:
                upstream.sendto(data)
                reply = await asyncio.wait_for(done, _FORWARD_TIMEOUT)
            except (OSError, TimeoutError):
                continue
            finally:
                upstream.close()
            with contextlib.suppress(OSError):
                if not transport.is_closing():
                    transport.sendto(reply, addr)
            return
        with contextlib.suppress(OSError):
            if not transport.is_closing():
                transport.sendto(build_error(data, question, 2), addr)  # SERVFAIL
