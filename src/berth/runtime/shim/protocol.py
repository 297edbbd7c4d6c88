"""The shim's control protocol, its launch config and its exit file.

Wire format (unix stream socket, one request per connection):

* the client sends one JSON object on one line, ``{"op": "<name>", ...fields}``;
* the shim answers one JSON line: ``{"ok": true, ...result}`` or
  ``{"ok": false, "error": "<text>", "kind": "<berth error class>"}``;
* for ``attach`` the connection then carries raw streams: shim → client Docker's multiplexed
  frames (8-byte header ``[stream, 0, 0, 0, size as big-endian uint32]`` then ``size`` bytes;
  stream 1 stdout, 2 stderr; a tty container's output is all stream 1), client → shim the
  container's stdin bytes. The shim closes the connection when the container's output ends.

Requests: ``start``, ``attach {stdin, stdout, stderr}``, ``resize {height, width}``,
``kill {signal, all}``, ``pause``, ``resume``, ``state``, ``wait`` (answers when the container
has exited and its runtime state is deleted), ``exec {exec_id, process, tty, stdin, stdout,
stderr, detach}`` (then the exec's streams, like attach), ``exec_state {exec_id}``
(``{pid, running, exit_code}``), ``exec_resize {exec_id, height, width}``.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import asdict, dataclass, fields
from typing import Any

from berth.errors import InvalidArgument

STDOUT = 1
STDERR = 2
FRAME_HEADER = struct.Struct(">BxxxI")
EXIT_FILE_NAME = "exit.json"
CONTAINER_PID_FILE_NAME = "init.pid"
MAX_LINE = 1 << 20


def frame(stream: int, data: bytes) -> bytes:
    """One Docker multiplexed-stream frame."""
    return FRAME_HEADER.pack(stream, len(data)) + data


def parse_frame_header(header: bytes) -> tuple[int, int]:
    """(stream, size) of an 8-byte frame header."""
    stream, size = FRAME_HEADER.unpack(header)
    return int(stream), int(size)


@dataclass(frozen=True)
class ShimConfig:
    """How one shim runs one container; written by ``start_shim``, read by the shim.

    ``runtime`` is a path or a name on PATH (runc, crun, berth-runtime); ``runtime_args`` are
    global options placed before the subcommand (daemon.json ``runtimeArgs``).
    """

    container_id: str
    bundle: str
    socket_path: str
    log_path: str  # Docker's json-file log, <id>-json.log; "" for the none driver
    pid_file: str  # the shim's own pid
    runtime: str = "runc"
    runtime_root: str | None = None
    runtime_args: tuple[str, ...] = ()
    tty: bool = False
    open_stdin: bool = False
    stdin_once: bool = False
    linger_seconds: float = 2.0
    drain_seconds: float = 2.0  # how long output may stay open after the init exits
    debug_log: str | None = None  # the shim's own log (it has no stderr)
    log_max_size: int = 0  # json-file max-size in bytes; 0 = the log is never rotated
    log_max_files: int = 1  # json-file max-file

    @property
    def exit_file(self) -> str:
        return os.path.join(self.bundle, EXIT_FILE_NAME)

    @property
    def container_pid_file(self) -> str:
        return os.path.join(self.bundle, CONTAINER_PID_FILE_NAME)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ShimConfig:
        raw = json.loads(text)
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in raw.items() if k in known}
        values["runtime_args"] = tuple(values.get("runtime_args", ()))
        return cls(**values)


@dataclass(frozen=True)
class ExitStatus:
    """How the container ended, as Docker reports it (128+signal for a signal death)."""

    exit_code: int
    exited_at: str  # RFC3339 with nanoseconds, UTC
    oom_killed: bool
    pid: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ExitStatus:
        return cls(
            exit_code=int(raw["exit_code"]),
            exited_at=str(raw["exited_at"]),
            oom_killed=bool(raw.get("oom_killed", False)),
            pid=int(raw.get("pid", 0)),
        )


@dataclass(frozen=True)
class ShimState:
    """``created`` | ``running`` | ``paused`` | ``stopped``; ``exit`` once stopped."""

    status: str
    pid: int
    exit: ExitStatus | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "pid": self.pid,
            "exit": self.exit.to_json() if self.exit else None,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ShimState:
        exit_raw = raw.get("exit")
        return cls(
            status=str(raw["status"]),
            pid=int(raw.get("pid", 0)),
            exit=ExitStatus.from_json(exit_raw) if exit_raw else None,
        )


@dataclass(frozen=True)
class ExecState:
    """An exec'd process: ``running`` until it has exited and its output has ended."""

    pid: int
    running: bool
    exit_code: int | None

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ExecState:
        code = raw.get("exit_code")
        return cls(int(raw["pid"]), bool(raw["running"]), None if code is None else int(code))


