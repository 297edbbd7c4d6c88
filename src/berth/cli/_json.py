"""JSON for the CLI's hot path without ``import json``.

The ``json`` package imports ``re`` (which imports ``enum``, ``functools``, ``collections``):
about a quarter of a ``berth run``'s own start-up. Its C accelerator ``_json`` needs none of
that, so compact encoding and decoding go straight through it. Anything unusual (indentation,
a decoding error whose exact message matters) is handed to the real ``json``.
"""

from __future__ import annotations

import _json

TYPE_CHECKING = False  # ``typing`` itself imports ``re``: only for the type checker
if TYPE_CHECKING:
    from typing import Any

_WHITESPACE = " \t\n\r"


class _DecodeContext:
    """The attributes ``_json.make_scanner`` reads from a ``json.JSONDecoder``."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int

    @staticmethod
    def parse_constant(name: str) -> float:
        return {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}[name]


_scan = _json.make_scanner(_DecodeContext())  # type: ignore[arg-type]  # duck-typed context


def loads(data: str | bytes | bytearray) -> Any:
    """``json.loads`` for UTF-8 documents; errors are json's own (``ValueError`` subclasses)."""
    try:
        text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
        start = len(text) - len(text.lstrip(_WHITESPACE))
        value, end = _scan(text, start)
        if text[end:].strip(_WHITESPACE):
            raise ValueError("extra data")
        return value
    except (StopIteration, ValueError):
        import json  # slow path: the exact exception and message json gives

        return json.loads(data)


def _unserializable(value: object) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def dumps(value: Any, *, separators: tuple[str, str] = (",", ":"),
          indent: int | None = None) -> str:
    """``json.dumps(value, ensure_ascii=False, separators=..., indent=...)``."""
    if indent is not None:
        import json

        return json.dumps(value, ensure_ascii=False, separators=separators, indent=indent)
    item_separator, key_separator = separators
    encode = _json.make_encoder(
        {}, _unserializable, _json.encode_basestring, None, key_separator, item_separator,
        False, False, True)
    return "".join(encode(value, 0))
