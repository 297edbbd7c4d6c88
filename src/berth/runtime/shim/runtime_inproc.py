"""berth's own runtime called inside the shim instead of as ``berth-runtime`` processes.

Each ``berth-runtime`` command is a fresh interpreter (~100 ms); the same verbs
(``berth.runtime.init.container``) take a few milliseconds when the shim, which has them
imported already (the fork-server preloads them), calls them itself. The shim is
single-threaded, so the raw clone of ``create`` is safe here. The arguments and the error
texts are the CLI's, so ``run_runtime`` and this are interchangeable; ``exec`` still runs the
CLI (it enters the container's namespaces, which must not happen to the shim itself).
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable
from typing import Protocol

from berth.errors import BerthError
from berth.runtime.shim.protocol import ShimConfig
from berth.runtime.shim.runtime_cli import RuntimeCommandFailed, run_runtime


class RuntimeRunner(Protocol):
    """``run_runtime`` with the config bound: ``runner(["start", id])``."""

    def __call__(self, args: list[str], stdio: tuple[int, int, int] | None = None) -> None: ...


log = logging.getLogger(__name__)

BUILTIN_RUNTIME = "berth-runtime"
_IN_PROCESS = ("create", "start", "delete", "kill", "pause", "resume")
_PREFIXED = ("create", "start")  # berth-runtime says "berth-runtime create failed: ..."
# The shim ignores these; the container's process must start with the default dispositions.
_SHIM_IGNORED = (signal.SIGINT, signal.SIGHUP)


def preload() -> None:
    """Import the runtime (the fork-server does, so its shims start with it in memory)."""
    from berth.runtime.init import cli  # noqa: F401


def runtime_runner(config: ShimConfig) -> RuntimeRunner:
    """How the shim runs ``<runtime> <args>``: in-process for berth's runtime, else the CLI."""
    if os.path.basename(config.runtime) == BUILTIN_RUNTIME and not config.runtime_args:
        return InProcessRuntime(config).run

    def run_cli(args: list[str], stdio: tuple[int, int, int] | None = None) -> None:
        run_runtime(config, args, stdio)

    return run_cli


class InProcessRuntime:
    """``run_runtime`` for ``berth-runtime``, without a process."""

    def __init__(self, config: ShimConfig) -> None:
        # Imported here: a shim of another runtime never needs berth's.
        from berth.runtime.init import cli as runtime_cli
        from berth.runtime.init.state import DEFAULT_ROOT

        self._cli = runtime_cli
        self._config = config
        self._root = config.runtime_root or DEFAULT_ROOT

    def run(self, args: list[str], stdio: tuple[int, int, int] | None = None) -> None:
        if not args or args[0] not in _IN_PROCESS:
            run_runtime(self._config, args, stdio)
            return
        command = args[0]
        started = time.monotonic()
        try:
            parsed = self._cli.parse_args(args)
            handler = self._cli.COMMANDS[command]
            if command == "create":
                _with_container_stdio(stdio, lambda: handler(self._root, parsed))
            else:
                handler(self._root, parsed)
        except (BerthError, OSError) as err:
            text = str(err)
            if command in _PREFIXED:
                text = f"{BUILTIN_RUNTIME} {command} failed: {text}"
            raise RuntimeCommandFailed(text) from err
        finally:
            log.debug("in-process %s: %.1f ms", command, (time.monotonic() - started) * 1000)


def _with_container_stdio(stdio: tuple[int, int, int] | None, create: Callable[[], int]) -> None:
    """Run ``create`` with the container's stdio on fds 0-2 and default signal dispositions,
    which the cloned init inherits, then put the shim's own back."""
    saved = [os.dup(fd) for fd in (0, 1, 2)]
    dispositions = {sig: signal.signal(sig, signal.SIG_DFL) for sig in _SHIM_IGNORED}
    try:
        if stdio is not None:
            for target, fd in enumerate(stdio):
                os.dup2(fd, target)
        create()
    finally:
        for target, fd in enumerate(saved):
            os.dup2(fd, target)
            os.close(fd)
        for sig, old in dispositions.items():
            signal.signal(sig, old)
