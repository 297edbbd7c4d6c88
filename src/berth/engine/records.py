"""JSON codec for the engine's frozen dataclasses (records stored in the metadata DB).

Generic over the field types the records use: dataclasses, enums, tuples, dicts, optionals and
plain scalars. Only snake_case engine records go through here; Docker's wire shapes live in
``berth.api``.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")


def to_plain(value: Any) -> Any:
    """A dataclass tree as JSON-ready plain values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    return value


def from_plain(cls: type[T], data: Any) -> T:
    """Rebuild a dataclass of type ``cls`` from :func:`to_plain` output."""
    return typing.cast(T, _decode(cls, data))


def _decode(tp: Any, data: Any) -> Any:
    if data is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return _decode(inner[0], data)
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(args[0], v) for v in data)
        return tuple(_decode(a, v) for a, v in zip(args, data, strict=True))
    if origin is list:
        (arg,) = typing.get_args(tp)
        return [_decode(arg, v) for v in data]
    if origin is dict:
        _, val = typing.get_args(tp)
        return {k: _decode(val, v) for k, v in data.items()}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp(data)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        hints, known = _fields_of(tp)
        # unknown keys come from newer versions: ignore them rather than refuse an old DB
        kwargs = {k: _decode(hints[k], v) for k, v in data.items() if k in known}
        return tp(**kwargs)
    return data


@functools.cache
def _fields_of(tp: type) -> tuple[dict[str, Any], frozenset[str]]:
    """Resolved field types of a record class; resolving them is slow, and they never change."""
    return typing.get_type_hints(tp), frozenset(f.name for f in dataclasses.fields(tp))
