"""A small interpreter of Go's text/template, enough for docker's ``--format``.

Supported: text and actions with ``{{-``/``-}}`` trimming, comments, fields (``.A.B``), ``$``
and ``$var`` (``:=``/``=``), string/raw/number/bool/nil literals, pipelines ``a | f b``,
parenthesised sub-pipelines, ``if``/``else if``/``else``, ``range`` (with ``$i, $v :=`` and
``else``), ``with``, ``break``/``continue`` not. Functions: Go's builtins (and, or, not, len,
index, slice, print, printf, println, eq, ne, lt, le, gt, ge, html, js, urlquery) and docker's
(json, join, split, lower, upper, title, truncate, pad). Values are JSON data (dict, list, str,
int, float, bool, None); a callable field is called with the command's arguments, which is how
listing contexts offer ``{{.Label "k"}}``.

Pure: ``parse`` → ``Template`` → ``execute(data) -> str``; errors raise ``TemplateError``.
"""

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


# ---------------------------------------------------------------------------------- lexing
def _split(text: str) -> list[tuple[str, str]]:
    """→ [("text", s) | ("action", s)], with trim markers applied."""
    parts: list[tuple[str, str]] = []
    pos = 0
    while True:
        start = text.find("{{", pos)
        if start < 0:
            parts.append(("text", text[pos:]))
            break
        chunk = text[pos:start]
        inner_start = start + 2
        if text.startswith("- ", inner_start) or text.startswith("-\t", inner_start) or \
                text.startswith("-\n", inner_start):
            chunk = chunk.rstrip(" \t\r\n")
            inner_start += 1
        parts.append(("text", chunk))
        end = _find_close(text, inner_start)
        inner = text[inner_start:end]
        pos = end + 2
        if inner.endswith(" -") or inner.endswith("\t-") or inner.endswith("\n-"):
            inner = inner[:-1]
            rest = text[pos:]
            pos += len(rest) - len(rest.lstrip(" \t\r\n"))
        stripped = inner.strip()
        if stripped.startswith("/*"):
            if not stripped.endswith("*/"):
                raise TemplateError("template: unclosed comment")
            continue
        parts.append(("action", stripped))
    return [p for p in parts if p != ("text", "")]


def _find_close(text: str, pos: int) -> int:
    quote = ""
    i = pos
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\" and quote == '"':
                i += 2
                continue
            if ch == quote:
                quote = ""
        elif ch in "\"`'":
            quote = ch
        elif text.startswith("}}", i):
            return i
        i += 1
    raise TemplateError("template: unclosed action")


def _tokens(src: str) -> list[tuple[str, Any]]:
    toks: list[tuple[str, Any]] = []
    i = 0
    n = len(src)
    while i < n:
        ch = src[i]
        if ch in " \t\r\n":
            i += 1
        elif ch in "|(),":
            toks.append((ch, ch))
            i += 1
        elif src.startswith(":=", i):
            toks.append(("decl", ":="))
            i += 2
        elif ch == "=":
            toks.append(("assign", "="))
            i += 1
        elif ch == '"':
            j = i + 1
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            import json

            toks.append(("lit", json.loads(src[i : j + 1])))
            i = j + 1
        elif ch == "`":
            j = src.index("`", i + 1)
            toks.append(("lit", src[i + 1 : j]))
            i = j + 1
        elif ch == "'":
            j = src.index("'", i + 1)
            toks.append(("lit", src[i + 1 : j]))
            i = j + 1
        else:
            j = i
            while j < n and src[j] not in " \t\r\n|(),=" and not src.startswith(":=", j):
                j += 1
            word = src[i:j]
            i = j
            toks.append(_word(word))
    return toks


def _word(word: str) -> tuple[str, Any]:
    if word.startswith("."):
        return ("field", [p for p in word.split(".")[1:] if p])
    if word.startswith("$"):
        name, *chain = word.split(".")
        return ("var", (name, chain))
    if word in ("true", "false"):
        return ("lit", word == "true")
    if word == "nil":
        return ("lit", None)
    if word[0].isdigit() or (word[0] in "+-" and len(word) > 1):
        try:
            return ("lit", int(word, 0))
        except ValueError:
            try:
                return ("lit", float(word))
            except ValueError:
                raise TemplateError(f"template: bad number syntax: {word!r}") from None
    return ("ident", word)


# ---------------------------------------------------------------------------------- parsing
# Nodes are tuples: ("text", s) ("out", pipe) ("if", pipe, body, else) ("range", pipe, body,
# else) ("with", pipe, body, else); a pipe is (decl_names, is_assign, [command]); a command is a
# list of operands; an operand is ("lit", v) ("field", chain) ("var", (name, chain))
# ("ident", name) or ("sub", pipe, chain).

