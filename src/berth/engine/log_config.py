"""A container's logging driver (``--log-driver``, ``--log-opt``), checked as dockerd checks it.

berth keeps logs with two of Docker's drivers: ``json-file`` (the shim writes ``<id>-json.log``,
rotated with ``max-size``/``max-file``) and ``none`` (no log; ``logs`` cannot read it). The
options are checked twice, as dockerd does: their names at create (``check_log_config``), their
values when the log is opened at start (``log_settings``, "failed to initialize logging
driver: ...").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from berth.errors import InvalidArgument, NotFound, NotImplementedByBerth

JSON_FILE = "json-file"
NONE = "none"

# Drivers a Linux dockerd 20.10 has built in; any other name is looked up as a plugin.
_DOCKER_DRIVERS = frozenset({"awslogs", "fluentd", "gcplogs", "gelf", "journald", JSON_FILE,
                             "local", "logentries", NONE, "splunk", "syslog"})
_JSON_FILE_OPTS = frozenset({"max-file", "max-size", "compress", "labels", "labels-regex",
                             "env", "env-regex", "tag"})
_ANY_DRIVER_OPTS = frozenset({"mode", "max-buffer-size"})  # dockerd's own, for every driver
_SIZE = re.compile(r"^(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$")
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


@dataclass(frozen=True)
class LogSettings:
    """Where the shim writes the log and when it rotates it."""

    path: Path | None  # None: the none driver keeps no log
    max_size: int = 0  # bytes; 0 = never rotated
    max_files: int = 1


def check_log_config(driver: str, opts: dict[str, str]) -> None:
    """At create: a driver berth has and option names it knows (dockerd's wording)."""
    if driver not in _DOCKER_DRIVERS:
        raise NotFound(f'error looking up logging plugin {driver}: plugin "{driver}" not found')
    if driver == NONE:
        return
    if driver != JSON_FILE:
        raise NotImplementedByBerth(f'logging driver "{driver}" is not supported by berth '
                                    f"(use {JSON_FILE} or {NONE})")
    for key in opts:
        if key not in _JSON_FILE_OPTS and key not in _ANY_DRIVER_OPTS:
            raise InvalidArgument(f"unknown log opt '{key}' for {JSON_FILE} log driver")


def log_settings(driver: str, opts: dict[str, str], path: Path) -> LogSettings:
    """At start: the option values, or dockerd's "failed to initialize logging driver"."""
    if driver == NONE:
        return LogSettings(None)
    try:
        return _json_file_settings(opts, path)
    except InvalidArgument as err:
        raise InvalidArgument(f"failed to initialize logging driver: {err}") from None


def reads_logs(driver: str) -> bool:
    return driver != NONE


def _json_file_settings(opts: dict[str, str], path: Path) -> LogSettings:
    max_size = 0
    if "max-size" in opts:
        max_size = parse_size(opts["max-size"])
        if max_size <= 0:
            raise InvalidArgument("max-size must be a positive number")
    max_files = 1
    if "max-file" in opts:
        text = opts["max-file"]
        if not re.fullmatch(r"[+-]?\d+", text):
            raise InvalidArgument(f'strconv.Atoi: parsing "{text}": invalid syntax')
        max_files = int(text)
        if max_files < 1:
            raise InvalidArgument("max-file cannot be less than 1")
    return LogSettings(path, max_size, max_files if max_size else 1)


def parse_size(text: str) -> int:
    """Docker's ``RAMInBytes``: ``10m``, ``1.5g``, ``512KiB`` in powers of 1024."""
    match = _SIZE.match(text)
    if match is None:
        raise InvalidArgument(f"invalid size: '{text}'")
    try:
        number = float(match.group(1))
    except ValueError:
        raise InvalidArgument(f"invalid size: '{text}'") from None
    return int(number * _UNITS[(match.group(2) or "").lower()])
