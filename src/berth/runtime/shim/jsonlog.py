"""Docker's json-file log writer: one JSON object a line, split on newlines.

Each complete line is one entry with its ``\\n``; a line longer than 16 KiB is cut into
16 KiB partial entries without a newline, as Docker's log copier does; what is left at the
end of a stream is written as a final entry without a newline.

``--log-opt max-size``/``max-file`` rotate as Docker's json-file driver does: before an entry
is written to a file that has reached ``max_size``, ``<log>.1`` … become ``<log>.2`` …, the
file becomes ``<log>.1`` and a new one is started; with one file it is emptied instead.
"""

from __future__ import annotations

import json
import os
import time

MAX_ENTRY = 16 * 1024

# Go's encoding/json escapes these; Docker's log files therefore never contain them raw.
_GO_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def rfc3339_nano(ns: int | None = None) -> str:
    """UTC time with nine fraction digits, e.g. ``2026-12-03T13:22:35.123456789Z``."""
    if ns is None:
        ns = time.time_ns()
    seconds, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{frac:09d}Z"


def encode_entry(data: bytes, stream: str, timestamp: str) -> bytes:
    text = data.decode("utf-8", errors="replace")
    log = json.dumps(text, ensure_ascii=False).translate(_GO_ESCAPES)
    return f'{{"log":{log},"stream":"{stream}","time":"{timestamp}"}}\n'.encode()


def rotated_name(path: str, index: int) -> str:
    """``<log>.1`` is the newest rotated file, ``<log>.<max-file - 1>`` the oldest."""
    return f"{path}.{index}"


class JsonLogWriter:
    """Appends entries for ``stdout``/``stderr`` to one file; never blocks on readers.

    ``max_size`` (bytes, 0 = unbounded) and ``max_files`` are the json-file driver's options.
    """

    def __init__(self, path: str, max_size: int = 0, max_files: int = 1) -> None:
        self._path = path
        self._max_size = max_size
        self._max_files = max(1, max_files)
        self._fd = self._open()
        self._size = os.fstat(self._fd).st_size
        self._pending: dict[str, bytes] = {"stdout": b"", "stderr": b""}

    def _open(self) -> int:
        return os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)

    def feed(self, stream: str, data: bytes) -> None:
        buf = self._pending[stream] + data
        timestamp = rfc3339_nano()
        out = []
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0 or nl - start >= MAX_ENTRY:
                # No newline within the next 16 KiB: emit full-size partial entries.
                while len(buf) - start >= MAX_ENTRY and (nl < 0 or nl - start >= MAX_ENTRY):
                    out.append(encode_entry(buf[start : start + MAX_ENTRY], stream, timestamp))
                    start += MAX_ENTRY
                if nl < 0:
                    break
                continue
            out.append(encode_entry(buf[start : nl + 1], stream, timestamp))
            start = nl + 1
        self._pending[stream] = buf[start:]
        if out:
            self._emit(out)

    def flush(self, stream: str) -> None:
        """End of a stream: write what is left as a final entry without newline."""
        rest = self._pending[stream]
        self._pending[stream] = b""
        if rest:
            self._emit([encode_entry(rest, stream, rfc3339_nano())])

    def close(self) -> None:
        for stream in self._pending:
            self.flush(stream)
        os.close(self._fd)

    def _emit(self, entries: list[bytes]) -> None:
        if not self._max_size:
            self._write(b"".join(entries))
            return
        for entry in entries:  # the size is checked before every entry, as Docker does
            if self._size >= self._max_size:
                self._rotate()
            self._write(entry)

    def _rotate(self) -> None:
        if self._max_files < 2:
            os.ftruncate(self._fd, 0)
        else:
            for index in range(self._max_files - 1, 1, -1):
                try:
                    os.rename(rotated_name(self._path, index - 1),
                              rotated_name(self._path, index))
                except FileNotFoundError:
                    pass
            os.rename(self._path, rotated_name(self._path, 1))
            os.close(self._fd)
            self._fd = self._open()
        self._size = 0

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self._size += len(data)
