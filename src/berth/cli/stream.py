"""Moving bytes between the local terminal and a hijacked attach/exec stream.

One thread, one ``select`` loop: stdin → socket (unframed; half-close at EOF unless a TTY),
socket → stdout/stderr (raw with a TTY, else Docker's 8-byte frames demultiplexed). With
``-t`` on a real terminal the local tty goes raw, the remote one is resized at start and on
SIGWINCH, and Ctrl-P Ctrl-Q detaches.
"""

from __future__ import annotations

import os
import select

from berth.cli.frames import FrameDecoder

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, BinaryIO

    from berth.cli.client import Hijacked
    from berth.cli.context import Cli

DEFAULT_DETACH = b"\x10\x11"  # ctrl-p, ctrl-q


def parse_detach_keys(spec: str) -> bytes:
    """``ctrl-p,ctrl-q`` → b"\\x10\\x11"; ``a,ctrl-@`` etc. as docker accepts."""
    out = bytearray()
    for key in spec.split(","):
        key = key.strip()
        if key.startswith("ctrl-") and len(key) == 6:
            ch = key[5]
            code = {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}.get(ch)
            if code is None:
                if not ch.isalpha():
                    raise ValueError(f"Invalid escape keys ({spec}) provided")
                code = ord(ch.lower()) - ord("a") + 1
            out.append(code)
        elif len(key) == 1:
            out.append(ord(key))
        else:
            raise ValueError(f"Invalid escape keys ({spec}) provided")
    return bytes(out)


def _binary(stream: Any) -> BinaryIO:
    return stream.buffer if hasattr(stream, "buffer") else stream  # type: ignore[no-any-return]


def terminal_size(fd: int) -> tuple[int, int]:
    try:
        size = os.get_terminal_size(fd)
        return size.lines, size.columns
    except OSError:
        return 0, 0


class Detached(Exception):
    pass


def pump(cli: Cli, hj: Hijacked, tty: bool, with_stdin: bool,
         resize: Callable[[int, int], None] | None = None,
         detach_keys: bytes = DEFAULT_DETACH) -> bool:
    """Run until the daemon closes the stream. Returns False if the user detached."""
    stdin = cli.stdin
    out = _binary(cli.stdout)
    err = _binary(cli.stderr)
    try:
        in_fd = stdin.fileno() if with_stdin else -1
    except (OSError, ValueError, AttributeError):
        in_fd = -1
    raw_state = None
    old_handler = None
    if tty and in_fd >= 0 and os.isatty(in_fd):
        import termios
        import tty as ttymod

        raw_state = termios.tcgetattr(in_fd)
        ttymod.setraw(in_fd)
    if tty and resize is not None:
        out_fd = _fileno(cli.stdout)
        if out_fd >= 0 and os.isatty(out_fd):
            import signal

            def on_winch(_sig: int, _frame: Any) -> None:
                h, w = terminal_size(out_fd)
                if h and w:
                    resize(h, w)

            old_handler = signal.signal(signal.SIGWINCH, on_winch)
            on_winch(0, None)
    decoder = FrameDecoder()
    matched = 0
    try:
        if with_stdin and in_fd < 0:
            # An in-memory stdin (embedding, tests): send it whole, then half-close.
            hj.send(stdin.read())
            if not tty:
                hj.close_write()
        sock_fd = hj.fileno()
        reading = in_fd >= 0
        while True:
            if not hj.buffered():
                fds = [sock_fd] + ([in_fd] if reading else [])
                ready, _, _ = select.select(fds, [], [])
            else:
                ready = [sock_fd]
            if reading and in_fd in ready:
                data = os.read(in_fd, 32768)
                if not data:
                    reading = False
                    if not tty:
                        hj.close_write()
                else:
                    if tty and detach_keys:
                        for byte in data:
                            matched = matched + 1 if byte == detach_keys[matched] else (
                                1 if byte == detach_keys[0] else 0)
                            if matched == len(detach_keys):
                                raise Detached()
                    hj.send(data)
            if sock_fd in ready:
                data = hj.recv()
                if not data:
                    break
                if tty:
                    out.write(data)
                    out.flush()
                else:
                    for stream, payload in decoder.feed(data):
                        target = err if stream == 2 else out
                        target.write(payload)
                        target.flush()
        return True
    except Detached:
        return False
    finally:
        if raw_state is not None:
            import termios

            termios.tcsetattr(in_fd, termios.TCSADRAIN, raw_state)
        if old_handler is not None:
            import signal

            signal.signal(signal.SIGWINCH, old_handler)
        hj.close()


def _fileno(stream: Any) -> int:
    try:
        return int(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return -1
