"""Values and functions of the Go-template interpreter (``template.py``): Go's ``%v`` printing,
truthiness, comparisons, ``printf``, and the builtin and docker function table."""

from __future__ import annotations

from berth.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


class TemplateError(InvalidArgument):
    pass


class _NoValue:
    def __repr__(self) -> str:
        return "<no value>"


NO_VALUE = _NoValue()


class GoMap(dict):  # type: ignore[type-arg]
    """A JSON object that is a Go map (not a struct) in the type the docker CLI decodes into:
    a missing key is ``<no value>`` there, where a missing struct field is an error."""


# ---------------------------------------------------------------------------------- values
def truth(value: Any) -> bool:
    if value is NO_VALUE or value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float | str | list | tuple | dict):
        return bool(value)
    return True


def go_str(value: Any) -> str:
    """Go's ``fmt`` ``%v`` of a JSON-ish value."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "<nil>"
    if value is NO_VALUE:
        return "<no value>"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, list | tuple):
        return "[" + " ".join(go_str(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_str(value[k])}" for k in sorted(value)) + "]"
    return str(value)


def go_float(value: float) -> str:
    """``strconv.FormatFloat(f, 'g', -1, 64)``: shortest digits, exponent when < -4 or >= 21."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "0"
    from decimal import Decimal

    sign, digits, exp = Decimal(repr(value)).normalize().as_tuple()
    text = "".join(map(str, digits))
    sci = len(text) - 1 + int(exp)
    prefix = "-" if sign else ""
    if sci < -4 or sci >= 21:
        mant = text[0] + ("." + text[1:] if len(text) > 1 else "")
        return f"{prefix}{mant}e{'-' if sci < 0 else '+'}{abs(sci):02d}"
    return prefix + format(abs(Decimal(repr(value))), "f").rstrip("0").rstrip(".") \
        if "." in format(abs(Decimal(repr(value))), "f") else prefix + format(
            abs(Decimal(repr(value))), "f")


def _compare(a: Any, b: Any) -> int:
    if isinstance(a, bool) or isinstance(b, bool):
        if type(a) is not type(b):
            raise TemplateError("template: incompatible types for comparison")
    if isinstance(a, int | float) and isinstance(b, int | float):
        return (a > b) - (a < b)
    if isinstance(a, str) and isinstance(b, str):
        return (a > b) - (a < b)
    raise TemplateError("template: incompatible types for comparison")


def _eq(a: Any, *others: Any) -> bool:
    if not others:
        raise TemplateError("template: missing argument for comparison")
    for b in others:
        if a is NO_VALUE or b is NO_VALUE:
            if a is b:
                return True
            continue
        if isinstance(a, int | float | str | bool) and isinstance(b, int | float | str | bool):
            if isinstance(a, str) != isinstance(b, str):
                raise TemplateError("template: incompatible types for comparison")
        if a == b:
            return True
    return False


