"""The shim's event loop: create the container, hold its stdio, serve clients, record its exit.

One linear recipe (``Shim.run``): SIGCHLD wake-up → stdio → ``runtime create`` → control
socket → ready → loop until the init has exited and its output has drained → OOM counter →
exit file → ``runtime delete`` → answer waiters → linger → exit.

The loop is a plain ``selectors`` loop (``_loop.py``), single-threaded, without asyncio: a
shim is started per container and asyncio's import alone costs more than the rest of the
shim's start-up. Runtime commands run synchronously (they take milliseconds). The container's
output is never blocked by a client: one that does not read loses output beyond a bound.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import json
import logging
import os
import signal
import socket
import struct
import termios
import time
from dataclasses import dataclass, field

from berth.errors import AlreadyExists, BerthError, Conflict, InvalidArgument, NotFound
from berth.runtime.shim import protocol
from berth.runtime.shim._loop import Conn, Loop, Sink
from berth.runtime.shim._oom import oom_kill_count
from berth.runtime.shim.jsonlog import JsonLogWriter, rfc3339_nano
from berth.runtime.shim.protocol import ExitStatus, ShimConfig, ShimState
from berth.runtime.shim.runtime_cli import RuntimeCommandFailed
from berth.runtime.shim.runtime_inproc import runtime_runner

log = logging.getLogger(__name__)

READ_CHUNK = 64 * 1024
CLIENT_BUFFER_LIMIT = 4 * 1024 * 1024  # per attached client; beyond it output is dropped
CLOSE_GRACE = 2.0  # how long attached clients get to take their last output
ORPHAN_CHECK_SECONDS = 2.0  # how often a running shim checks that its bundle still exists


@dataclass(eq=False)
class _Exec:
    """A process started with ``runtime exec`` (``docker exec``); its output is not logged."""

    exec_id: str
    pid: int
    pty_master: int = -1
    sink: Sink | None = None
    outputs: list[_Output] = field(default_factory=list)
    conn: Conn | None = None
    status: int | None = None  # raw wait status once reaped
    ended: bool = False


@dataclass(eq=False)
class _Output:
    fd: int
    stream: str  # stdout | stderr
    session: _Exec | None = None  # None: the container's own output
    done: bool = False


def _exit_code(raw_status: int) -> int:
    """Docker's exit code: the status, or 128 + the signal that killed the process."""
    code = os.waitstatus_to_exitcode(raw_status)
    return 128 - code if code < 0 else code


def _listen(path: str) -> socket.socket:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # a stale socket of an earlier shim
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.bind(path)
        os.chmod(path, 0o600)
        sock.listen(64)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def _receive_pty(console: socket.socket) -> int:
    """The pty master the runtime sent; it has exited, so its connection waits in the backlog."""
    console.setblocking(False)
    try:
        conn, _ = console.accept()
    except BlockingIOError:
        raise RuntimeCommandFailed("runtime did not send the console of a tty process") from None
    with conn:
        conn.setblocking(True)
        _, fds, _, _ = socket.recv_fds(conn, 4096, 1)
    if not fds:
        raise RuntimeCommandFailed("runtime sent no console file descriptor")
    os.set_inheritable(fds[0], False)
    os.set_blocking(fds[0], False)
    return fds[0]


