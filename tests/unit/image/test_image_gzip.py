"""gzip on push (``berth.image._gzip``) and gunzip on pull (``berth.image._streams.Gunzip``)."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import random
import zlib
from concurrent.futures import ThreadPoolExecutor

import pytest

from berth.image._gzip import PIECE, GzipReader
from berth.image._streams import Gunzip, decompressed


def text(size: int) -> bytes:
    """Compressible bytes with long-range repeats (words drawn from a small vocabulary)."""
    rng = random.Random(7)
    words = [bytes(rng.choices(b"abcdefghijklmnop", k=rng.randint(2, 9))) for _ in range(500)]
    out = bytearray()
    while len(out) < size:
        out += rng.choice(words) + b" "
    return bytes(out[:size])


CASES = {
    "empty": b"",
    "one byte": b"x",
    "small": text(5000),
    "exactly one piece": text(PIECE),
    "pieces and a bit": text(3 * PIECE + 17),
    "random": os.urandom(2 * PIECE + 5),
    "mixed": text(PIECE) + os.urandom(PIECE) + text(PIECE // 2),
}


def read_all(reader: GzipReader, size: int) -> bytes:
    parts = []
    while data := reader.read(size):
        parts.append(data)
    return b"".join(parts)


@pytest.mark.parametrize("name", list(CASES))
def test_gzip_reader_output_is_one_valid_gzip_member(name: str) -> None:
    data = CASES[name]
    with ThreadPoolExecutor(2) as pool:
        for executor in (None, pool):
            reader = GzipReader(io.BytesIO(data), executor)
            out = read_all(reader, 8192)
            assert gzip.decompress(out) == data
            # one member: zlib alone (no multi-member support) reads it to its end
            inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
            assert inflate.decompress(out) == data and inflate.eof
            assert inflate.unused_data == b""
            assert reader.digest == "sha256:" + hashlib.sha256(out).hexdigest()
            assert reader.size == len(out)
            assert reader.consumed == len(data)


def test_gzip_reader_is_deterministic_and_compresses_like_gzip() -> None:
    data = CASES["mixed"]
    with ThreadPoolExecutor(2) as pool:
        first = GzipReader(io.BytesIO(data), pool).read()
    assert GzipReader(io.BytesIO(data)).read() == first  # same bytes with or without a pool
    plain = text(4 * PIECE)
    ours = len(GzipReader(io.BytesIO(plain)).read())
    # pieces are primed with the data before them: nearly what one zlib stream achieves
    assert ours <= 1.01 * len(gzip.compress(plain, 6))


def test_incompressible_pieces_are_stored() -> None:
    data = os.urandom(4 * PIECE)
    out = GzipReader(io.BytesIO(data)).read()
    # stored blocks: 5 bytes per 64 KiB block, a header, a trailer, a few flush markers
    assert len(out) - len(data) < 1000


def test_gunzip_reads_members_padding_and_small_reads() -> None:
    data = text(3 * PIECE) + os.urandom(PIECE)
    blob = gzip.compress(data) + gzip.compress(b"second member") + b"\0" * 600
    for size in (1, 511, 65536, 1 << 22):
        stream = Gunzip(io.BytesIO(blob), chunk=4096 if size == 1 else 1 << 20)
        got = bytearray()
        while chunk := stream.read(size):
            assert len(chunk) <= size
            got += chunk
            if size == 1 and len(got) > 10000:
                break  # byte by byte: enough
        if size > 1:
            assert bytes(got) == data + b"second member"
    assert decompressed(io.BytesIO(blob)).read() == data + b"second member"


@pytest.mark.parametrize("mangle, error", [
    (lambda b: b[:-100], EOFError),
    (lambda b: b + b"trailing junk", gzip.BadGzipFile),
    (lambda b: b[:50] + bytes([b[50] ^ 0xFF]) + b[51:], zlib.error),
])
def test_gunzip_refuses_what_gzip_refuses(mangle, error) -> None:  # type: ignore[no-untyped-def]
    blob = gzip.compress(text(100_000))
    with pytest.raises(error):
        Gunzip(io.BytesIO(mangle(blob))).read()
    with pytest.raises(error):
        gzip.GzipFile(fileobj=io.BytesIO(mangle(blob))).read()
