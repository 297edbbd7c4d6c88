"""A small tar writer for sending build contexts (ustar headers, PAX records when needed).

``tarfile`` costs the CLI ~7 ms to import (it brings ``re``, ``enum``, ``shutil``) and builds
each header through several layers of Python; a build sends every file of its context on every
run, so this writes the few entry types a context has directly. Owners are always 0:0 and
mtimes whole seconds, as the docker CLI sends them. The daemon reads the result with
``tarfile``; tests/unit/cli/test_tarwrite.py checks the two agree.
"""

from __future__ import annotations

import os
import stat

__all__ = ["TarWriter"]

_BLOCK = 512
_USTAR_NAME = 100
_USTAR_SIZE_LIMIT = 8**11
_TYPES = {stat.S_IFREG: b"0", stat.S_IFLNK: b"2", stat.S_IFCHR: b"3", stat.S_IFBLK: b"4",
          stat.S_IFDIR: b"5", stat.S_IFIFO: b"6"}


def _octal(value: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, value)


def _header(name: bytes, mode: int, size: int, mtime: int, kind: bytes, link: bytes = b"",
            dev: tuple[int, int] = (0, 0)) -> bytes:
    head = b"".join((
        name[:_USTAR_NAME].ljust(100, b"\0"), _octal(mode, 8), _octal(0, 8), _octal(0, 8),
        _octal(size, 12), _octal(mtime, 12), b" " * 8, kind, link[:100].ljust(100, b"\0"),
        b"ustar\x0000", b"\0" * 64, _octal(dev[0], 8), _octal(dev[1], 8), b"\0" * 167))
    checksum = b"%06o\0 " % sum(head)
    return head[:148] + checksum + head[156:]


def _pax_record(key: str, value: bytes) -> bytes:
    body = b" " + key.encode() + b"=" + value + b"\n"
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length += 1
    return str(length).encode() + body


class TarWriter:
    """Appends filesystem entries to a binary file object; ``close`` writes the end blocks."""

    def __init__(self, out) -> None:  # type: ignore[no-untyped-def]
        self._out = out
        self._links: dict[tuple[int, int], bytes] = {}

    def add_path(self, path: str, name: str) -> None:
        """Add the file, directory, symlink, device or fifo at ``path`` as ``name``."""
        st = os.lstat(path)
        fmt = stat.S_IFMT(st.st_mode)
        kind = _TYPES.get(fmt)
        if kind is None:  # sockets cannot be archived; the docker CLI skips them too
            return
        raw = name.encode("utf-8", "surrogateescape") + (b"/" if fmt == stat.S_IFDIR else b"")
        link = b""
        size = 0
        if fmt == stat.S_IFREG and st.st_nlink > 1:
            first = self._links.setdefault((st.st_dev, st.st_ino), raw)
            if first != raw:
                kind, link = b"1", first
        if fmt == stat.S_IFLNK:
            link = os.readlink(path).encode("utf-8", "surrogateescape")
        elif kind == b"0":
            size = st.st_size
        dev = (os.major(st.st_rdev), os.minor(st.st_rdev)) if kind in (b"3", b"4") else (0, 0)
        mtime = max(0, int(st.st_mtime))
        self._write_header(raw, stat.S_IMODE(st.st_mode), size, mtime, kind, link, dev)
        if size:
            self._copy_body(path, size)

    def add_bytes(self, name: str, data: bytes, mode: int = 0o600) -> None:
        """Add a regular file with ``data`` as its content."""
        self._write_header(name.encode(), mode, len(data), 0, b"0")
        self._out.write(data + b"\0" * (-len(data) % _BLOCK))

    def close(self) -> None:
        self._out.write(b"\0" * (2 * _BLOCK))

    def _write_header(self, name: bytes, mode: int, size: int, mtime: int, kind: bytes,
                      link: bytes = b"", dev: tuple[int, int] = (0, 0)) -> None:
        records = []
        if len(name) > _USTAR_NAME or not name.isascii():
            records.append(_pax_record("path", name))
        if len(link) > 100 or not link.isascii():
            records.append(_pax_record("linkpath", link))
        if size >= _USTAR_SIZE_LIMIT:
            records.append(_pax_record("size", str(size).encode()))
        if records:
            pax = b"".join(records)
            self._out.write(_header(b"PaxHeader/" + name[-80:], 0o644, len(pax), mtime, b"x"))
            self._out.write(pax + b"\0" * (-len(pax) % _BLOCK))
        self._out.write(_header(name, mode, size if size < _USTAR_SIZE_LIMIT else 0, mtime,
                                kind, link, dev))

    def _copy_body(self, path: str, size: int) -> None:
        written = 0
        with open(path, "rb") as src:
            while chunk := src.read(1 << 20):
                chunk = chunk[: size - written]
                self._out.write(chunk)
                written += len(chunk)
                if written >= size:
                    break
        if written < size:  # the file shrank while we read it: keep the archive well-formed
            self._out.write(b"\0" * (size - written))
        self._out.write(b"\0" * (-size % _BLOCK))
