"""Docker's json-file log writer: one JSON object a line, split on newlines.

Each complete line is one entry with its ``\\n``; a line longer than 16 KiB is cut into
16 KiB partial entries without a newline, as Docker's log copier does; what is left at the
end of a stream is written as a final entry without a newline.
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


class JsonLogWriter:
    """Appends entries for ``stdout``/``stderr`` to one file; never blocks on readers."""

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self._pending: dict[str, bytes] = {"stdout": b"", "stderr": b""}

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
            self._write(b"".join(out))

    def flush(self, stream: str) -> None:
        """End of a stream: write what is left as a final entry without newline."""
        rest = self._pending[stream]
        self._pending[stream] = b""
        if rest:
            self._write(encode_entry(rest, stream, rfc3339_nano()))

    def close(self) -> None:
        for stream in self._pending:
            self.flush(stream)
        os.close(self._fd)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
