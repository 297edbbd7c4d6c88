"""Reading Docker's json-file logs (``<id>-json.log``), which the shim writes.

One JSON object a line: ``{"log": "text\\n", "stream": "stdout", "time": "RFC3339Nano"}``.
``tail``, ``since``, ``until`` and ``follow`` behave as ``docker logs`` does, across the rotated
files (``<id>-json.log.N`` … ``.1``, oldest first) that ``--log-opt max-size`` leaves.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path


@dataclass(frozen=True)
class LogEntry:
    stream: str  # stdout | stderr
    data: bytes
    time: str  # RFC3339Nano as written by the shim

    @property
    def epoch(self) -> float:
        return parse_timestamp(self.time)


@dataclass(frozen=True)
class LogQuery:
    tail: int | None = None  # None = all
    since: float = 0.0  # epoch seconds, 0 = beginning
    until: float = 0.0  # 0 = no bound
    follow: bool = False
    stdout: bool = True
    stderr: bool = True


def parse_timestamp(text: str) -> float:
    """RFC3339 with nanoseconds (Python parses only microseconds)."""
    main, _, rest = text.partition(".")
    frac = ""
    tz = "Z"
    if rest:
        digits = ""
        for i, ch in enumerate(rest):
            if not ch.isdigit():
                tz = rest[i:]
                break
            digits += ch
        frac = digits
    elif main.endswith("Z"):
        main = main[:-1]
    if tz == "Z":
        tz = "+00:00"
    base = datetime.fromisoformat(main + tz).timestamp()
    return base + (float("0." + frac) if frac else 0.0)


def parse_since(value: str, now: float) -> float:
    """Docker's ``--since``/``--until``: epoch seconds (with fraction), RFC3339, or a duration."""
    if not value:
        return 0.0
    try:
        return float(value)
    except ValueError:
        pass
    units = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    for suffix in ("ns", "us", "ms", "s", "m", "h"):
        if value.endswith(suffix):
            try:
                return now - float(value[: -len(suffix)]) * units[suffix]
            except ValueError:
                break
    try:
        return parse_timestamp(value)
    except ValueError:
        dt = datetime.fromisoformat(value)
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return dt.timestamp()


def _decode(line: bytes) -> LogEntry | None:
    try:
        obj = json.loads(line)
        return LogEntry(stream=obj["stream"], data=obj["log"].encode(), time=obj["time"])
    except (ValueError, KeyError, TypeError):
        return None  # a torn last line while the shim writes: skip it


def _wanted(entry: LogEntry, query: LogQuery) -> bool:
    if entry.stream == "stdout" and not query.stdout:
        return False
    if entry.stream == "stderr" and not query.stderr:
        return False
    if query.since and entry.epoch < query.since:
        return False
    return not (query.until and entry.epoch > query.until)


def _rotated(path: Path) -> list[Path]:
    """The rotated files of ``path``, oldest first."""
    found = []
    index = 1
    while (candidate := path.with_name(f"{path.name}.{index}")).exists():
        found.append(candidate)
        index += 1
    return found[::-1]


def read_logs(path: Path, query: LogQuery) -> tuple[list[LogEntry], int]:
    """The entries matching ``query`` and the offset reached in ``path`` (to follow from)."""
    entries: list[LogEntry] = []
    for old in _rotated(path):
        try:
            raw = old.read_bytes()
        except FileNotFoundError:  # rotated away meanwhile
            continue
        entries += [e for line in raw.splitlines() if (e := _decode(line)) and _wanted(e, query)]
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raw = b""
    end = raw.rfind(b"\n") + 1  # only complete lines
    entries += [e for line in raw[:end].splitlines() if (e := _decode(line)) and _wanted(e, query)]
    if query.tail is not None:
        entries = entries[-query.tail:] if query.tail > 0 else []
    return entries, end


async def follow_logs(path: Path, offset: int, query: LogQuery,
                      running: Callable[[], bool]) -> AsyncIterator[LogEntry]:
    """New entries after ``offset`` until the container stops and the file is drained.

    The file stays open between polls; when the shim rotates it (a new file under ``path``)
    the rest of the old one is read first, and a file emptied in place is read from its start.
    """
    pending = b""
    try:
        f = path.open("rb")
    except FileNotFoundError:
        return
    try:
        f.seek(offset)
        while True:
            alive = running()
            chunk = f.read()
            if not chunk:
                try:
                    current = os.stat(path)
                except FileNotFoundError:
                    current = None
                if current is not None and current.st_ino != os.fstat(f.fileno()).st_ino:
                    f.close()
                    try:
                        f = path.open("rb")  # rotated: go on in the new file
                    except FileNotFoundError:  # removed with its container
                        return
                    continue
                if os.fstat(f.fileno()).st_size < f.tell():
                    f.seek(0)  # emptied in place (max-file=1)
                    continue
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                entry = _decode(line)
                if entry and _wanted(entry, query):
                    yield entry
            if not alive and not chunk:
                return
            if not chunk:
                await asyncio.sleep(0.05)
    finally:
        f.close()
