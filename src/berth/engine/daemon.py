"""``berthd``: the daemon process. Flags, lock, pidfile, sockets, signals; the API does the rest.

Start-up, in order, each step needed by the next:
1. flags + daemon.json → ``DaemonConfig`` (a bad configuration never touches the disk);
2. logging to stderr in dockerd's ``time=... level=... msg=...`` form;
3. ``--userns-remap`` resolved (``dockremap`` made if asked for) and the data root laid out
   (``<data-root>/<uid>.<gid>/`` when remapped); its errors are printed as dockerd prints them;
   then an exclusive flock on ``<data-root>/berthd.lock``: one daemon per data root, ever;
4. the pidfile (refused if it names another live process, as dockerd does);
5. the engine (``wiring.build_engine``) and the API application over it;
6. one listening socket per ``-H``: bound, given its mode and group, *then* listened on, so no
   client can connect while the socket is still world-accessible.
SIGTERM/SIGINT stop accepting, let requests finish briefly, close the engine, remove the
sockets and the pidfile, release the lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import errno
import fcntl
import grp
import importlib
import logging
import os
import signal
import socket
import ssl
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from berth.engine.config import DaemonConfig, load_config, parse_args, parse_host
from berth.engine.tls import server_context
from berth.engine.userns import RemapError, setup_daemon_root, setup_remapped_root
from berth.engine.wiring import Engine, build_engine
from berth.errors import BerthError, FailedPrecondition, InvalidArgument

log = logging.getLogger(__name__)

AppFactory = Callable[[Engine], web.Application]

# Requests still running at shutdown (a long attach, a pull) get this long to finish.
_SHUTDOWN_GRACE = 2.0
_SIGNAL_NAMES = {signal.SIGTERM: "terminated", signal.SIGINT: "interrupt"}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``berthd`` console script; returns the exit status."""
    args = parse_args(argv)
    try:
        config = load_config(args)
    except BerthError as err:
        print(err.message, file=sys.stderr)
        return 1
    setup_logging(config.effective_log_level)
    try:
        run(config)
    except RemapError as err:  # dockerd prints these bare (its CreateDaemonRoot step)
        print(err.message, file=sys.stderr)
        return 1
    except BerthError as err:
        log.error("failed to start daemon: %s", err.message)
        return 1
    except OSError as err:
        log.error("failed to start daemon: %s", err)
        return 1
    return 0


def run(config: DaemonConfig, app_factory: AppFactory | None = None) -> None:
    """Run a daemon for ``config`` until SIGTERM or SIGINT."""
    factory = app_factory or _api_app_factory()
    # 0711, not dockerd's 0700: the default socket lives in the exec root, and --group members
    # must be able to reach it.
    config.exec_root.mkdir(parents=True, exist_ok=True, mode=0o711)
    log.info("Starting up")
    remap = setup_remapped_root(config.userns_remap)
    setup_daemon_root(config.data_root, remap)
    with data_root_lock(config.data_root), pidfile(config.pidfile):
        engine = build_engine(config, remap)
        asyncio.run(_serve(config, engine, factory))
        log.info("Daemon shutdown complete")


def _api_app_factory() -> AppFactory:
    # The API sits above the engine in the import layers; berthd's entry point lives in
    # engine (pyproject), so the API module is named here instead of imported, keeping the
    # layer contract intact. run() takes any factory, so a test may serve an app of its own.
    module = importlib.import_module("berth.api.app")
    factory: AppFactory = module.build_app
    return factory


# -- exclusive ownership ------------------------------------------------------------------------


