"""The shim's event loop: create the container, hold its stdio, serve clients, record its exit.

One linear recipe (``Shim.run``): reaper on → stdio → ``runtime create`` → control socket →
ready → wait for the init to exit and its output to drain → OOM counter → exit file →
``runtime delete`` → answer waiters → linger → exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import struct
import tempfile
import termios
from dataclasses import dataclass, field

from berth.errors import BerthError, Conflict, InvalidArgument, NotImplementedByBerth
from berth.runtime.shim import protocol
from berth.runtime.shim._oom import oom_kill_count
from berth.runtime.shim.jsonlog import JsonLogWriter, rfc3339_nano
from berth.runtime.shim.protocol import ExitStatus, ShimConfig, ShimState

log = logging.getLogger(__name__)

READ_CHUNK = 64 * 1024
CLIENT_BUFFER_LIMIT = 4 * 1024 * 1024  # per attached client; beyond it output is dropped


class RuntimeCommandFailed(BerthError):
    """``<runtime> <subcommand>`` exited non-zero; the message is the runtime's error text."""


@dataclass
class _Attachment:
    writer: asyncio.StreamWriter
    stdout: bool
    stderr: bool
    dropped: int = 0


@dataclass
class _Output:
    fd: int
    stream: str  # stdout | stderr
    done: asyncio.Event = field(default_factory=asyncio.Event)


