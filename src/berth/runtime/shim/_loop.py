"""The shim's small I/O toolkit: a selectors loop, client connections and stdin queues.

Single-threaded and callback-based; everything is non-blocking. A connection buffers what it
cannot send yet; a stdin queue buffers what the container cannot take yet and tells its
readers to pause while it is long (back-pressure towards the client, never towards output).
"""

from __future__ import annotations

import logging
import os
import selectors
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

Callback = Callable[[], None]

STDIN_BUFFER_LIMIT = 1024 * 1024  # clients' stdin is not read while this much is queued


class Loop:
    """Read/write callbacks per descriptor over one selector."""

    def __init__(self) -> None:
        self._sel = selectors.DefaultSelector()
        self._watches: dict[int, tuple[Callback | None, Callback | None]] = {}

    def watch(
        self, fd: int, *, read: Callback | None = None, write: Callback | None = None
    ) -> None:
        """Set the callbacks for ``fd``; with both None, stop watching it."""
        events = (selectors.EVENT_READ if read else 0) | (selectors.EVENT_WRITE if write else 0)
        registered = fd in self._watches
        if not events:
            if registered:
                self._sel.unregister(fd)
                del self._watches[fd]
            return
        if registered:
            self._sel.modify(fd, events)
        else:
            self._sel.register(fd, events)
        self._watches[fd] = (read, write)

    def callbacks(self, fd: int) -> tuple[Callback | None, Callback | None]:
        return self._watches.get(fd, (None, None))

    def run_until(self, done: Callable[[], bool], timeout: float | None = None) -> None:
        """Dispatch events until ``done()`` or the timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not done():
            wait = None if deadline is None else deadline - time.monotonic()
            if wait is not None and wait <= 0:
                return
            for key, mask in self._sel.select(wait):
                reader, _ = self.callbacks(key.fd)
                if mask & selectors.EVENT_READ and reader is not None:
                    reader()
                if mask & selectors.EVENT_WRITE:
                    writer = self.callbacks(key.fd)[1]  # the reader may have changed it
                    if writer is not None:
                        writer()

    def close(self) -> None:
        self._sel.close()
        self._watches.clear()


@dataclass(eq=False)
class Sink:
    """Bytes on their way to a process's stdin (a pipe, or a pty master shared with output)."""

    loop: Loop
    fd: int
    shared: bool = False  # a pty master: also read for output, never closed here
    buf: bytearray = field(default_factory=bytearray)
    close_pending: bool = False
    closed: bool = False
    on_drain: Callback | None = None  # the queue got short again: resume readers

    @property
    def full(self) -> bool:
        return len(self.buf) > STDIN_BUFFER_LIMIT

    def write(self, data: bytes) -> None:
        if self.closed:
            return
        self.buf += data
        self.flush()

    def close_when_flushed(self) -> None:
        self.close_pending = True
        self.flush()

    def flush(self) -> None:
        if self.closed:
            self.buf.clear()
            return
        while self.buf:
            try:
                written = os.write(self.fd, self.buf)
            except BlockingIOError:
                break
            except OSError:  # the process closed its stdin
                self.buf.clear()
                break
            del self.buf[:written]
        read = self.loop.callbacks(self.fd)[0]
        self.loop.watch(self.fd, read=read, write=self.flush if self.buf else None)
        if not self.buf and self.close_pending:
            self.close()
        if self.on_drain is not None and not self.full:
            self.on_drain()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.buf.clear()
        if self.shared:
            read = self.loop.callbacks(self.fd)[0]
            self.loop.watch(self.fd, read=read)
        else:
            self.loop.watch(self.fd)
            os.close(self.fd)


@dataclass(eq=False)
class Conn:
    """One client connection: a request line, then a reply, a wait, or a stream."""

    loop: Loop
    sock: socket.socket
    on_data: Callable[[Conn, bytes], None]  # b"" is the client's half-close
    on_close: Callable[[Conn], None]
    mode: str = "request"  # request | reply | wait | attach | exec
    inbuf: bytearray = field(default_factory=bytearray)
    outbuf: bytearray = field(default_factory=bytearray)
    reading: bool = True
    paused: Callable[[], bool] | None = None  # read nothing while this says so
    close_after_flush: bool = False
    stdout: bool = False
    stderr: bool = False
    sink: Sink | None = None  # where this client's stdin goes
    dropped: int = 0
    closed: bool = False

    def update(self) -> None:
        if self.closed:
            return
        want_read = self.reading and not (self.paused is not None and self.paused())
        self.loop.watch(
            self.sock.fileno(),
            read=self._on_readable if want_read else None,
            write=self.flush if self.outbuf else None,
        )

    def send(self, data: bytes) -> None:
        if self.closed:
            return
        self.outbuf += data
        self.flush()

    def send_bounded(self, data: bytes, limit: int) -> None:
        """Stream output: drop it when the client is this far behind (never block output)."""
        if len(self.outbuf) > limit:
            self.dropped += len(data)
        else:
            self.send(data)

    def reply(self, data: bytes) -> None:
        self.mode = "reply"
        self.reading = False
        if not self.closed:
            self.outbuf += data
        self.finish()

    def finish(self) -> None:
        """Close once everything queued has been sent."""
        self.close_after_flush = True
        self.flush()

    def flush(self) -> None:
        while self.outbuf and not self.closed:
            try:
                sent = self.sock.send(self.outbuf)
            except BlockingIOError:
                break
            except OSError:  # the client went away
                self.close()
                return
            del self.outbuf[:sent]
        if not self.outbuf and self.close_after_flush:
            self.close()
            return
        self.update()

    def close(self) -> None:
        if self.closed:
            return
        self.loop.watch(self.sock.fileno())
        self.closed = True
        self.sock.close()
        if self.dropped:
            log.warning("dropped %d bytes of output for a slow client", self.dropped)
        self.on_close(self)

    def _on_readable(self) -> None:
        try:
            data = self.sock.recv(64 * 1024)
        except BlockingIOError:
            return
        except OSError:
            self.close()
            return
        self.on_data(self, data)
