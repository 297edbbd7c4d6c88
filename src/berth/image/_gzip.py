"""gzip for layers on their way to a registry: read as a stream, compressed in parallel pieces.

Docker always pushes layers gzip-compressed. Compressing a layer is the slow part of a push
(zlib deflates 15–60 MB/s on one core), so, as pigz does, the layer is cut into 1 MiB pieces
compressed independently on a thread pool (zlib runs without the GIL) and joined into one
valid gzip member: each piece is a raw deflate stream primed with the 32 KiB of data before it
(so matches still reach back across pieces) and ended with a sync flush (byte-aligned, not
final), the last one with a final block; the CRC-32 and length trailer covers the whole.

A piece whose samples do not compress (already compressed files, media, random bytes) is
stored rather than deflated: deflate would spend its time finding nothing, and the stored
bytes are what it would emit anyway.

The output depends only on the input and the settings here (no timestamp, no name), so the
same layer compresses to the same blob and digest every time.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections import deque
from concurrent.futures import Executor, Future
from typing import BinaryIO

from berth.oci.digest import Digest

PIECE = 1 << 20
LEVEL = 6  # zlib's default, as Go's gzip.DefaultCompression that dockerd uses
_WINDOW = 32 * 1024
_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no flags, mtime 0, OS unknown
_SAMPLE = 8 * 1024
_SAMPLES = 4
_STORE_ABOVE = 0.97  # a sample that deflates to more than this of its size does not compress


def compress_piece(data: bytes, primer: bytes, last: bool, level: int = LEVEL) -> bytes:
    """One piece as raw deflate, primed with the data before it; final block only if last."""
    if level and not _compressible(data):
        level = 0
    if level and primer:
        deflate = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS, zdict=primer)
    else:
        deflate = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
    return deflate.compress(data) + deflate.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)


def _compressible(data: bytes) -> bool:
    """Whether any of a few samples spread over ``data`` shrinks under fast deflate."""
    if len(data) <= _SAMPLE * _SAMPLES:
        return True  # small: just deflate it
    step = (len(data) - _SAMPLE) // (_SAMPLES - 1)
    for i in range(_SAMPLES):
        sample = data[i * step : i * step + _SAMPLE]
        if len(zlib.compress(sample, 1)) < _STORE_ABOVE * len(sample):
            return True
    return False


class GzipReader:
    """The gzip form of ``source``, read like a file; ``digest`` and ``size`` once at its end.

    ``pool`` compresses pieces in parallel (up to ``ahead`` pieces in flight); without one they
    are compressed in the reading thread. ``consumed`` counts the uncompressed bytes read so
    far (what docker's push progress shows).
    """

    def __init__(self, source: BinaryIO, pool: Executor | None = None, ahead: int = 4,
                 level: int = LEVEL) -> None:
        self._source = source
        self._pool = pool
        self._ahead = max(1, ahead)
        self._level = level
        self._pending: deque[Future[bytes] | bytes] = deque()
        # one piece read ahead tells which piece is the last; None once it was queued
        self._next: bytes | None = source.read(PIECE)
        self._primer = b""
        self._crc = 0
        self._length = 0
        self._out = _HEADER
        self._pos = 0
        self._finished = False
        self._hasher = hashlib.sha256()
        self.size = 0
        self.consumed = 0

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            parts = []
            while data := self.read(PIECE):
                parts.append(data)
            return b"".join(parts)
        while self._pos >= len(self._out):
            self._pos = 0
            if not self._fill():
                self._out = b""
                return b""
        if self._pos == 0 and size >= len(self._out):
            data, self._out = self._out, b""
        else:
            # http.client asks for its block size at a time: slice, never re-copy the rest
            data = self._out[self._pos : self._pos + size]
            self._pos += len(data)
        self._hasher.update(data)
        self.size += len(data)
        return data

    @property
    def digest(self) -> Digest:
        """The digest of what was read so far (of the whole blob once ``read`` returned b"")."""
        return Digest("sha256:" + self._hasher.hexdigest())

    def _fill(self) -> bool:
        """Queue pieces up to the look-ahead; move the oldest one's output to ``_out``."""
        while self._next is not None and len(self._pending) < self._ahead:
            piece: bytes = self._next
            following = self._source.read(PIECE) if piece else b""
            last = not following
            self._next = None if last else following
            self._crc = zlib.crc32(piece, self._crc)
            self._length += len(piece)
            self.consumed += len(piece)
            primer = self._primer
            self._primer = piece[-_WINDOW:] if len(piece) >= _WINDOW else \
                (primer + piece)[-_WINDOW:]
            if self._pool is None:
                self._pending.append(compress_piece(piece, primer, last, self._level))
            else:
                self._pending.append(self._pool.submit(compress_piece, piece, primer, last,
                                                       self._level))
        if self._pending:
            head = self._pending.popleft()
            self._out = head if isinstance(head, bytes) else head.result()
            return True
        if not self._finished:
            self._finished = True
            self._out = struct.pack("<II", self._crc, self._length & 0xFFFFFFFF)
            return True
        return False

    def close(self) -> None:
        for item in self._pending:
            if not isinstance(item, bytes):
                item.cancel()
        self._pending.clear()
        self._source.close()