def save_exit_file(path: str, status: ExitStatus) -> None:
    """Write the exit record atomically: temp file, rename.

    No fsync: the record outlives berthd and the shim (the page cache does), which is what it
    is for; after a host crash the container is gone anyway and a lost or torn record reads
    as "no record" (exit code 255 on restore). Two fsyncs cost 5-10 ms of every ``run``.
    """
    directory = os.path.dirname(path) or "."
    tmp = os.path.join(directory, f".exit-{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as f:
            json.dump(status.to_json(), f)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def load_exit_file(path: str) -> ExitStatus | None:
    """The recorded exit, or None if the container has not exited (or no shim recorded it)."""
    try:
        with open(path) as f:
            return ExitStatus.from_json(json.load(f))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):  # torn by a host crash: no usable record
        return None


# ---------------------------------------------------------------- requests


@dataclass(frozen=True)
class StartRequest:
    op: str = "start"


@dataclass(frozen=True)
class AttachRequest:
    stdin: bool = False
    stdout: bool = True
    stderr: bool = True
    op: str = "attach"


@dataclass(frozen=True)
class ResizeRequest:
    height: int
    width: int
    op: str = "resize"


@dataclass(frozen=True)
class KillRequest:
    signal: int
    all: bool = False  # every process of the container (runtime kill --all)
    op: str = "kill"


@dataclass(frozen=True)
class PauseRequest:
    op: str = "pause"


@dataclass(frozen=True)
class ResumeRequest:
    op: str = "resume"


@dataclass(frozen=True)
class StateRequest:
    op: str = "state"


@dataclass(frozen=True)
class WaitRequest:
    op: str = "wait"


@dataclass(frozen=True)
class ExecRequest:
    """Run another process in the container (``runtime exec --detach``).

    ``process`` is the OCI ``process`` object as JSON text (its ``terminal`` must equal
    ``tty``). Unless ``detach``, the connection then carries the exec's streams like
    ``attach``; the client's half-close closes the exec's stdin.
    """

    exec_id: str
    process: str
    tty: bool = False
    stdin: bool = False
    stdout: bool = True
    stderr: bool = True
    detach: bool = False
    op: str = "exec"


@dataclass(frozen=True)
class ExecStateRequest:
    exec_id: str
    op: str = "exec_state"


@dataclass(frozen=True)
class ExecResizeRequest:
    exec_id: str
    height: int
    width: int
    op: str = "exec_resize"


Request = (
    StartRequest
    | AttachRequest
    | ResizeRequest
    | KillRequest
    | PauseRequest
    | ResumeRequest
    | StateRequest
    | WaitRequest
    | ExecRequest
    | ExecStateRequest
    | ExecResizeRequest
)

_REQUEST_TYPES: dict[str, type[Request]] = {
    "start": StartRequest,
    "attach": AttachRequest,
    "resize": ResizeRequest,
    "kill": KillRequest,
    "pause": PauseRequest,
    "resume": ResumeRequest,
    "state": StateRequest,
    "wait": WaitRequest,
    "exec": ExecRequest,
    "exec_state": ExecStateRequest,
    "exec_resize": ExecResizeRequest,
}


def encode_request(request: Request) -> bytes:
    return json.dumps(asdict(request)).encode() + b"\n"


def decode_request(line: bytes) -> Request:
    """Parse one request line; unknown ops and bad fields raise InvalidArgument."""
    try:
        raw = json.loads(line)
    except ValueError as err:
        raise InvalidArgument(f"malformed shim request: {err}") from err
    if not isinstance(raw, dict):
        raise InvalidArgument("malformed shim request: not an object")
    op = raw.get("op")
    kind = _REQUEST_TYPES.get(op) if isinstance(op, str) else None
    if kind is None:
        raise InvalidArgument(f"unknown shim request: {op!r}")
    expected = {f.name: f.type for f in fields(kind)}
    values = {k: v for k, v in raw.items() if k in expected}
    for name, value in values.items():
        want = bool if expected[name] == "bool" else int if expected[name] == "int" else str
        if not isinstance(value, want) or (want is int and isinstance(value, bool)):
            raise InvalidArgument(f"shim request {op}: field {name} must be {want.__name__}")
    try:
        return kind(**values)
    except TypeError as err:
        raise InvalidArgument(f"shim request {op}: {err}") from err


def encode_reply(result: dict[str, Any]) -> bytes:
    return json.dumps({"ok": True, **result}).encode() + b"\n"


def encode_error(message: str, kind: str = "Internal") -> bytes:
    return json.dumps({"ok": False, "error": message, "kind": kind}).encode() + b"\n"
