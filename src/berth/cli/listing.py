"""Listing output shared by ps, images, volume/network ls, history, df: docker's ``--format``
rules (``table …`` with headers, ``json``, raw templates) over rows of field → value.
"""

from __future__ import annotations

from berth.cli import template
from berth.cli.render import tabulate

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

    from berth.cli.context import Cli


def render_rows(fmt: str, default: str, rows: Sequence[Mapping[str, Any]],
                headers: Mapping[str, str]) -> str:
    """``fmt`` empty or ``table`` → ``default``; ``json`` → one JSON object per line."""
    fmt = template.expand_escapes(fmt or default)
    if fmt == "table":
        fmt = template.expand_escapes(default)
    if fmt == "json":
        fmt = "{{json .}}"
    if fmt.startswith("table"):
        body = fmt[len("table") :].lstrip(" ")
        tmpl = template.parse(body)
        header_ctx = _HeaderContext(headers)
        lines = [tmpl.execute(header_ctx)]
        lines += [tmpl.execute(dict(row)) for row in rows]
        return tabulate(lines)
    tmpl = template.parse(fmt)
    return "".join(tmpl.execute(dict(row)) + "\n" for row in rows)


class _HeaderContext(dict):  # type: ignore[type-arg]
    """Every field evaluates to its column title (docker's header context)."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        super().__init__()
        self.headers = headers

    def get(self, key: Any, default: Any = None) -> Any:
        title = self.headers.get(key)
        if title is None:
            title = _upper_snake(str(key))
        return _Title(title)

    def __contains__(self, key: object) -> bool:
        return True


class _Title(str):
    """A header cell that also answers ``{{.Label "x"}}`` and sub-fields with itself."""

    def __call__(self, *args: Any) -> str:
        return str(self)


def _upper_snake(name: str) -> str:
    out = ""
    for i, ch in enumerate(name):
        if ch.isupper() and i and not name[i - 1].isupper():
            out += " "
        out += ch.upper()
    return out


def filters_param(items: list[str]) -> str | None:
    """``--filter k=v`` (repeatable) → docker's JSON ``{"k":{"v":true}}``, or None."""
    if not items:
        return None
    from berth.cli.client import go_json

    doc: dict[str, dict[str, bool]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            from berth.cli.context import StatusError

            raise StatusError(f"bad format of filter (expected name=value): {item}", 125)
        doc.setdefault(key.strip().lower() if key.strip() != "label" else "label", {})[value] = True
    return go_json(doc)


def confirm(cli: Cli, warning: str) -> bool:
    """docker's prune prompt: WARNING text, ``Are you sure you want to continue? [y/N]``."""
    cli.stdout.write(f"{warning}\nAre you sure you want to continue? [y/N] ")
    cli.stdout.flush()
    line = cli.stdin.readline().decode(errors="replace").strip().lower()
    return line in ("y", "yes")


def inspect_each(cli: Cli, paths: Sequence[str], fmt: str,
                 query: Mapping[str, Any] | None = None) -> int:
    """``inspect`` of several objects as docker does it: print the ones found, then fail with
    one ``Error response from daemon`` line per missing one."""
    from berth.cli.client import ApiError
    from berth.cli.context import StatusError

    found: list[Any] = []
    errors: list[str] = []
    for path in paths:
        try:
            found.append(cli.client.get_json(path, query))
        except ApiError as exc:
            if exc.status != 404:
                raise
            errors.append(exc.message)
    print_inspect(cli, found, fmt)
    if errors:
        raise StatusError("\n".join(f"Error response from daemon: {e}" for e in errors), 1)
    return 0


def print_inspect(cli: Cli, items: list[Any], fmt: str) -> None:
    if fmt:
        from berth.cli import inspect_template
        from berth.cli.context import StatusError

        try:
            tmpl = template.parse(template.expand_escapes(fmt))
        except template.TemplateError as err:
            raise StatusError(f"Template parsing error: {err}", 64) from None
        for item in items:
            try:
                cli.out(inspect_template.render(tmpl, item))
            except template.TemplateError as err:
                raise StatusError(f"Template parsing error: {err}", 1) from None
        return
    from berth.cli.render import indent_json

    cli.out(indent_json(items))