def _index(value: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(value, dict):
            value = value.get(key, NO_VALUE) if key in value else NO_VALUE
        elif isinstance(value, list | tuple | str):
            if not isinstance(key, int) or not 0 <= key < len(value):
                raise TemplateError(f"template: error calling index: index out of range: {key}")
            value = value[key]
        elif value is None or value is NO_VALUE:
            return NO_VALUE
        else:
            raise TemplateError(f"template: can't index item of type {type(value).__name__}")
    return value


def _len(value: Any) -> int:
    if isinstance(value, str | list | tuple | dict):
        return len(value)
    raise TemplateError(f"template: error calling len: len of type {type(value).__name__}")


def _printf(fmt: str, *args: Any) -> str:
    out: list[str] = []
    i = 0
    argi = 0
    while i < len(fmt):
        ch = fmt[i]
        if ch != "%":
            out.append(ch)
            i += 1
            continue
        j = i + 1
        while j < len(fmt) and fmt[j] in "+-# 0123456789.":
            j += 1
        if j >= len(fmt):
            out.append("%!(NOVERB)")
            break
        spec, verb = fmt[i + 1 : j], fmt[j]
        i = j + 1
        if verb == "%":
            out.append("%")
            continue
        if argi >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        arg = args[argi]
        argi += 1
        out.append(_verb(spec, verb, arg))
    if argi < len(args):
        out.append("%!(EXTRA " + ", ".join(go_str(a) for a in args[argi:]) + ")")
    return "".join(out)


def _verb(spec: str, verb: str, arg: Any) -> str:
    if verb in "sv":
        return ("%" + spec + "s") % go_str(arg)
    if verb == "q":
        from berth.cli.client import go_json

        return ("%" + spec + "s") % (go_json(arg) if isinstance(arg, str) else go_str(arg))
    if verb == "t":
        return ("%" + spec + "s") % go_str(arg)
    if verb in "dxXob" and isinstance(arg, int | float) and not isinstance(arg, bool):
        return ("%" + spec + verb) % int(arg) if verb != "b" else format(int(arg), spec + "b")
    if verb in "feEgG" and isinstance(arg, int | float) and not isinstance(arg, bool):
        return ("%" + spec + verb) % float(arg)
    return f"%!{verb}({go_str(arg)})"


def _json(value: Any) -> str:
    from berth.cli.client import go_json

    if isinstance(value, dict) and any(callable(v) for v in value.values()):
        # a listing row: docker marshals its fields (sorted), not its methods like .Label
        value = {k: value[k] for k in sorted(value) if not callable(value[k])}
    return go_json(None if value is NO_VALUE else value, escape_html=False)


def _join(items: Any, sep: str) -> str:
    if not isinstance(items, list | tuple):
        raise TemplateError("template: error calling join: expected a list")
    return sep.join(go_str(v) for v in items)


def _truncate(text: Any, length: int) -> str:
    s = go_str(text)
    return s[:length] if len(s) > length else s


def _pad(text: Any, before: int, after: int) -> str:
    return " " * before + go_str(text) + " " * after


def _title(text: Any) -> str:
    s = go_str(text)
    return " ".join(w[:1].upper() + w[1:] for w in s.split(" "))


def _and(*args: Any) -> Any:
    for arg in args[:-1]:
        if not truth(arg):
            return arg
    return args[-1]


def _or(*args: Any) -> Any:
    for arg in args[:-1]:
        if truth(arg):
            return arg
    return args[-1]


def _slice(value: Any, *idx: int) -> Any:
    if len(idx) == 0:
        return value
    return value[idx[0] : idx[1]] if len(idx) > 1 else value[idx[0] :]


def _html(*args: Any) -> str:
    s = "".join(go_str(a) for a in args)
    return (s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&#34;").replace("'", "&#39;"))


def _urlquery(*args: Any) -> str:
    from berth.cli.client import quote

    return quote("".join(go_str(a) for a in args))


def _print(*args: Any) -> str:
    # Go's Sprint adds spaces between operands when neither is a string.
    out = ""
    for i, arg in enumerate(args):
        if i and not isinstance(arg, str) and not isinstance(args[i - 1], str):
            out += " "
        out += go_str(arg)
    return out


FUNCS: dict[str, Callable[..., Any]] = {
    "and": _and,
    "or": _or,
    "not": lambda v: not truth(v),
    "len": _len,
    "index": _index,
    "slice": _slice,
    "print": _print,
    "printf": _printf,
    "println": lambda *a: " ".join(go_str(v) for v in a) + "\n",
    "eq": _eq,
    "ne": lambda a, b: not _eq(a, b),
    "lt": lambda a, b: _compare(a, b) < 0,
    "le": lambda a, b: _compare(a, b) <= 0,
    "gt": lambda a, b: _compare(a, b) > 0,
    "ge": lambda a, b: _compare(a, b) >= 0,
    "html": _html,
    "js": lambda *a: _json("".join(go_str(v) for v in a))[1:-1],
    "urlquery": _urlquery,
    "json": _json,
    "join": _join,
    "split": lambda s, sep: go_str(s).split(sep),
    "lower": lambda s: go_str(s).lower(),
    "upper": lambda s: go_str(s).upper(),
    "title": _title,
    "truncate": _truncate,
    "pad": _pad,
}