class Shim:
    """Runs one container under an OCI runtime and monitors it until it exits."""

    def __init__(self, config: ShimConfig, ready_fd: int | None = None) -> None:
        self.config = config
        self._ready_fd = ready_fd
        self._loop = Loop()
        self._wakeup_r = -1
        self._container_pid = 0
        self._pidfd = -1
        self._status = "created"
        self._exit_raw: int | None = None
        self._exit: ExitStatus | None = None
        self._deleted = False  # the runtime state is gone: waits are answered at once
        self._outputs: list[_Output] = []
        self._conns: list[Conn] = []
        self._stdin: Sink | None = None
        self._pty_master = -1
        self._log: JsonLogWriter | None = None
        self._server: socket.socket | None = None
        self._execs: dict[str, _Exec] = {}
        self._runtime = runtime_runner(config)  # berth's own runtime runs in this process

    # ------------------------------------------------------------ the recipe

    def run(self) -> int:
        self._install_sigchld()
        started = time.monotonic()
        try:
            self._create()
            log.debug("runtime create took %.1f ms", (time.monotonic() - started) * 1000)
        except BerthError as err:
            log.error("create failed: %s", err)
            self._signal_ready({"ok": False, "error": str(err)})
            return 1
        try:
            if self.config.log_path:  # "": the none driver keeps no log
                self._log = JsonLogWriter(self.config.log_path, self.config.log_max_size,
                                          self.config.log_max_files)
            self._server = _listen(self.config.socket_path)
            self._socket_ino = os.stat(self.config.socket_path).st_ino
        except OSError as err:
            # Nobody could monitor the created container: remove it again.
            log.error("cannot serve %s: %s", self.config.socket_path, err)
            with contextlib.suppress(RuntimeCommandFailed):
                self._runtime(["delete", "--force", self.config.container_id])
            self._signal_ready({"ok": False, "error": f"shim: {err}"})
            return 1
        self._loop.watch(self._server.fileno(), read=self._on_accept)
        self._watch_outputs(self._outputs)
        self._signal_ready({"ok": True, "pid": self._container_pid})

        while self._exit_raw is None:
            self._loop.run_until(lambda: self._exit_raw is not None, ORPHAN_CHECK_SECONDS)
            if self._exit_raw is None and not os.path.isdir(self.config.bundle):
                # The engine removed the container without us (a crash mid-start): nobody
                # will start, attach or wait any more, so the container must not live on.
                log.warning("bundle %s is gone: killing the container", self.config.bundle)
                with contextlib.suppress(BerthError):
                    self._kill(protocol.KillRequest(signal.SIGKILL, False))
        exited_at = rfc3339_nano()
        self._status = "stopped"
        # Output may stay open a little after the init exits (an orphan may hold the pipe).
        self._loop.run_until(lambda: all(o.done for o in self._outputs), self.config.drain_seconds)
        for out in self._outputs:
            self._end_output(out)
        assert self._exit_raw is not None
        self._exit = ExitStatus(
            exit_code=_exit_code(self._exit_raw),
            exited_at=exited_at,
            oom_killed=(oom_kill_count(self._cgroups_path()) or 0) > 0,
            pid=self._container_pid,
        )
        if os.path.isdir(self.config.bundle):
            protocol.save_exit_file(self.config.exit_file, self._exit)
        log.info("container exited: %s", self._exit)
        self._delete()
        self._finish_clients()
        self._loop.run_until(
            lambda: not any(c.mode in ("attach", "exec") for c in self._conns), CLOSE_GRACE
        )
        self._loop.run_until(lambda: False, self.config.linger_seconds)
        self._shutdown()
        return 0

    def _install_sigchld(self) -> None:
        # Signals wake the loop through a pipe; the reaping happens in the loop.
        self._wakeup_r, wakeup_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wakeup_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        self._loop.watch(self._wakeup_r, read=self._on_wakeup)

    def _stdio(
        self, tty: bool, open_stdin: bool, console_path: str, child_fds: list[int]
    ) -> tuple[tuple[int, int, int], socket.socket | None, int, list[_Output]]:
        """The runtime's stdio for a process: pipes, or /dev/null plus a console socket.

        Returns (stdio, console socket, our end of stdin, our output ends); the child's ends
        are appended to ``child_fds`` for the caller to close after the runtime ran.
        """
        devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        child_fds.append(devnull)
        if tty:
            return (devnull, devnull, devnull), _listen(console_path), -1, []
        stdin, our_stdin = devnull, -1
        if open_stdin:
            stdin, our_stdin = os.pipe2(os.O_CLOEXEC)
            child_fds.append(stdin)
            os.set_blocking(our_stdin, False)
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        child_fds += [out_w, err_w]
        outputs = [_Output(out_r, "stdout"), _Output(err_r, "stderr")]
        return (stdin, out_w, err_w), None, our_stdin, outputs

    def _create(self) -> None:
        cfg = self.config
        child_fds: list[int] = []
        console: socket.socket | None = None
        console_path = cfg.socket_path + ".console"
        try:
            stdio, console, stdin_fd, self._outputs = self._stdio(
                cfg.tty, cfg.open_stdin, console_path, child_fds
            )
            args = ["create", "--bundle", cfg.bundle, "--pid-file", cfg.container_pid_file]
            if console is not None:
                args += ["--console-socket", console_path]
            self._runtime(args + [cfg.container_id], stdio)
            if console is not None:
                self._pty_master = _receive_pty(console)
                self._outputs = [_Output(self._pty_master, "stdout")]
                self._stdin = Sink(self._loop, self._pty_master, shared=True)
            elif stdin_fd >= 0:
                self._stdin = Sink(self._loop, stdin_fd)
        finally:
            for fd in child_fds:
                os.close(fd)
            if console is not None:
                console.close()
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(console_path)
        if self._stdin is not None:
            self._stdin.on_drain = functools.partial(self._resume_readers, self._stdin)
        with open(cfg.container_pid_file) as f:
            self._container_pid = int(f.read().strip())
        with contextlib.suppress(OSError):
            self._pidfd = os.pidfd_open(self._container_pid)

    def _watch_outputs(self, outputs: list[_Output]) -> None:
        for out in outputs:
            os.set_blocking(out.fd, False)
            self._loop.watch(out.fd, read=functools.partial(self._on_output, out))

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

    def _delete(self) -> None:
        try:
            self._runtime(["delete", self.config.container_id])
        except RuntimeCommandFailed as err:
            log.warning("runtime delete failed (%s); forcing", err)
            with contextlib.suppress(RuntimeCommandFailed):
                self._runtime(["delete", "--force", self.config.container_id])

    def _shutdown(self) -> None:
        for conn in list(self._conns):
            conn.close()
        if self._server is not None:
            self._loop.watch(self._server.fileno())
            self._server.close()
        # A new shim of the same container (a quick restart) may own the path by now.
        with contextlib.suppress(FileNotFoundError):
            if os.stat(self.config.socket_path).st_ino == getattr(self, "_socket_ino", None):
                os.unlink(self.config.socket_path)
        sinks = [self._stdin] + [s.sink for s in self._execs.values()]
        outputs = self._outputs + [o for s in self._execs.values() for o in s.outputs]
        for sink in sinks:
            if sink is not None:
                sink.close()
        for fd in {o.fd for o in outputs}:
            self._loop.watch(fd)
            with contextlib.suppress(OSError):
                os.close(fd)
        if self._pidfd >= 0:
            os.close(self._pidfd)
        if self._log is not None:
            self._log.close()
        signal.set_wakeup_fd(-1)
        self._loop.close()

    # ------------------------------------------------------------ processes

    def _on_wakeup(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wakeup_r, 4096):
                pass
        by_pid = {s.pid: s for s in self._execs.values() if s.status is None}
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self._container_pid and self._exit_raw is None:
                self._exit_raw = status
            elif pid in by_pid:
                by_pid[pid].status = status
                self._maybe_end_exec(by_pid[pid])
            # Anything else is an orphan of the container re-parented to us: just reaped.

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
        stream_id = protocol.STDOUT if out.stream == "stdout" else protocol.STDERR
        payload = protocol.frame(stream_id, data)
        if out.session is not None:
            conn = out.session.conn
            if conn is not None and (conn.stdout if stream_id == protocol.STDOUT else conn.stderr):
                conn.send_bounded(payload, CLIENT_BUFFER_LIMIT)
            return
        if self._log is not None:
            self._log.feed(out.stream, data)
        for conn in self._conns:
            if conn.mode == "attach" and (
                conn.stdout if stream_id == protocol.STDOUT else conn.stderr
            ):
                conn.send_bounded(payload, CLIENT_BUFFER_LIMIT)

    def _end_output(self, out: _Output) -> None:
        if out.done:
            return
        out.done = True
        # A pty master stays open for stdin writes until its owner ends.
        self._loop.watch(out.fd, write=self._loop.callbacks(out.fd)[1])
        if out.session is not None:
            self._maybe_end_exec(out.session)
        elif self._log is not None:
            self._log.flush(out.stream)

    def _maybe_end_exec(self, session: _Exec) -> None:
        """Once the exec has exited and its output ended, close its stream and descriptors."""
        if session.ended or session.status is None or not all(o.done for o in session.outputs):
            return
        session.ended = True
        if session.conn is not None:
            session.conn.reading = False
            session.conn.finish()
        if session.sink is not None:
            session.sink.close()
        for out in session.outputs:
            self._loop.watch(out.fd)
            os.close(out.fd)
        session.outputs = []
        log.info("exec %s exited with %d", session.exec_id, _exit_code(session.status))

    # ------------------------------------------------------------ clients

    def _on_accept(self) -> None:
        assert self._server is not None
        while True:
            try:
                sock, _ = self._server.accept()
            except BlockingIOError:
                return
            except OSError as err:
                log.warning("accept: %s", err)
                return
            sock.setblocking(False)
            conn = Conn(self._loop, sock, on_data=self._on_conn_data, on_close=self._on_conn_close)
            self._conns.append(conn)
            conn.update()

    def _on_conn_close(self, conn: Conn) -> None:
        self._conns.remove(conn)
        for session in self._execs.values():
            if session.conn is conn:
                session.conn = None

    def _resume_readers(self, sink: Sink) -> None:
        for conn in self._conns:
            if conn.sink is sink and conn.reading:
                conn.update()

    def _on_conn_data(self, conn: Conn, data: bytes) -> None:
        if conn.mode == "request":
            if not data:
                conn.close()
                return
            conn.inbuf += data
            line, sep, rest = bytes(conn.inbuf).partition(b"\n")
            if sep:
                conn.inbuf = bytearray()
                conn.reading = False
                self._on_request(conn, line, rest)
                conn.update()
            elif len(conn.inbuf) > protocol.MAX_LINE:
                conn.close()
            return
        if data:
            if conn.sink is not None:
                conn.sink.write(data)
            return
        # Half-close: the client's stdin ended; it may still read output. An exec's stdin
        # always closes then; the container's only when it was created with stdin_once and
        # has no tty (Docker: a tty's stdin outlives a detached client, so attach works again).
        conn.reading = False
        if conn.sink is not None and (conn.mode == "exec" or (self.config.stdin_once
                                                               and not self.config.tty)):
            conn.sink.close_when_flushed()
        conn.update()

    def _on_request(self, conn: Conn, line: bytes, rest: bytes) -> None:
        try:
            request = protocol.decode_request(line)
            if isinstance(request, protocol.AttachRequest):
                self._attach(conn, request, rest)
            elif isinstance(request, protocol.ExecRequest):
                self._exec(conn, request, rest)
            elif isinstance(request, protocol.WaitRequest):
                conn.mode = "wait"
                if self._deleted and self._exit is not None:
                    conn.reply(protocol.encode_reply(self._exit.to_json()))
            else:
                conn.reply(protocol.encode_reply(self._handle(request)))
        except BerthError as err:
            conn.reply(protocol.encode_error(str(err), type(err).__name__))
        except OSError as err:
            log.warning("request %r failed: %s", line[:200], err)
            conn.reply(protocol.encode_error(f"shim: {err}", "Internal"))
        except Exception as err:  # a bug must not leave the container without its monitor
            log.exception("request %r failed", line[:200])
            conn.reply(protocol.encode_error(f"shim: internal error: {err}", "Internal"))

    def _finish_clients(self) -> None:
        self._deleted = True
        assert self._exit is not None
        reply = protocol.encode_reply(self._exit.to_json())
        for conn in list(self._conns):
            if conn.mode == "wait":
                conn.reply(reply)
            elif conn.mode in ("attach", "exec"):
                conn.reading = False
                conn.finish()

    def _stream(self, conn: Conn, mode: str, stdout: bool, stderr: bool, sink: Sink | None) -> None:
        conn.mode = mode
        conn.stdout, conn.stderr, conn.sink = stdout, stderr, sink
        conn.reading = True  # even without stdin: to see the client's half-close
        conn.paused = lambda: conn.sink is not None and conn.sink.full

    def _attach(self, conn: Conn, request: protocol.AttachRequest, rest: bytes) -> None:
        reply = protocol.encode_reply({"tty": self.config.tty})
        if self._deleted:
            conn.reply(reply)
            return
        sink = self._stdin if request.stdin else None
        self._stream(conn, "attach", request.stdout, request.stderr, sink)
        conn.send(reply)
        if rest and sink is not None:
            sink.write(rest)

    def _handle(self, request: protocol.Request) -> dict[str, object]:
        cid = self.config.container_id
        if isinstance(request, protocol.StateRequest):
            return ShimState(self._status, self._container_pid, self._exit).to_json()
        if isinstance(request, protocol.ExecStateRequest):
            session = self._session(request.exec_id)
            code = None if session.status is None else _exit_code(session.status)
            return {"pid": session.pid, "running": not session.ended, "exit_code": code}
        if isinstance(request, protocol.ExecResizeRequest):
            session = self._session(request.exec_id)
            self._resize(session.pty_master, request.height, request.width)
            return {}
        if self._status == "stopped":
            raise Conflict(f"container {cid} is not running")
        if isinstance(request, protocol.StartRequest):
            if self._status != "created":
                raise Conflict(f"container {cid} is already started")
            self._runtime(["start", cid])
            self._status = "running"
            return {"pid": self._container_pid}
        if isinstance(request, protocol.KillRequest):
            self._kill(request)
            return {}
        if isinstance(request, protocol.ResizeRequest):
            self._resize(self._pty_master, request.height, request.width)
            return {}
        if isinstance(request, protocol.PauseRequest):
            self._runtime(["pause", cid])
            self._status = "paused"
            return {}
        if isinstance(request, protocol.ResumeRequest):
            self._runtime(["resume", cid])
            self._status = "running"
            return {}
        raise InvalidArgument(f"unexpected shim request {request.op}")

    def _session(self, exec_id: str) -> _Exec:
        session = self._execs.get(exec_id)
        if session is None:
            raise NotFound(f"No such exec instance: {exec_id}")
        return session

    @staticmethod
    def _resize(pty_master: int, height: int, width: int) -> None:
        if pty_master < 0:
            raise Conflict("the process has no tty")
        fcntl.ioctl(pty_master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))

    def _kill(self, request: protocol.KillRequest) -> None:
        if not 0 < request.signal < signal.NSIG:
            raise InvalidArgument(f"invalid signal: {request.signal}")
        if request.all or self._pidfd < 0:
            extra = ["--all"] if request.all else []
            self._runtime(["kill", *extra, self.config.container_id, str(request.signal)])
            return
        # The pidfd cannot hit a recycled pid, unlike kill(2).
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(self._pidfd, request.signal)

    # ------------------------------------------------------------ exec

    def _exec(self, conn: Conn, request: protocol.ExecRequest, rest: bytes) -> None:
        cfg, cid = self.config, self.config.container_id
        exec_id = request.exec_id
        if self._status == "paused":
            raise Conflict(f"Container {cid} is paused, unpause the container before exec")
        if self._status != "running":
            raise Conflict(f"Container {cid} is not running")
        if not exec_id or len(exec_id) > 128 or not all(c.isalnum() or c in "_.-" for c in exec_id):
            raise InvalidArgument(f"invalid exec id: {exec_id!r}")
        if exec_id in self._execs:
            raise AlreadyExists(f"exec {exec_id} exists already")
        try:
            process = json.loads(request.process)
        except ValueError as err:
            raise InvalidArgument(f"invalid exec process: {err}") from err
        if not isinstance(process, dict):
            raise InvalidArgument("invalid exec process: not an object")
        process["terminal"] = request.tty
        process_path = os.path.join(cfg.bundle, f"exec-{exec_id}.json")
        pid_path = os.path.join(cfg.bundle, f"exec-{exec_id}.pid")
        console_path = f"{cfg.socket_path}.x{len(self._execs)}"
        with open(process_path, "w") as f:
            json.dump(process, f)
        child_fds: list[int] = []
        console: socket.socket | None = None
        session = _Exec(exec_id, 0)
        try:
            stdio, console, stdin_fd, session.outputs = self._stdio(
                request.tty, request.stdin, console_path, child_fds
            )
            args = ["exec", "--process", process_path, "--pid-file", pid_path, "--detach"]
            if console is not None:
                args += ["--console-socket", console_path]
            try:
                self._runtime(args + [cid], stdio)
            except RuntimeCommandFailed:
                for out in session.outputs:
                    os.close(out.fd)
                if stdin_fd >= 0:
                    os.close(stdin_fd)
                raise
            if console is not None:
                session.pty_master = _receive_pty(console)
                session.outputs = [_Output(session.pty_master, "stdout")]
                session.sink = Sink(self._loop, session.pty_master, shared=True)
            elif stdin_fd >= 0:
                session.sink = Sink(self._loop, stdin_fd)
            with open(pid_path) as f:
                session.pid = int(f.read().strip())
        finally:
            for fd in child_fds:
                os.close(fd)
            if console is not None:
                console.close()
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(console_path)
            for path in (process_path, pid_path):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
        for out in session.outputs:
            out.session = session
        if session.sink is not None:
            session.sink.on_drain = functools.partial(self._resume_readers, session.sink)
        self._execs[exec_id] = session
        self._watch_outputs(session.outputs)
        reply = protocol.encode_reply({"pid": session.pid, "tty": request.tty})
        if request.detach:
            conn.reply(reply)  # Docker discards a detached exec's output
            return
        sink = session.sink if request.stdin else None
        self._stream(conn, "exec", request.stdout, request.stderr, sink)
        session.conn = conn
        conn.send(reply)
        if rest and session.sink is not None:
            session.sink.write(rest)
