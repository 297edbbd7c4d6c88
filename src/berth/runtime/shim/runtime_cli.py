"""Run an OCI runtime's runc-compatible CLI (runc, crun, berth-runtime) from the shim."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile

from berth.errors import BerthError
from berth.runtime.shim.protocol import ShimConfig


class RuntimeCommandFailed(BerthError):
    """``<runtime> <subcommand>`` exited non-zero; the message is the runtime's error text."""


def run_runtime(
    config: ShimConfig, args: list[str], stdio: tuple[int, int, int] | None = None
) -> None:
    """Run ``<runtime> [runtime_args] [--root R] --log L --log-format json args`` to completion.

    ``stdio`` (stdin, stdout, stderr) is what ``create`` hands to the container; other commands
    get /dev/null and a memory file for stderr. Only this pid is waited for, so a caller's
    ``waitpid(-1)`` reaper never sees it. Raises RuntimeCommandFailed with the runtime's last
    logged error (or its stderr) on failure.
    """
    # beside the bundle, unless it was removed under a dying container (the runtime still
    # needs somewhere to write its log to delete the container)
    log_dir = config.bundle if os.path.isdir(config.bundle) else tempfile.gettempdir()
    log_path = os.path.join(log_dir, f".runtime-{os.getpid()}-{args[0]}.log")
    argv = [config.runtime, *config.runtime_args]
    if config.runtime_root:
        argv += ["--root", config.runtime_root]
    argv += ["--log", log_path, "--log-format", "json", *args]
    errbuf = os.memfd_create("runtime-stderr", os.MFD_CLOEXEC)
    devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    stdin, stdout, stderr = stdio if stdio else (devnull, devnull, errbuf)
    actions = [
        (os.POSIX_SPAWN_DUP2, stdin, 0),
        (os.POSIX_SPAWN_DUP2, stdout, 1),
        (os.POSIX_SPAWN_DUP2, stderr, 2),
    ]
    try:
        try:
            pid = os.posix_spawnp(argv[0], argv, dict(os.environ), file_actions=actions)
        except OSError as err:
            raise RuntimeCommandFailed(f"cannot run {argv[0]}: {err.strerror}") from err
        _, status = os.waitpid(pid, 0)
        if status != 0:
            text = _runtime_error(log_path) or _read_memfd(errbuf)
            code = os.waitstatus_to_exitcode(status)
            raise RuntimeCommandFailed(
                text or f"{config.runtime} {args[0]} failed with exit status {code}"
            )
    finally:
        os.close(errbuf)
        os.close(devnull)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(log_path)


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
