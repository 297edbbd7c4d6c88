"""Docker's multiplexed stdout/stderr stream (attach and exec without a TTY, and logs)."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator


class FrameDecoder:
    """Docker's multiplexed stream: 8-byte header ``[stream,0,0,0,len(be32)]`` + payload.

    Fed arbitrary pieces, yields ``(stream, payload)``; stream 0 = stdin, 1 = stdout, 2 = stderr.
    """

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> Iterator[tuple[int, bytes]]:
        self._buf += data
        buf = self._buf
        while len(buf) >= 8:
            size = int.from_bytes(buf[4:8], "big")
            if len(buf) < 8 + size:
                break
            stream = buf[0]
            payload = bytes(buf[8 : 8 + size])
            del buf[: 8 + size]
            yield stream, payload

    @property
    def pending(self) -> int:
        return len(self._buf)


def demux(chunks: Iterable[bytes]) -> Iterator[tuple[int, bytes]]:
    decoder = FrameDecoder()
    for data in chunks:
        yield from decoder.feed(data)
