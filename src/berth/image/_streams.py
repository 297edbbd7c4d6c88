"""Compression sniffing and spooling of archives and layers: gzip, bzip2, xz; zstd if importable."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import importlib
import lzma
import os
import tempfile
import zlib
from pathlib import Path
from typing import Any, BinaryIO, cast

from berth.errors import InvalidArgument
from berth.oci.digest import Digest

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_BZIP2_MAGIC = b"BZh"
_XZ_MAGIC = b"\xfd7zXZ\x00"
_CHUNK = 1 << 20


class Prefixed:
    """A read-only stream that first replays bytes already read from ``source``."""

    def __init__(self, head: bytes, source: BinaryIO) -> None:
        self._head = head
        self._source = source

    def read(self, size: int = -1) -> bytes:
        if not self._head:
            return self._source.read(size)
        if size < 0:
            data, self._head = self._head + self._source.read(), b""
            return data
        data, self._head = self._head[:size], self._head[size:]
        if len(data) < size:
            data += self._source.read(size - len(data))
        return data

    def close(self) -> None:
        self._source.close()

    def __enter__(self) -> Prefixed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def compression_of(head: bytes) -> str:
    if head.startswith(_GZIP_MAGIC):
        return "gzip"
    if head.startswith(_ZSTD_MAGIC):
        return "zstd"
    if head.startswith(_BZIP2_MAGIC):
        return "bzip2"
    if head.startswith(_XZ_MAGIC):
        return "xz"
    return ""


def sniff(stream: BinaryIO) -> tuple[str, BinaryIO]:
    """The compression of ``stream`` (``""``, gzip, zstd) and a stream that still starts at 0."""
    head = stream.read(6)
    return compression_of(head), cast(BinaryIO, Prefixed(head, stream))


def decompressed(stream: BinaryIO) -> BinaryIO:
    """``stream`` uncompressed, whatever it was compressed with (sniffed, as Docker does)."""
    kind, stream = sniff(stream)
    if kind == "gzip":
        return cast(BinaryIO, Gunzip(stream))
    if kind == "bzip2":
        return cast(BinaryIO, bz2.BZ2File(stream, mode="rb"))
    if kind == "xz":
        return cast(BinaryIO, lzma.LZMAFile(stream, mode="rb"))
    if kind == "zstd":
        try:
            zstandard: Any = importlib.import_module("zstandard")
        except ImportError as err:
            raise InvalidArgument("zstd-compressed content needs the zstandard module") from err
        return cast(BinaryIO, zstandard.ZstdDecompressor().stream_reader(stream))
    return stream


class Gunzip:
    """A gzip stream (one member or several) decompressed as it is read, in big pieces.

    ``gzip.GzipFile`` reads its source 8 KiB at a time; a layer streaming in from a registry is
    read here 1 MiB at a time and inflated into a buffer of up to 1 MiB, however small the
    reads are (each zlib call copies the input it leaves over: many small calls on a big input
    cost more than the inflating). zlib works without the GIL meanwhile. Each member's CRC and
    length are checked by zlib; zero padding after the last member is allowed, anything else
    after it is not (as ``GzipFile``).
    """

    def __init__(self, source: BinaryIO, chunk: int = _CHUNK) -> None:
        self._source = source
        self._chunk = chunk
        self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._pending = b""  # compressed bytes not yet given to zlib
        self._out = b""  # inflated bytes not yet read
        self._pos = 0
        self._member_open = False
        self._eof = False

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            parts = []
            while data := self.read(_CHUNK):
                parts.append(data)
            return b"".join(parts)
        if self._pos >= len(self._out):
            if not size:
                return b""
            self._out, self._pos = self._inflate_some(), 0
        if self._pos == 0 and size >= len(self._out):
            data, self._out = self._out, b""
            return data
        data = self._out[self._pos : self._pos + size]
        self._pos += len(data)
        return data

    def _inflate_some(self) -> bytes:
        while not self._eof:
            if not self._pending:
                self._pending = self._source.read(self._chunk)
                if not self._pending:
                    if self._member_open:
                        raise EOFError("Compressed file ended before the end-of-stream marker "
                                       "was reached")
                    self._eof = True
                    break
            if not self._member_open:
                stripped = self._pending.lstrip(b"\x00")
                if not stripped:  # zero padding after a member
                    self._pending = b""
                    continue
                if not stripped.startswith(_GZIP_MAGIC[: len(stripped)]):
                    raise gzip.BadGzipFile("Not a gzipped file")
                self._pending = stripped
                self._member_open = True
                self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
            data = self._inflate.decompress(self._pending, self._chunk)
            if self._inflate.eof:  # what follows the member (zlib repeats it in both fields)
                self._pending = self._inflate.unused_data
                self._member_open = False
            else:
                self._pending = self._inflate.unconsumed_tail
            if data:
                return data
        return b""

    def close(self) -> None:
        self._source.close()


def spool(stream: BinaryIO, directory: Path) -> tuple[Path, Digest, int]:
    """Copy ``stream``, uncompressed, into a new file in ``directory``; its sha256 and size."""
    fd, name = tempfile.mkstemp(dir=directory, prefix="spool-")
    path = Path(name)
    hasher = hashlib.sha256()
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            source = decompressed(stream)
            while chunk := source.read(_CHUNK):
                hasher.update(chunk)
                out.write(chunk)
                size += len(chunk)
    except (OSError, EOFError, zlib.error, lzma.LZMAError) as err:
        path.unlink(missing_ok=True)
        raise InvalidArgument(f"invalid archive: {err}") from err
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path, Digest("sha256:" + hasher.hexdigest()), size