class _Parser:
    def __init__(self, parts: list[tuple[str, str]]) -> None:
        self.parts = parts
        self.pos = 0

    def block(self, stop: tuple[str, ...]) -> tuple[list[Any], str]:
        nodes: list[Any] = []
        while self.pos < len(self.parts):
            kind, value = self.parts[self.pos]
            self.pos += 1
            if kind == "text":
                nodes.append(("text", value))
                continue
            word = value.split(None, 1)[0] if value else ""
            if word in stop:
                return nodes, value
            if word in ("if", "range", "with"):
                nodes.append(self.control(word, value[len(word):].strip()))
            elif word in ("end", "else"):
                raise TemplateError(f"template: unexpected {{{{{word}}}}}")
            elif word in ("define", "template", "block", "break", "continue"):
                raise TemplateError(f"template: {{{{{word}}}}} is not supported")
            else:
                nodes.append(("out", _pipe(_tokens(value))))
        if stop:
            raise TemplateError("template: unexpected EOF")
        return nodes, ""

    def control(self, word: str, rest: str) -> tuple[Any, ...]:
        pipe = _pipe(_tokens(rest))
        body, closer = self.block(("end", "else"))
        other: list[Any] = []
        if closer.startswith("else"):
            tail = closer[4:].strip()
            if tail.startswith("if ") or tail.startswith("with "):
                inner_word = tail.split(None, 1)[0]
                other = [self.control(inner_word, tail[len(inner_word):].strip())]
            else:
                other, _ = self.block(("end",))
        return (word, pipe, body, other)


def _pipe(toks: list[tuple[str, Any]]) -> tuple[list[str], bool, list[list[Any]]]:
    decl: list[str] = []
    assign = False
    for i, (kind, _v) in enumerate(toks):
        if kind in ("decl", "assign"):
            names = [t for t in toks[:i] if t[0] != ","]
            if all(t[0] == "var" and not t[1][1] for t in names) and names:
                decl = [t[1][0] for t in names]
                assign = kind == "assign"
                toks = toks[i + 1 :]
            break
    cmds: list[list[Any]] = [[]]
    i = 0
    while i < len(toks):
        kind, value = toks[i]
        if kind == "|":
            cmds.append([])
        elif kind == "(":
            depth, j = 1, i + 1
            while j < len(toks) and depth:
                depth += {"(": 1, ")": -1}.get(toks[j][0], 0)
                j += 1
            if depth:
                raise TemplateError("template: unclosed left paren")
            inner = _pipe(toks[i + 1 : j - 1])
            chain: list[str] = []
            if j < len(toks) and toks[j][0] == "field":
                chain = toks[j][1]
                j += 1
            cmds[-1].append(("sub", inner, chain))
            i = j
            continue
        elif kind == ")":
            raise TemplateError("template: unexpected right paren")
        else:
            cmds[-1].append((kind, value))
        i += 1
    if any(not c for c in cmds):
        raise TemplateError("template: missing value for command")
    return decl, assign, cmds


class Template:
    def __init__(self, nodes: list[Any], funcs: dict[str, Callable[..., Any]]) -> None:
        self.nodes = nodes
        self.funcs = funcs

    def execute(self, data: Any) -> str:
        out: list[str] = []
        _Exec(self.funcs, data).run(self.nodes, data, [{"$": data}], out)
        return "".join(out)


def parse(text: str, funcs: dict[str, Callable[..., Any]] | None = None) -> Template:
    nodes, _ = _Parser(_split(text)).block(())
    table = dict(FUNCS)
    if funcs:
        table.update(funcs)
    return Template(nodes, table)


