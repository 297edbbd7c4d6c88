"""Output the way the docker CLI prints it: sizes, durations, tables, ports, progress streams.

All functions are pure except ``print_json_messages``, which writes to the stream it is given.
"""

from __future__ import annotations

from berth.humanize import human_duration

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any, TextIO

_DECIMAL = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
_BINARY = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")
ELLIPSIS = "…"


def _scaled(size: float, base: float, units: tuple[str, ...], precision: int) -> str:
    i = 0
    while size >= base and i < len(units) - 1:
        size /= base
        i += 1
    return "%.*g%s" % (precision, size, units[i])  # noqa: UP031 - Go's %.*g, same rules


def human_size(size: float, precision: int = 4) -> str:
    """go-units ``HumanSizeWithPrecision``: decimal units, ``precision`` significant digits."""
    return _scaled(float(size), 1000.0, _DECIMAL, precision)


def bytes_size(size: float) -> str:
    """go-units ``BytesSize``: binary units (``324KiB``, ``23.54GiB``)."""
    return _scaled(float(size), 1024.0, _BINARY, 4)


def ago(timestamp: float, now: float) -> str:
    return human_duration(now - timestamp) + " ago"


def ellipsis(text: str, width: int) -> str:
    """Docker's ``Ellipsis``: cut to ``width`` runes, the last one replaced by ``…``."""
    if len(text) <= width:
        return text
    if width <= 1:
        return text[:width]
    return text[: width - 1] + ELLIPSIS


def short_id(ident: str) -> str:
    """``sha256:abc…`` → the first 12 hex digits."""
    if ident.startswith("sha256:"):
        ident = ident[len("sha256:") :]
    return ident[:12]


def tabulate(lines: Iterable[str], minwidth: int = 10, padding: int = 3) -> str:
    """Go's ``tabwriter`` as docker configures it (minwidth 10, padding 3, spaces).

    Cells end with a tab; the text after a line's last tab is not part of any column.
    """
    rows = [line.split("\t") for line in lines]
    widths: list[int] = []
    for row in rows:
        for idx, cell in enumerate(row[:-1]):
            width = max(len(cell) + padding, minwidth)
            if idx < len(widths):
                widths[idx] = max(widths[idx], width)
            else:
                widths.append(width)
    out = []
    for row in rows:
        cells = [cell.ljust(widths[idx]) for idx, cell in enumerate(row[:-1])]
        out.append("".join(cells) + row[-1])
    return "".join(line + "\n" for line in out)


def format_ports(ports: list[dict[str, Any]] | None) -> str:
    """``0.0.0.0:30000->80/tcp, [::]:30000->80/tcp``; consecutive ports become ranges."""
    if not ports:
        return ""
    groups: dict[str, list[tuple[int, int]]] = {}
    order: list[str] = []
    bare: list[tuple[str, int]] = []
    for port in sorted(ports, key=lambda p: (p.get("Type", ""), p.get("PrivatePort", 0),
                                              p.get("IP", ""), p.get("PublicPort", 0))):
        private = int(port.get("PrivatePort", 0))
        proto = port.get("Type", "tcp")
        public = port.get("PublicPort")
        if not public:
            bare.append((proto, private))
            continue
        ip = port.get("IP", "")
        host = f"[{ip}]" if ":" in ip else ip
        key = f"{host}\0{proto}\0{int(public) - private}"
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append((int(public), private))
    parts: list[str] = []
    for key in order:
        host, proto, _ = key.split("\0")
        for first, last in _ranges(sorted(groups[key])):
            pub = f"{first[0]}" if first == last else f"{first[0]}-{last[0]}"
            priv = f"{first[1]}" if first == last else f"{first[1]}-{last[1]}"
            prefix = f"{host}:" if host else ""
            parts.append(f"{prefix}{pub}->{priv}/{proto}")
    by_proto: dict[str, list[int]] = {}
    for proto, private in bare:
        by_proto.setdefault(proto, []).append(private)
    for proto, nums in by_proto.items():
        for a, b in _ranges([(n, n) for n in sorted(set(nums))]):
            parts.append(f"{a[0]}/{proto}" if a == b else f"{a[0]}-{b[0]}/{proto}")
    return ", ".join(parts)


def _ranges(pairs: list[tuple[int, int]]) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    out: list[tuple[tuple[int, int], tuple[int, int]]] = []
    for pair in pairs:
        if out and out[-1][1][0] + 1 == pair[0] and out[-1][1][1] + 1 == pair[1]:
            out[-1] = (out[-1][0], pair)
        else:
            out.append((pair, pair))
    return out


def display_names(names: list[str] | None) -> str:
    """Names without the leading ``/``; link aliases (``/a/b``) are left out, as docker does."""
    shown = [n[1:] if n.startswith("/") else n for n in names or []]
    return ",".join(n for n in shown if "/" not in n)


def quoted_command(command: str, truncate: bool) -> str:
    return '"' + (ellipsis(command, 20) if truncate else command) + '"'


def indent_json(value: Any) -> str:
    """Docker's inspect output: 4-space indent, no HTML escaping (the CLI turns it off)."""
    from berth.cli.client import go_json

    return go_json(value, indent=4, escape_html=False)


def print_json_messages(messages: Iterable[dict[str, Any]], out: TextIO,
                        tty: bool = False) -> dict[str, Any] | None:
    """Render a progress stream (pull, push, load, build, import) as docker's jsonmessage.

    Returns the error detail if the stream reported one (then the caller exits 1), else None.
    On a terminal, progress lines of each ``id`` are rewritten in place.
    """
    rows: dict[str, int] = {}
    for msg in messages:
        if msg.get("errorDetail") or msg.get("error"):
            detail = msg.get("errorDetail") or {}
            return {"message": detail.get("message") or msg.get("error", "")}
        if "stream" in msg:
            out.write(str(msg["stream"]))
            continue
        status = msg.get("status")
        if status is None:
            continue
        ident = msg.get("id")
        progress = msg.get("progress") or ""
        line = f"{ident}: {status}" if ident else str(status)
        if progress and tty:
            line += " " + progress
        if tty and ident and ("progressDetail" in msg or progress):
            if ident in rows:
                up = len(rows) - rows[ident]
                out.write(f"\x1b[{up}A\r\x1b[2K{line}\n")
                if up > 1:
                    out.write(f"\x1b[{up - 1}B")
                continue
            rows[ident] = len(rows)
        elif tty:
            # a line that is not a layer's progress: later layers start afresh below it (pull
            # -a shows each tag's layers under its own "Pulling from" line, as docker does)
            rows = {}
        elif progress:
            continue  # docker prints no progress bars to a pipe
        out.write(line + "\n")
        out.flush()
    return None
