"""Launch a shim and talk to it, synchronously or from an asyncio loop.

``start_shim`` returns once the container is created (or raises RuntimeFailure with the
runtime's error). ``ShimClient`` / ``AsyncShimClient`` take only the socket path (and the exit
file), so a restarted berthd reconnects to running shims; when the shim is gone, the exit file
is the source of truth for ``state`` and ``wait``.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from berth import errors
from berth.runtime.shim import protocol
from berth.runtime.shim.forkserver import ForkServer
from berth.runtime.shim.protocol import ExecState, ExitStatus, Request, ShimConfig, ShimState

SHIM_CONFIG_NAME = "shim.json"
DEFAULT_COMMAND: tuple[str, ...] = (sys.executable, "-m", "berth.runtime.shim.main")


def runtime_failure(message: str) -> errors.RuntimeFailure:
    """Docker's exit codes for a failed start: 127 not found, 126 not executable, else 125."""
    lower = message.lower()
    if (
        "executable file not found" in lower
        or "no such file or directory" in lower
        or ("executable file" in lower and "not found" in lower)
    ):
        return errors.RuntimeFailure(message, exit_code=127)
    if "permission denied" in lower:
        return errors.RuntimeFailure(message, exit_code=126)
    return errors.RuntimeFailure(message)


def start_shim(
    config: ShimConfig,
    *,
    command: Sequence[str] = DEFAULT_COMMAND,
    timeout: float = 30.0,
    forkserver: ForkServer | None = None,
) -> ShimClient:
    """Spawn a detached shim for ``config`` and wait until the container is created.

    With a ``forkserver`` the shim is forked from it (no interpreter start-up); should the
    server be gone, the shim is spawned from ``command`` as without one.
    """
    # sun_path holds 107 bytes; a tty container also needs "<socket>.console".
    if len(os.fsencode(config.socket_path)) + len(".console") > 107:
        raise errors.InvalidArgument(f"shim socket path too long: {config.socket_path}")
    config_path = os.path.join(config.bundle, SHIM_CONFIG_NAME)
    fd, tmp = tempfile.mkstemp(prefix=".shim-", dir=config.bundle)
    with os.fdopen(fd, "w") as f:
        f.write(config.to_json())
    os.rename(tmp, config_path)

    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    try:
        forked = False
        if forkserver is not None and forkserver.alive:
            try:
                forkserver.launch(config_path, ready_w)
                forked = True
            except errors.Unavailable:
                pass  # spawned below instead
        if not forked:
            _spawn_shim(command, config_path, ready_w, timeout)
        os.close(ready_w)
        ready_w = -1
        message = _read_ready(ready_r, timeout)
    finally:
        os.close(ready_r)
        if ready_w >= 0:
            os.close(ready_w)
    if not message:
        hint = f" (see {config.debug_log})" if config.debug_log else ""
        raise errors.RuntimeFailure(
            f"shim for {config.container_id} exited before it was ready{hint}"
        )
    reply = json.loads(message)
    if not reply.get("ok"):
        raise runtime_failure(str(reply.get("error", "unknown error")))
    return ShimClient(config.socket_path, exit_file=config.exit_file)