# ---------------------------------------------------------------------------------- execution
class _Exec:
    def __init__(self, funcs: dict[str, Callable[..., Any]], root: Any) -> None:
        self.funcs = funcs
        self.root = root

    def run(self, nodes: list[Any], dot: Any, scope: list[dict[str, Any]], out: list[str]) -> None:
        for node in nodes:
            kind = node[0]
            if kind == "text":
                out.append(node[1])
            elif kind == "out":
                value = self.pipe(node[1], dot, scope)
                if not node[1][0]:
                    out.append(go_str(value))
            elif kind == "if":
                if truth(self.pipe(node[1], dot, scope)):
                    self.run(node[2], dot, scope + [{}], out)
                else:
                    self.run(node[3], dot, scope + [{}], out)
            elif kind == "with":
                inner = scope + [{}]
                value = self.pipe(node[1], dot, inner)
                if truth(value):
                    self.run(node[2], value, inner, out)
                else:
                    self.run(node[3], dot, scope + [{}], out)
            elif kind == "range":
                self.range(node, dot, scope, out)

    def range(self, node: tuple[Any, ...], dot: Any, scope: list[dict[str, Any]],
              out: list[str]) -> None:
        decl, _assign, cmds = node[1]
        value = self.pipe(([], False, cmds), dot, scope)
        if isinstance(value, dict):
            items: list[tuple[Any, Any]] = [(k, value[k]) for k in sorted(value)]
        elif isinstance(value, list | tuple):
            items = list(enumerate(value))
        elif isinstance(value, int) and not isinstance(value, bool):
            items = [(i, i) for i in range(value)]
        elif value is None or value is NO_VALUE:
            items = []
        else:
            raise TemplateError(f"template: range can't iterate over {go_str(value)}")
        if not items:
            self.run(node[3], dot, scope + [{}], out)
            return
        for key, elem in items:
            frame: dict[str, Any] = {}
            if len(decl) == 1:
                frame[decl[0]] = elem
            elif len(decl) >= 2:
                frame[decl[0]], frame[decl[1]] = key, elem
            self.run(node[2], elem, scope + [frame], out)

    def pipe(self, pipe: tuple[list[str], bool, list[list[Any]]], dot: Any,
             scope: list[dict[str, Any]]) -> Any:
        decl, assign, cmds = pipe
        value: Any = NO_VALUE
        first = True
        for cmd in cmds:
            value = self.command(cmd, dot, scope, None if first else value, not first)
            first = False
        if decl:
            if assign:
                for frame in reversed(scope):
                    if decl[0] in frame:
                        frame[decl[0]] = value
                        break
                else:
                    raise TemplateError(f"template: undefined variable: {decl[0]}")
            else:
                scope[-1][decl[0]] = value
        return value

    def command(self, cmd: list[Any], dot: Any, scope: list[dict[str, Any]], piped: Any,
                has_piped: bool) -> Any:
        head = cmd[0]
        if head[0] == "ident":
            name = head[1]
            func = self.funcs.get(name)
            if func is None:
                raise TemplateError(f'template: function "{name}" not defined')
            args = [self.operand(op, dot, scope) for op in cmd[1:]]
            if has_piped:
                args.append(piped)
            try:
                return func(*args)
            except TemplateError:
                raise
            except (TypeError, ValueError, KeyError, IndexError) as err:
                raise TemplateError(f"template: error calling {name}: {err}") from None
        if head[0] in ("field", "var", "sub") and (len(cmd) > 1 or has_piped):
            target = self.operand(head, dot, scope)
            if callable(target):
                args = [self.operand(op, dot, scope) for op in cmd[1:]]
                if has_piped:
                    args.append(piped)
                return target(*args)
            raise TemplateError(f"template: can't give argument to non-function {head}")
        value = self.operand(head, dot, scope)
        return value() if callable(value) else value

    def operand(self, op: Any, dot: Any, scope: list[dict[str, Any]]) -> Any:
        kind = op[0]
        if kind == "lit":
            return op[1]
        if kind == "field":
            return _walk(dot, op[1])
        if kind == "var":
            name, chain = op[1]
            for frame in reversed(scope):
                if name in frame:
                    return _walk(frame[name], chain)
            raise TemplateError(f"template: undefined variable: {name}")
        if kind == "sub":
            return _walk(self.pipe(op[1], dot, scope), op[2])
        if kind == "ident":
            func = self.funcs.get(op[1])
            if func is None:
                raise TemplateError(f'template: function "{op[1]}" not defined')
            return func()
        raise TemplateError(f"template: unexpected {op!r}")


def _walk(value: Any, chain: list[str]) -> Any:
    for name in chain:
        if callable(value):
            value = value()
        if isinstance(value, dict):
            value = value.get(name, NO_VALUE)
        elif value is None or value is NO_VALUE:
            raise TemplateError(f"template: nil pointer evaluating .{name}")
        else:
            attr = getattr(value, name, NO_VALUE)
            if attr is NO_VALUE:
                raise TemplateError(f"template: can't evaluate field {name}")
            value = attr
    return value


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

    return go_json(None if value is NO_VALUE else value)


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


def expand_escapes(fmt: str) -> str:
    r"""Docker turns the two characters ``\t`` / ``\n`` of a --format into tab / newline."""
    return fmt.replace("\\t", "\t").replace("\\n", "\n")


def render(fmt: str, data: Any) -> str:
    return parse(expand_escapes(fmt)).execute(data)
