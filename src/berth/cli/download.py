"""A tar the daemon streams (``save``, ``export``) to ``-o FILE`` or to stdout, as the docker
CLI writes it: never to a terminal, the output path checked before the daemon is asked, and the
file only appearing, under its name, once it is complete."""

from __future__ import annotations

import os
import sys

from berth.cli.context import StatusError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from berth.cli.client import Response
    from berth.cli.context import Cli


def is_terminal(stream: Any) -> bool:
    try:
        return bool(os.isatty(stream.fileno()))
    except (OSError, ValueError, AttributeError):
        return False


def check_output(cli: Cli, output: str, failure: str) -> None:
    """Refuse a terminal, or a file in a directory that does not exist (``failure``: docker's
    "failed to save image" / "failed to export container")."""
    if not output and is_terminal(cli.stdout):
        raise StatusError("cowardly refusing to save to a terminal. Use the -o flag or redirect",
                          1)
    parent = os.path.dirname(output) or "."
    if output and not os.path.isdir(parent):
        raise StatusError(f"{failure}: invalid output path: stat {parent}: no such file or "
                          "directory", 1)


def write_output(cli: Cli, resp: Response, output: str) -> None:
    if output:
        tmp = output + ".berth-tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as fh:  # 0600, as the docker CLI's temporary file
            for data in resp.iter_raw():
                fh.write(data)
        os.replace(tmp, output)
        return
    out = getattr(cli.stdout, "buffer", None) or sys.stdout.buffer
    cli.stdout.flush()
    for data in resp.iter_raw():
        out.write(data)
    out.flush()
