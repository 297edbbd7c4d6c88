"""Early writeback: ask the kernel to start writing a file's dirty pages to disk now.

A pull writes a blob and an unpacked layer as fast as the network delivers them and must make
both durable before it names them. Left alone, the kernel writes dirty pages back late, so
the final ``fsync``/``syncfs`` waits for nearly all of it; kicking writeback off every few MiB
(``sync_file_range(SYNC_FILE_RANGE_WRITE)``: start, do not wait) lets the disk work while the
download goes on, and the final flush finds little left. Durability still comes from the
fsync: this only changes when the disk does the work.
"""

from __future__ import annotations

import ctypes

SYNC_FILE_RANGE_WRITE = 2
EVERY = 8 << 20  # bytes written between two kicks


def start_writeback(fd: int, offset: int = 0, length: int = 0) -> None:
    """Start writing ``length`` bytes at ``offset`` (0: to the end) of ``fd`` back; no wait.

    Best effort: where the call is missing or refused, the final fsync does all the work.
    """
    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except AttributeError:
        return
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn(fd, offset, length, SYNC_FILE_RANGE_WRITE)
