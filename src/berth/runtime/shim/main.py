"""``berth-shim``: the per-container monitor process (containerd-shim's and conmon's role).

Usage: ``berth-shim --config <bundle>/shim.json [--ready-fd N]``. The process forks at once
and the parent exits, so whoever launched it can reap it and the shim lives on in its own
session, re-parented away from berthd; the shim then writes its pid file, becomes a child
subreaper and runs the container (``berth.runtime.shim.server``). Readiness, or the runtime's
error, is written as one JSON object to the ready fd, which is then closed.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import signal
import sys

from berth.runtime.shim.protocol import ShimConfig

log = logging.getLogger(__name__)

PR_SET_CHILD_SUBREAPER = 36


def _set_child_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), "prctl(PR_SET_CHILD_SUBREAPER)")


def _write_pid_file(path: str) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(f"{os.getpid()}\n")
    os.rename(tmp, path)


def _detach_stdio() -> None:
    devnull = os.open(os.devnull, os.O_RDWR)
    for target in (0, 1, 2):
        os.dup2(devnull, target)
    if devnull > 2:
        os.close(devnull)


USAGE = "usage: berth-shim --config PATH [--ready-fd N] [--foreground]"


def main(argv: list[str] | None = None) -> int:
    # Parsed by hand: argparse is a noticeable share of a shim's start-up.
    args = sys.argv[1:] if argv is None else argv
    config_path, ready_fd, foreground = "", None, False
    try:
        while args:
            flag, args = args[0], args[1:]
            if flag == "--foreground":
                foreground = True
            elif flag == "--config" and args:
                config_path, args = args[0], args[1:]
            elif flag == "--ready-fd" and args:
                ready_fd, args = int(args[0]), args[1:]
            else:
                raise ValueError(flag)
    except ValueError:
        print(USAGE, file=sys.stderr)
        return 2
    if not config_path:
        print(USAGE, file=sys.stderr)
        return 2
    with open(config_path) as f:
        config = ShimConfig.from_json(f.read())
    if not foreground:
        if os.fork() > 0:
            os._exit(0)  # the launcher reaps this at once; the shim is re-parented
    return serve(config, ready_fd)


def serve_config_file(config_path: str, ready_fd: int) -> int:
    """``serve`` for a shim forked by the fork-server: the config is read here, and a config
    that cannot be read is reported on the ready fd (there is no stderr to read)."""
    try:
        with open(config_path) as f:
            config = ShimConfig.from_json(f.read())
    except (OSError, ValueError, TypeError) as err:
        with contextlib.suppress(OSError):
            os.write(ready_fd, json.dumps({"ok": False, "error": f"shim: {err}"}).encode() + b"\n")
        return 1
    return serve(config, ready_fd)


def serve(config: ShimConfig, ready_fd: int | None = None) -> int:
    """Run the shim in this process until the container has exited; returns the exit status.

    Also the entry point for a fork-server that forks shims with these modules already
    imported (a fresh interpreter spends most of a shim's start-up on imports).
    """
    if ready_fd is not None:
        # The runtime and the container must not inherit it: the launcher waits for its EOF.
        os.set_inheritable(ready_fd, False)
    if os.getsid(0) != os.getpid():
        try:
            os.setsid()
        except PermissionError:  # a process group leader (run in the foreground by a shell)
            pass
    _detach_stdio()
    for sig in (signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    if config.debug_log:
        logging.basicConfig(
            filename=config.debug_log,
            level=logging.DEBUG,
            format="%(asctime)s shim[%(process)d] %(levelname)s %(name)s: %(message)s",
        )
    _write_pid_file(config.pid_file)
    _set_child_subreaper()

    from berth.runtime.shim.server import Shim

    try:
        return Shim(config, ready_fd).run()
    except Exception:
        log.exception("shim failed")
        return 1
    finally:
        # only our own: a new shim of the same container (a quick restart) may have replaced it
        try:
            with open(config.pid_file) as f:
                if f.read().strip() == str(os.getpid()):
                    os.unlink(config.pid_file)
        except (FileNotFoundError, ValueError):
            pass


if __name__ == "__main__":
    sys.exit(main())
