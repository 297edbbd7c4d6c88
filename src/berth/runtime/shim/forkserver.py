"""A fork-server for shims: one small process that forks a ready-to-run shim on request.

A shim started as a fresh interpreter spends 100-170 ms importing itself; a fork of a process
that has already imported the shim's modules takes about a millisecond. Forking berthd itself
would not do: its heap (aiohttp, the image store) makes every fork slower, and its threads
make forking unsafe (notes/runtime-floor.md). So berthd spawns this process once, at start-up,
as a fresh interpreter (``python -m berth.runtime.shim.forkserver``) that imports only the shim
and stays single-threaded.

Protocol, over a ``SOCK_SEQPACKET`` socketpair, one request at a time: berthd sends
``{"config": "<bundle>/shim.json"}`` with the write end of the shim's ready pipe attached
(SCM_RIGHTS); the server double-forks (so the shim is nobody's child and lives on when berthd
and the server are gone), the grandchild becomes the shim (``main.serve``), and the server
answers ``{"ok": true}`` once the intermediate is reaped. Readiness then arrives on the ready
pipe exactly as for a spawned shim. The server exits when berthd closes its end.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable

from berth.errors import Unavailable

log = logging.getLogger(__name__)

_MAX_MESSAGE = 64 * 1024
_REPLY_TIMEOUT = 10.0


class ForkServer:
    """berthd's handle on its fork-server; ``launch`` is safe to call from worker threads."""

    def __init__(self, sock: socket.socket, proc: subprocess.Popen[bytes]) -> None:
        self._sock = sock
        self._proc = proc
        self._lock = threading.Lock()
        self._dead = False

    @classmethod
    def spawn(cls, label: str = "") -> ForkServer:
        """Start the server process. ``label`` only shows in its command line (and so in every
        shim's), which lets ``pgrep -f <data root>`` find a daemon's shims."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            argv = [sys.executable, "-m", "berth.runtime.shim.forkserver", "--fd",
                    str(theirs.fileno())]
            if label:
                argv += ["--label", label]
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, pass_fds=(theirs.fileno(),), start_new_session=True)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.settimeout(_REPLY_TIMEOUT)
        return cls(ours, proc)

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def alive(self) -> bool:
        return not self._dead and self._proc.poll() is None

    def launch(self, config_path: str, ready_fd: int) -> None:
        """Have a shim forked for ``config_path``; it reports readiness on ``ready_fd`` (our
        copy stays open: the caller closes it). Raises Unavailable if the server is gone."""
        request = json.dumps({"config": config_path}).encode()
        with self._lock:
            if self._dead:
                raise Unavailable("shim fork-server is not running")
            try:
                socket.send_fds(self._sock, [request], [ready_fd])
                reply = self._sock.recv(_MAX_MESSAGE)
            except OSError as err:
                self._dead = True
                raise Unavailable(f"shim fork-server failed: {err}") from err
            if not reply:
                self._dead = True
                raise Unavailable("shim fork-server exited")
        answer = json.loads(reply)
        if not answer.get("ok"):
            raise Unavailable(f"shim fork-server: {answer.get('error', 'fork failed')}")

    def close(self) -> None:
        """Stop the server (running shims are not its children and are not affected)."""
        with self._lock:
            self._dead = True
            self._sock.close()
        try:
            self._proc.wait(5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


# -- the server process -------------------------------------------------------------------------


def serve_forever(sock: socket.socket) -> int:
    """Answer fork requests until the daemon closes its end."""
    # Imported once here so that every forked shim starts with them in memory.
    from berth.runtime.shim import main as shim_main
    from berth.runtime.shim import runtime_inproc
    from berth.runtime.shim import server as _server  # noqa: F401 - preloaded for the shims

    try:
        runtime_inproc.preload()
    except Exception:  # noqa: BLE001 - its shims import it themselves and report the error
        log.exception("cannot preload berth's runtime")

    gc.freeze()  # forked shims then do not dirty the shared pages when they collect
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(sock, _MAX_MESSAGE, 1)
        except InterruptedError:
            continue
        if not message:
            return 0
        try:
            reply = _fork_shim(sock, message, fds, shim_main.serve_config_file)
        finally:
            for fd in fds:
                os.close(fd)
        sock.send(json.dumps(reply).encode())


def _fork_shim(sock: socket.socket, message: bytes, fds: list[int],
               serve: Callable[[str, int], int]) -> dict[str, object]:
    try:
        config_path = str(json.loads(message)["config"])
    except (ValueError, KeyError, TypeError) as err:
        return {"ok": False, "error": f"bad request: {err}"}
    if len(fds) != 1:
        return {"ok": False, "error": "a request carries exactly one ready fd"}
    try:
        pid = os.fork()
    except OSError as err:
        return {"ok": False, "error": f"fork: {err.strerror}"}
    if pid == 0:  # the intermediate: one more fork, so the shim is re-parented away from us
        status = 1  # os._exit below, whatever happens: this child must never return
        try:
            sock.close()
            if os.fork() == 0:
                signal.signal(signal.SIGINT, signal.SIG_DFL)  # serve() sets its own
                signal.signal(signal.SIGHUP, signal.SIG_DFL)
                status = serve(config_path, fds[0])
            else:
                status = 0
        finally:
            os._exit(status)
    os.waitpid(pid, 0)
    return {"ok": True}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    fd = -1
    while args:
        flag, args = args[0], args[1:]
        if flag == "--fd" and args:
            fd, args = int(args[0]), args[1:]
        elif flag == "--label" and args:
            args = args[1:]
        else:
            print("usage: python -m berth.runtime.shim.forkserver --fd N [--label TEXT]",
                  file=sys.stderr)
            return 2
    # A Ctrl-C or hang-up meant for berthd is not ours: we end at EOF of its socket.
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    sock = socket.socket(fileno=fd)
    with contextlib.closing(sock):
        return serve_forever(sock)


if __name__ == "__main__":
    sys.exit(main())