@contextlib.contextmanager
def data_root_lock(data_root: Path) -> Iterator[None]:
    """Hold an exclusive flock on ``<data-root>/berthd.lock`` for the daemon's lifetime.

    The lock file stays behind on exit; removing it would let two starters lock different
    files of the same name."""
    path = data_root / "berthd.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise FailedPrecondition(
                f"data root {data_root} is in use by another berthd (pid {holder}); "
                f"stop it or use a different --data-root") from err
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def pidfile(path: Path) -> Iterator[None]:
    """Write our pid to ``path``; refuse if it names another live process (dockerd's rule)."""
    try:
        old = int(path.read_text().strip() or "0")
    except (FileNotFoundError, ValueError):
        old = 0
    if old and old != os.getpid() and Path(f"/proc/{old}").exists():
        raise FailedPrecondition(
            f"pid file found, ensure berthd is not running or delete {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(f"{os.getpid()}")
    os.replace(tmp, path)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            if path.read_text().strip() == str(os.getpid()):
                path.unlink()


# -- listening sockets --------------------------------------------------------------------------


@dataclass(frozen=True)
class Listener:
    host: str
    sock: socket.socket
    path: Path | None  # the unix socket file to remove at shutdown
    tls: ssl.SSLContext | None = None  # TCP only


def socket_gid(group: str | None) -> int:
    if group is None:
        return 0
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError as err:
        raise InvalidArgument(f"group {group} not found") from err


def open_listener(host: str, gid: int, tls: ssl.SSLContext | None = None) -> Listener:
    scheme, address = parse_host(host)
    if scheme == "tcp":
        name, _, port = address.rpartition(":")
        sock = socket.create_server((name or "0.0.0.0", int(port)))
        sock.setblocking(False)
        if tls is None or tls.verify_mode != ssl.CERT_REQUIRED:
            log.warning("Binding to IP address without --tlsverify is insecure: %s", host)
        return Listener(host, sock, None, tls)
    path = Path(address)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    if path.exists() or path.is_symlink():
        if _someone_listens(path):
            raise FailedPrecondition(f"another daemon is already listening on {path}")
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        # Mode and owner before listen(): nobody can connect to a socket that is not listening.
        os.chmod(path, 0o660)
        os.chown(path, 0, gid)
        sock.listen(128)
    except OSError as err:
        sock.close()
        raise FailedPrecondition(f"can't create unix socket {path}: {err.strerror}") from err
    sock.setblocking(False)
    return Listener(host, sock, path)


def _someone_listens(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True


# -- serving ------------------------------------------------------------------------------------


async def _serve(config: DaemonConfig, engine: Engine, factory: AppFactory) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    received: list[signal.Signals] = []

    def on_signal(signum: signal.Signals) -> None:
        received.append(signum)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    listeners: list[Listener] = []
    runner = web.AppRunner(factory(engine), handle_signals=False, access_log=None,
                           shutdown_timeout=_SHUTDOWN_GRACE)
    try:
        await runner.setup()
        if engine.containers is not None:
            # re-adopt containers whose shims outlived the previous daemon
            await engine.containers.restore()
        gid = socket_gid(config.group)
        tls = server_context(config.tls)
        for host in config.hosts:
            listener = open_listener(host, gid, tls)
            listeners.append(listener)
            await web.SockSite(runner, listener.sock, ssl_context=listener.tls).start()
            log.info("API listen on %s", listener.path or host)
        log.info("Daemon has completed initialization")
        await stop.wait()
        log.info("Processing signal '%s'", _SIGNAL_NAMES.get(received[0], received[0].name))
    finally:
        await runner.cleanup()
        await engine.close()
        for listener in listeners:
            listener.sock.close()
            if listener.path is not None:
                with contextlib.suppress(FileNotFoundError):
                    listener.path.unlink()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


# -- logging ------------------------------------------------------------------------------------


class LogfmtFormatter(logging.Formatter):
    """dockerd's (logrus) text form: ``time="..." level=info msg="..."``."""

    _LEVELS = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warning",
               logging.ERROR: "error", logging.CRITICAL: "fatal"}

    def format(self, record: logging.LogRecord) -> str:
        when = dt.datetime.fromtimestamp(record.created, dt.UTC)
        stamp = when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond:06d}Z"
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        level = self._LEVELS.get(record.levelno, record.levelname.lower())
        return f'time="{stamp}" level={level} msg={_quote(message)}'


def _quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def setup_logging(level: int) -> None:
    """Route every logger to stderr at ``level``; called once, by the entry point only."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's own access and server logs are noise at info; keep them for debugging.
    logging.getLogger("aiohttp").setLevel(level if level <= logging.DEBUG else logging.WARNING)


if __name__ == "__main__":
    sys.exit(main())