def _spawn_shim(command: Sequence[str], config_path: str, ready_w: int, timeout: float) -> None:
    proc = subprocess.Popen(
        [*command, "--config", config_path, "--ready-fd", str(ready_w)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        pass_fds=(ready_w,),
        start_new_session=True,
    )
    proc.wait(timeout)  # the launcher process forks the shim and exits at once


async def start_shim_async(
    config: ShimConfig,
    *,
    command: Sequence[str] = DEFAULT_COMMAND,
    timeout: float = 30.0,
    forkserver: ForkServer | None = None,
) -> AsyncShimClient:
    """``start_shim`` for an asyncio daemon: the blocking launch runs in a worker thread."""
    client = await asyncio.to_thread(
        start_shim, config, command=command, timeout=timeout, forkserver=forkserver
    )
    return AsyncShimClient(client.socket_path, exit_file=client.exit_file)


def _read_ready(fd: int, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise errors.RuntimeFailure("timed out waiting for the shim to create the container")
        readable, _, _ = select.select([fd], [], [], remaining)
        if readable:
            data = os.read(fd, 65536)
            chunks.append(data)
            if not data or data.endswith(b"\n"):
                return b"".join(chunks)


def _raise_reply(reply: dict[str, Any]) -> dict[str, Any]:
    if reply.get("ok"):
        return reply
    message = str(reply.get("error", "shim error"))
    kind = str(reply.get("kind", "Internal"))
    if kind == "RuntimeCommandFailed":
        raise runtime_failure(message)
    cls = getattr(errors, kind, None)
    if (
        isinstance(cls, type)
        and issubclass(cls, errors.BerthError)
        and cls is not errors.RuntimeFailure
    ):
        raise cls(message)
    raise errors.Internal(message)


def iter_frames(sock: socket.socket) -> Iterator[tuple[int, bytes]]:
    """(stream, payload) of each multiplexed frame until the shim closes the connection."""
    buf = b""
    while True:
        while len(buf) < protocol.FRAME_HEADER.size:
            data = sock.recv(65536)
            if not data:
                return
            buf += data
        stream, size = protocol.parse_frame_header(buf[: protocol.FRAME_HEADER.size])
        buf = buf[protocol.FRAME_HEADER.size :]
        while len(buf) < size:
            data = sock.recv(65536)
            if not data:
                return
            buf += data
        yield stream, buf[:size]
        buf = buf[size:]


class ShimClient:
    """Blocking client of one shim (tests, CLI tools, threads)."""

    def __init__(
        self, socket_path: str, *, exit_file: str | None = None, timeout: float | None = 30.0
    ) -> None:
        self.socket_path = socket_path
        self.exit_file = exit_file
        self.timeout = timeout

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.connect(self.socket_path)
        except (FileNotFoundError, ConnectionRefusedError) as err:
            sock.close()
            raise errors.Unavailable(f"shim at {self.socket_path} is not running") from err
        return sock

    def _recorded_exit(self) -> ExitStatus | None:
        return protocol.load_exit_file(self.exit_file) if self.exit_file else None

    def _call(self, request: Request, timeout: float | None = -1.0) -> dict[str, Any]:
        try:
            sock = self._connect()
        except errors.Unavailable:
            if self._recorded_exit() is not None:
                raise errors.Conflict("container is not running") from None
            raise
        with sock:
            sock.settimeout(self.timeout if timeout == -1.0 else timeout)
            sock.sendall(protocol.encode_request(request))
            reply = _read_line(sock)
        if not reply:
            raise errors.Unavailable(f"shim at {self.socket_path} closed the connection")
        return _raise_reply(json.loads(reply))

    def start(self) -> int:
        """``runtime start``; returns the init's host pid."""
        return int(self._call(protocol.StartRequest())["pid"])

    def attach(
        self, *, stdin: bool = False, stdout: bool = True, stderr: bool = True
    ) -> socket.socket:
        """A connected socket carrying frames out and stdin in; shut down SHUT_WR to end stdin."""
        sock = self._connect()
        try:
            sock.sendall(protocol.encode_request(protocol.AttachRequest(stdin, stdout, stderr)))
            line = _read_line(sock)
            _raise_reply(json.loads(line) if line else {"ok": False, "error": "shim closed"})
        except BaseException:
            sock.close()
            raise
        sock.settimeout(None)
        return sock

    def exec(
        self,
        exec_id: str,
        process: Mapping[str, Any],
        *,
        tty: bool = False,
        stdin: bool = False,
        stdout: bool = True,
        stderr: bool = True,
        detach: bool = False,
    ) -> tuple[int, socket.socket | None]:
        """Start an OCI ``process`` in the container: (pid, stream socket or None if detached).

        The socket carries frames like ``attach``; SHUT_WR closes the exec's stdin; it ends
        when the process has exited (``exec_state`` then has its exit code).
        """
        request = protocol.ExecRequest(
            exec_id, json.dumps(dict(process)), tty, stdin, stdout, stderr, detach
        )
        sock = self._connect()
        try:
            sock.sendall(protocol.encode_request(request))
            line = _read_line(sock)
            reply = _raise_reply(
                json.loads(line) if line else {"ok": False, "error": "shim closed"}
            )
        except BaseException:
            sock.close()
            raise
        if detach:
            sock.close()
            return int(reply["pid"]), None
        sock.settimeout(None)
        return int(reply["pid"]), sock

    def exec_state(self, exec_id: str) -> ExecState:
        return ExecState.from_json(self._call(protocol.ExecStateRequest(exec_id)))

    def exec_resize(self, exec_id: str, height: int, width: int) -> None:
        self._call(protocol.ExecResizeRequest(exec_id, height, width))

    def resize(self, height: int, width: int) -> None:
        self._call(protocol.ResizeRequest(height, width))

    def kill(self, signal: int, *, all: bool = False) -> None:
        self._call(protocol.KillRequest(signal, all))

    def pause(self) -> None:
        self._call(protocol.PauseRequest())

    def resume(self) -> None:
        self._call(protocol.ResumeRequest())

    def state(self) -> ShimState:
        try:
            return ShimState.from_json(self._call(protocol.StateRequest()))
        except (errors.Unavailable, errors.Conflict):
            recorded = self._recorded_exit()
            if recorded is None:
                raise
            return ShimState("stopped", recorded.pid, recorded)

    def wait(self, timeout: float | None = None) -> ExitStatus:
        """Block until the container has exited and its runtime state is deleted."""
        try:
            return ExitStatus.from_json(self._call(protocol.WaitRequest(), timeout=timeout))
        except (errors.Unavailable, errors.Conflict):
            recorded = self._recorded_exit()
            if recorded is None:
                raise
            return recorded


def _read_line(sock: socket.socket) -> bytes:
    buf = b""
    while not buf.endswith(b"\n"):
        data = sock.recv(1)  # byte by byte: what follows the line belongs to the caller
        if not data:
            break
        buf += data
    return buf


class AsyncShimClient:
    """The same operations as coroutines, for berthd's event loop."""

    def __init__(self, socket_path: str, *, exit_file: str | None = None) -> None:
        self.socket_path = socket_path
        self.exit_file = exit_file

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            return await asyncio.open_unix_connection(self.socket_path, limit=protocol.MAX_LINE)
        except (FileNotFoundError, ConnectionRefusedError) as err:
            raise errors.Unavailable(f"shim at {self.socket_path} is not running") from err

    def _recorded_exit(self) -> ExitStatus | None:
        return protocol.load_exit_file(self.exit_file) if self.exit_file else None

    async def _call(self, request: Request) -> dict[str, Any]:
        try:
            reader, writer = await self._open()
        except errors.Unavailable:
            if self._recorded_exit() is not None:
                raise errors.Conflict("container is not running") from None
            raise
        try:
            writer.write(protocol.encode_request(request))
            await writer.drain()
            line = await reader.readline()
        finally:
            writer.close()
        if not line:
            raise errors.Unavailable(f"shim at {self.socket_path} closed the connection")
        return _raise_reply(json.loads(line))

    async def start(self) -> int:
        return int((await self._call(protocol.StartRequest()))["pid"])

    async def attach(
        self, *, stdin: bool = False, stdout: bool = True, stderr: bool = True
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Reader of frames and writer for stdin (``write_eof()`` ends stdin)."""
        reader, writer = await self._open()
        try:
            writer.write(protocol.encode_request(protocol.AttachRequest(stdin, stdout, stderr)))
            await writer.drain()
            line = await reader.readline()
            _raise_reply(json.loads(line) if line else {"ok": False, "error": "shim closed"})
        except BaseException:
            writer.close()
            raise
        return reader, writer

    async def exec(
        self,
        exec_id: str,
        process: Mapping[str, Any],
        *,
        tty: bool = False,
        stdin: bool = False,
        stdout: bool = True,
        stderr: bool = True,
        detach: bool = False,
    ) -> tuple[int, tuple[asyncio.StreamReader, asyncio.StreamWriter] | None]:
        """``ShimClient.exec`` as a coroutine: (pid, (reader, writer) or None if detached)."""
        request = protocol.ExecRequest(
            exec_id, json.dumps(dict(process)), tty, stdin, stdout, stderr, detach
        )
        reader, writer = await self._open()
        try:
            writer.write(protocol.encode_request(request))
            await writer.drain()
            line = await reader.readline()
            reply = _raise_reply(
                json.loads(line) if line else {"ok": False, "error": "shim closed"}
            )
        except BaseException:
            writer.close()
            raise
        if detach:
            writer.close()
            return int(reply["pid"]), None
        return int(reply["pid"]), (reader, writer)

    async def exec_state(self, exec_id: str) -> ExecState:
        return ExecState.from_json(await self._call(protocol.ExecStateRequest(exec_id)))

    async def exec_resize(self, exec_id: str, height: int, width: int) -> None:
        await self._call(protocol.ExecResizeRequest(exec_id, height, width))

    async def resize(self, height: int, width: int) -> None:
        await self._call(protocol.ResizeRequest(height, width))

    async def kill(self, signal: int, *, all: bool = False) -> None:
        await self._call(protocol.KillRequest(signal, all))

    async def pause(self) -> None:
        await self._call(protocol.PauseRequest())

    async def resume(self) -> None:
        await self._call(protocol.ResumeRequest())

    async def state(self) -> ShimState:
        try:
            return ShimState.from_json(await self._call(protocol.StateRequest()))
        except (errors.Unavailable, errors.Conflict):
            recorded = self._recorded_exit()
            if recorded is None:
                raise
            return ShimState("stopped", recorded.pid, recorded)

    async def wait(self) -> ExitStatus:
        try:
            return ExitStatus.from_json(await self._call(protocol.WaitRequest()))
        except (errors.Unavailable, errors.Conflict):
            recorded = self._recorded_exit()
            if recorded is None:
                raise
            return recorded


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes] | None:
    """The next (stream, payload) from an async attach, or None at the end."""
    try:
        header = await reader.readexactly(protocol.FRAME_HEADER.size)
        stream, size = protocol.parse_frame_header(header)
        return stream, await reader.readexactly(size)
    except asyncio.IncompleteReadError:
        return None