class Shim:
    """Runs one container under an OCI runtime and monitors it until it exits."""

    def __init__(self, config: ShimConfig, ready_fd: int | None = None) -> None:
        self.config = config
        self._ready_fd = ready_fd
        self._children: dict[int, asyncio.Future[int]] = {}
        self._unclaimed: dict[int, int] = {}
        self._container_pid = 0
        self._pidfd = -1
        self._status = "created"
        self._exit: ExitStatus | None = None
        self._exit_raw: asyncio.Future[int] | None = None
        self._finished = asyncio.Event()
        self._outputs: list[_Output] = []
        self._attachments: list[_Attachment] = []
        self._stdin_fd = -1
        self._stdin_lock = asyncio.Lock()
        self._pty_master = -1
        self._log: JsonLogWriter | None = None
        self._server: asyncio.AbstractServer | None = None

    # ------------------------------------------------------------ the recipe

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        # We are the subreaper: the init is re-parented to us when the runtime exits.
        loop.add_signal_handler(signal.SIGCHLD, self._reap)
        self._exit_raw = loop.create_future()
        try:
            await self._create()
        except BerthError as err:
            log.error("create failed: %s", err)
            self._signal_ready({"ok": False, "error": str(err)})
            return 1
        try:
            self._log = JsonLogWriter(self.config.log_path)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.config.socket_path)  # a stale socket of an earlier shim
            self._server = await asyncio.start_unix_server(
                self._serve_client, path=self.config.socket_path, limit=protocol.MAX_LINE
            )
            os.chmod(self.config.socket_path, 0o600)
        except OSError as err:
            # Nobody could monitor the created container: remove it again.
            log.error("cannot serve %s: %s", self.config.socket_path, err)
            with contextlib.suppress(RuntimeCommandFailed):
                await self._runtime(["delete", "--force", self.config.container_id])
            self._signal_ready({"ok": False, "error": f"shim: {err}"})
            return 1
        for out in self._outputs:
            os.set_blocking(out.fd, False)
            loop.add_reader(out.fd, self._on_output, out)
        self._signal_ready({"ok": True, "pid": self._container_pid})

        raw_status = await self._exit_raw
        exited_at = rfc3339_nano()
        self._status = "stopped"
        await self._drain_outputs()
        code = os.waitstatus_to_exitcode(raw_status)
        oom = (oom_kill_count(self._cgroups_path()) or 0) > 0
        self._exit = ExitStatus(
            exit_code=128 - code if code < 0 else code,
            exited_at=exited_at,
            oom_killed=oom,
            pid=self._container_pid,
        )
        protocol.save_exit_file(self.config.exit_file, self._exit)
        log.info("container exited: %s", self._exit)
        await self._delete()
        self._finished.set()
        await self._close_attachments()
        await asyncio.sleep(self.config.linger_seconds)
        self._server.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.config.socket_path)
        self._close_fds()
        return 0

    async def _create(self) -> None:
        cfg = self.config
        console_dir = ""
        devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        child_fds: list[int] = [devnull]
        try:
            args = ["create", "--bundle", cfg.bundle, "--pid-file", cfg.container_pid_file]
            console: socket.socket | None = None
            if cfg.tty:
                # Short path: sun_path is limited to 108 bytes.
                console_dir = tempfile.mkdtemp(prefix="berth-console-")
                console_path = os.path.join(console_dir, "c.sock")
                console = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                console.bind(console_path)
                console.listen(1)
                console.setblocking(False)
                args += ["--console-socket", console_path]
                stdio = (devnull, devnull, devnull)
            else:
                stdin = devnull
                if cfg.open_stdin:
                    stdin, self._stdin_fd = os.pipe2(os.O_CLOEXEC)
                    child_fds.append(stdin)
                out_r, out_w = os.pipe2(os.O_CLOEXEC)
                err_r, err_w = os.pipe2(os.O_CLOEXEC)
                child_fds += [out_w, err_w]
                self._outputs = [_Output(out_r, "stdout"), _Output(err_r, "stderr")]
                stdio = (stdin, out_w, err_w)
            create = asyncio.ensure_future(self._runtime(args + [cfg.container_id], stdio))
            if console is not None:
                await self._receive_pty(console, create)
                console.close()
            await create
        finally:
            for fd in child_fds:
                os.close(fd)
            if console_dir:
                shutil.rmtree(console_dir, ignore_errors=True)
        with open(cfg.container_pid_file) as f:
            self._container_pid = int(f.read().strip())
        with contextlib.suppress(OSError):
            self._pidfd = os.pidfd_open(self._container_pid)
        if self._stdin_fd >= 0:
            os.set_blocking(self._stdin_fd, False)
        if self._container_pid in self._unclaimed:
            self._on_container_exit(self._unclaimed.pop(self._container_pid))

    async def _receive_pty(self, console: socket.socket, create: asyncio.Future[None]) -> None:
        loop = asyncio.get_running_loop()
        accept = asyncio.ensure_future(loop.sock_accept(console))
        pending: set[asyncio.Future[object]] = {accept, create}  # type: ignore[arg-type]
        await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        if not accept.done():
            accept.cancel()
            await create  # raises the runtime's error
            raise RuntimeCommandFailed("runtime did not send the console of a tty container")
        conn, _ = accept.result()
        with conn:
            conn.setblocking(True)
            _, fds, _, _ = socket.recv_fds(conn, 4096, 1)
        if not fds:
            raise RuntimeCommandFailed("runtime sent no console file descriptor")
        self._pty_master = fds[0]
        os.set_inheritable(self._pty_master, False)
        self._stdin_fd = self._pty_master
        self._outputs = [_Output(self._pty_master, "stdout")]

    def _signal_ready(self, message: dict[str, object]) -> None:
        if self._ready_fd is None:
            return
        with contextlib.suppress(OSError):
            os.write(self._ready_fd, json.dumps(message).encode() + b"\n")
        os.close(self._ready_fd)
        self._ready_fd = None

    def _cgroups_path(self) -> str:
        try:
            with open(os.path.join(self.config.bundle, "config.json")) as f:
                return str(json.load(f).get("linux", {}).get("cgroupsPath", ""))
        except (OSError, ValueError):
            return ""

    async def _delete(self) -> None:
        try:
            await self._runtime(["delete", self.config.container_id])
        except RuntimeCommandFailed as err:
            log.warning("runtime delete failed (%s); forcing", err)
            with contextlib.suppress(RuntimeCommandFailed):
                await self._runtime(["delete", "--force", self.config.container_id])

    # ------------------------------------------------------------ processes

    async def _runtime(self, args: list[str], stdio: tuple[int, int, int] | None = None) -> None:
        """Run ``<runtime> [globals] args``; raise with the runtime's error text on failure."""
        cfg = self.config
        log_fd, log_path = tempfile.mkstemp(prefix="runtime-log-", dir=cfg.bundle)
        os.close(log_fd)
        argv = [cfg.runtime, *cfg.runtime_args]
        if cfg.runtime_root:
            argv += ["--root", cfg.runtime_root]
        argv += ["--log", log_path, "--log-format", "json", *args]
        errbuf = os.memfd_create("runtime-stderr", os.MFD_CLOEXEC)
        devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        stdin, stdout, stderr = stdio if stdio else (devnull, devnull, errbuf)
        actions = [
            (os.POSIX_SPAWN_DUP2, stdin, 0),
            (os.POSIX_SPAWN_DUP2, stdout, 1),
            (os.POSIX_SPAWN_DUP2, stderr, 2),
        ]
        loop = asyncio.get_running_loop()
        try:
            try:
                pid = os.posix_spawnp(argv[0], argv, dict(os.environ), file_actions=actions)
            except OSError as err:
                raise RuntimeCommandFailed(f"cannot run {argv[0]}: {err.strerror}") from err
            done = loop.create_future()
            self._children[pid] = done  # no await since the spawn: the reaper cannot miss it
            if pid in self._unclaimed:
                done.set_result(self._unclaimed.pop(pid))
            status = await done
            if status != 0:
                text = _runtime_error(log_path) or _read_memfd(errbuf)
                code = os.waitstatus_to_exitcode(status)
                raise RuntimeCommandFailed(
                    text or f"{cfg.runtime} {args[0]} failed with exit status {code}"
                )
        finally:
            os.close(errbuf)
            os.close(devnull)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(log_path)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            waiter = self._children.pop(pid, None)
            if waiter is not None:
                if not waiter.done():
                    waiter.set_result(status)
            elif pid == self._container_pid:
                self._on_container_exit(status)
            else:
                # The init before its pid file is read, or an orphan of the container.
                self._unclaimed[pid] = status

    def _on_container_exit(self, status: int) -> None:
        if self._exit_raw is not None and not self._exit_raw.done():
            self._exit_raw.set_result(status)

    # ------------------------------------------------------------ output

    def _on_output(self, out: _Output) -> None:
        try:
            data = os.read(out.fd, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError as err:
            if err.errno != errno.EIO:  # EIO: the pty's last slave closed
                log.warning("read %s: %s", out.stream, err)
            data = b""
        if not data:
            self._end_output(out)
            return
        assert self._log is not None
        self._log.feed(out.stream, data)
        stream_id = protocol.STDOUT if out.stream == "stdout" else protocol.STDERR
        payload = protocol.frame(stream_id, data)
        for att in list(self._attachments):
            if not (att.stdout if stream_id == protocol.STDOUT else att.stderr):
                continue
            if att.writer.is_closing():
                self._attachments.remove(att)
            elif att.writer.transport.get_write_buffer_size() > CLIENT_BUFFER_LIMIT:
                att.dropped += len(data)  # never block the container on a slow client
            else:
                att.writer.write(payload)

    def _end_output(self, out: _Output) -> None:
        if out.done.is_set():
            return
        asyncio.get_running_loop().remove_reader(out.fd)
        if self._log is not None:
            self._log.flush(out.stream)
        out.done.set()

    async def _drain_outputs(self) -> None:
        """Let the output reach EOF, for a while: an orphan may hold the pipe open."""
        waits = [asyncio.ensure_future(o.done.wait()) for o in self._outputs]
        if waits:
            _, pending = await asyncio.wait(waits, timeout=self.config.drain_seconds)
            for task in pending:
                task.cancel()
        for out in self._outputs:
            self._end_output(out)

    async def _close_attachments(self) -> None:
        for att in self._attachments:
            with contextlib.suppress(OSError, asyncio.TimeoutError):
                await asyncio.wait_for(att.writer.drain(), timeout=2)
            att.writer.close()
        self._attachments.clear()

    async def _write_stdin(self, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        async with self._stdin_lock:
            view = memoryview(data)
            while view and self._stdin_fd >= 0:
                try:
                    view = view[os.write(self._stdin_fd, view) :]
                except BlockingIOError:
                    ready = loop.create_future()
                    loop.add_writer(self._stdin_fd, ready.set_result, None)
                    try:
                        await ready
                    finally:
                        loop.remove_writer(self._stdin_fd)
                except OSError:  # the container closed its stdin
                    return

    def _close_stdin(self) -> None:
        if self._stdin_fd >= 0 and self._stdin_fd != self._pty_master:
            os.close(self._stdin_fd)
            self._stdin_fd = -1

    def _close_fds(self) -> None:
        self._close_stdin()
        for out in self._outputs:
            with contextlib.suppress(OSError):
                os.close(out.fd)
        self._outputs = []
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1
        if self._log is not None:
            self._log.close()
            self._log = None

    # ------------------------------------------------------------ clients

    async def _serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            line = await reader.readline()
            if not line:
                return
            try:
                request = protocol.decode_request(line)
                if isinstance(request, protocol.AttachRequest):
                    await self._attach(request, reader, writer)
                    return
                result = await self._handle(request)
                writer.write(protocol.encode_reply(result))
            except BerthError as err:
                writer.write(protocol.encode_error(str(err), type(err).__name__))
            except OSError as err:
                log.warning("request %r failed: %s", line[:200], err)
                writer.write(protocol.encode_error(f"shim: {err}", "Internal"))
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            if not any(a.writer is writer for a in self._attachments):
                writer.close()

    async def _handle(self, request: protocol.Request) -> dict[str, object]:
        cid = self.config.container_id
        if isinstance(request, protocol.StateRequest):
            return ShimState(self._status, self._container_pid, self._exit).to_json()
        if isinstance(request, protocol.WaitRequest):
            await self._finished.wait()
            assert self._exit is not None
            return self._exit.to_json()
        if self._status == "stopped":
            raise Conflict(f"container {cid} is not running")
        if isinstance(request, protocol.StartRequest):
            if self._status != "created":
                raise Conflict(f"container {cid} is already started")
            await self._runtime(["start", cid])
            if self._status == "created":
                self._status = "running"
            return {"pid": self._container_pid}
        if isinstance(request, protocol.KillRequest):
            await self._kill(request)
            return {}
        if isinstance(request, protocol.ResizeRequest):
            if self._pty_master < 0:
                raise Conflict(f"container {cid} has no tty")
            size = struct.pack("HHHH", request.height, request.width, 0, 0)
            fcntl.ioctl(self._pty_master, termios.TIOCSWINSZ, size)
            return {}
        if isinstance(request, protocol.PauseRequest):
            await self._runtime(["pause", cid])
            self._status = "paused"
            return {}
        if isinstance(request, protocol.ResumeRequest):
            await self._runtime(["resume", cid])
            self._status = "running"
            return {}
        raise NotImplementedByBerth(f"shim request {request.op} is not implemented")

    async def _kill(self, request: protocol.KillRequest) -> None:
        if not 0 < request.signal < signal.NSIG:
            raise InvalidArgument(f"invalid signal: {request.signal}")
        if request.all or self._pidfd < 0:
            await self._runtime(
                [
                    "kill",
                    *(["--all"] if request.all else []),
                    self.config.container_id,
                    str(request.signal),
                ]
            )
            return
        # The pidfd cannot hit a recycled pid, unlike kill(2).
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(self._pidfd, request.signal)

    async def _attach(
        self,
        request: protocol.AttachRequest,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        writer.write(protocol.encode_reply({"tty": self.config.tty}))
        if self._finished.is_set():
            await writer.drain()
            return
        att = _Attachment(writer, request.stdout, request.stderr)
        self._attachments.append(att)
        if not (request.stdin and self._stdin_fd >= 0):
            return  # output only: the connection is closed when the output ends
        while True:
            data = await reader.read(READ_CHUNK)
            if not data:
                break
            await self._write_stdin(data)
        if self.config.stdin_once:
            self._close_stdin()


def _runtime_error(path: str) -> str:
    """The last error message of a runtime's JSON log (runc and crun write the same shape)."""
    message = ""
    try:
        with open(path, errors="replace") as f:
            for line in f:
                try:
                    entry = json.loads(line)
                except ValueError:
                    if line.strip():
                        message = line.strip()
                    continue
                if isinstance(entry, dict) and entry.get("level") in ("error", "fatal"):
                    message = str(entry.get("msg", ""))
    except OSError:
        return ""
    return message


def _read_memfd(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, 65536).decode(errors="replace").strip()
