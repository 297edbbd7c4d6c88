"""A small interpreter of Go's text/template, enough for docker's ``--format``.

Supported: text and actions with ``{{-``/``-}}`` trimming, comments, fields (``.A.B``), ``$``
and ``$var`` (``:=``/``=``), string/raw/number/bool/nil literals, pipelines ``a | f b``,
parenthesised sub-pipelines, ``if``/``else if``/``else``, ``range`` (with ``$i, $v :=`` and
``else``), ``with``, ``break``/``continue`` not. Functions: Go's builtins (and, or, not, len,
index, slice, print, printf, println, eq, ne, lt, le, gt, ge, html, js, urlquery) and docker's
(json, join, split, lower, upper, title, truncate, pad). Values are JSON data (dict, list, str,
int, float, bool, None); a callable field is called with the command's arguments, which is how
listing contexts offer ``{{.Label "k"}}``.

Pure: ``parse`` → ``Template`` → ``execute(data) -> str``; errors raise ``TemplateError``. A
missing map key prints ``<no value>``, or, as with Go's ``missingkey=error``, fails; a third mode
(``struct``) treats plain objects as Go structs (a missing field fails, except the ``zero``
fields a struct has even when its JSON omits them) and only ``GoMap`` objects as maps. Field
errors carry Go's location: ``template: :1:2: executing "" at <.Bogus>: ...``.
"""

from __future__ import annotations

from berth.cli.template_funcs import (
    FUNCS,
    NO_VALUE,
    GoMap,
    TemplateError,
    go_float,
    go_str,
    truth,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

__all__ = ["NO_VALUE", "GoMap", "Template", "TemplateError", "expand_escapes", "go_float",
           "go_str", "parse", "render", "truth"]

MISSING_KEY_MODES = ("invalid", "error", "struct")


# ---------------------------------------------------------------------------------- lexing
def _split(text: str) -> list[tuple[str, str, int]]:
    """→ [("text", s, 0) | ("action", s, offset of s in text)], with trim markers applied."""
    parts: list[tuple[str, str, int]] = []
    pos = 0
    while True:
        start = text.find("{{", pos)
        if start < 0:
            parts.append(("text", text[pos:], 0))
            break
        chunk = text[pos:start]
        inner_start = start + 2
        if text.startswith("- ", inner_start) or text.startswith("-\t", inner_start) or \
                text.startswith("-\n", inner_start):
            chunk = chunk.rstrip(" \t\r\n")
            inner_start += 1
        parts.append(("text", chunk, 0))
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
        parts.append(("action", stripped, inner_start + len(inner) - len(inner.lstrip())))
    return [p for p in parts if p != ("text", "", 0)]


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


def _tokens(src: str, base: int = 0) -> list[tuple[Any, ...]]:
    """Tokens of one action; fields and variables carry the offset (``base`` + index) Go reports
    for them: a chain ``.A.B`` is placed at ``.B``, ``$x.A`` at ``.A``."""
    toks: list[tuple[Any, ...]] = []
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
            toks.append(_word(word, base + i))
            i = j
    return toks


def _word(word: str, pos: int = 0) -> tuple[Any, ...]:
    if word.startswith("."):
        second = word.find(".", 1)
        return ("field", [p for p in word.split(".")[1:] if p], pos + max(second, 0))
    if word.startswith("$"):
        name, *chain = word.split(".")
        return ("var", (name, chain), pos + max(word.find("."), 0))
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

def _after(text: str, offset: int, skip: int) -> tuple[str, int]:
    """``text[skip:]`` without leading blanks, and where that starts in the template."""
    rest = text[skip:]
    stripped = rest.lstrip()
    return stripped.rstrip(), offset + skip + len(rest) - len(stripped)


class _Parser:
    def __init__(self, parts: list[tuple[str, str, int]]) -> None:
        self.parts = parts
        self.pos = 0

    def block(self, stop: tuple[str, ...]) -> tuple[list[Any], str, int]:
        nodes: list[Any] = []
        while self.pos < len(self.parts):
            kind, value, offset = self.parts[self.pos]
            self.pos += 1
            if kind == "text":
                nodes.append(("text", value))
                continue
            word = value.split(None, 1)[0] if value else ""
            if word in stop:
                return nodes, value, offset
            if word in ("if", "range", "with"):
                nodes.append(self.control(word, *_after(value, offset, len(word))))
            elif word in ("end", "else"):
                raise TemplateError(f"template: unexpected {{{{{word}}}}}")
            elif word in ("define", "template", "block", "break", "continue"):
                raise TemplateError(f"template: {{{{{word}}}}} is not supported")
            else:
                nodes.append(("out", _pipe(_tokens(value, offset))))
        if stop:
            raise TemplateError("template: unexpected EOF")
        return nodes, "", 0

    def control(self, word: str, rest: str, offset: int) -> tuple[Any, ...]:
        pipe = _pipe(_tokens(rest, offset))
        body, closer, closer_at = self.block(("end", "else"))
        other: list[Any] = []
        if closer.startswith("else"):
            tail, tail_at = _after(closer, closer_at, 4)
            if tail.startswith("if ") or tail.startswith("with "):
                inner_word = tail.split(None, 1)[0]
                other = [self.control(inner_word, *_after(tail, tail_at, len(inner_word)))]
            else:
                other, _, _ = self.block(("end",))
        return (word, pipe, body, other)


def _pipe(toks: list[tuple[Any, ...]]) -> tuple[list[str], bool, list[list[Any]]]:
    decl: list[str] = []
    assign = False
    for i, tok in enumerate(toks):
        kind = tok[0]
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
        kind = toks[i][0]
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
            cmds[-1].append(toks[i])
        i += 1
    if any(not c for c in cmds):
        raise TemplateError("template: missing value for command")
    return decl, assign, cmds


class Template:
    def __init__(self, nodes: list[Any], funcs: dict[str, Callable[..., Any]],
                 text: str = "") -> None:
        self.nodes = nodes
        self.funcs = funcs
        self.text = text

    def execute(self, data: Any, missing_key: str = "invalid",
                zero: Mapping[str, Any] | None = None) -> str:
        """``missing_key``: ``invalid`` (``<no value>``), ``error`` or ``struct`` (see the
        module's docstring); ``zero``: field name → value, for ``struct``."""
        if missing_key not in MISSING_KEY_MODES:
            raise ValueError(f"unknown missing_key mode {missing_key!r}")
        out: list[str] = []
        _Exec(self, data, missing_key, zero or {}).run(self.nodes, data, [{"$": data}], out)
        return "".join(out)

    def location(self, pos: int) -> str:
        """Go's ``line:col`` of a byte offset (the column is the byte index in its line)."""
        before = self.text[:pos]
        line_start = before.rfind("\n") + 1
        return f"{before.count(chr(10)) + 1}:{len(before[line_start:].encode())}"


def parse(text: str, funcs: dict[str, Callable[..., Any]] | None = None) -> Template:
    nodes, _, _ = _Parser(_split(text)).block(())
    table = dict(FUNCS)
    if funcs:
        table.update(funcs)
    return Template(nodes, table, text)


# ---------------------------------------------------------------------------------- execution
_ABSENT = object()


class _FieldError(Exception):
    """A field that cannot be evaluated; ``operand`` adds where it is."""


class _Exec:
    def __init__(self, template: Template, root: Any, missing_key: str,
                 zero: Mapping[str, Any]) -> None:
        self.template = template
        self.funcs = template.funcs
        self.root = root
        self.missing_key = missing_key
        self.zero = zero

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
            try:
                return self.walk(dot, op[1])
            except _FieldError as err:
                raise self.located(op[2], "." + ".".join(op[1]), err) from None
        if kind == "var":
            name, chain = op[1]
            for frame in reversed(scope):
                if name in frame:
                    try:
                        return self.walk(frame[name], chain)
                    except _FieldError as err:
                        node = name + "".join("." + c for c in chain)
                        raise self.located(op[2], node, err) from None
            raise TemplateError(f"template: undefined variable: {name}")
        if kind == "sub":
            try:
                return self.walk(self.pipe(op[1], dot, scope), op[2])
            except _FieldError as err:
                raise TemplateError(f"template: {err}") from None
        if kind == "ident":
            func = self.funcs.get(op[1])
            if func is None:
                raise TemplateError(f'template: function "{op[1]}" not defined')
            return func()
        raise TemplateError(f"template: unexpected {op!r}")


    def located(self, pos: int, node: str, err: _FieldError) -> TemplateError:
        return TemplateError(f'template: :{self.template.location(pos)}: executing "" at '
                             f"<{node}>: {err}")

    def walk(self, value: Any, chain: list[str]) -> Any:
        for name in chain:
            if callable(value):
                value = value()
            if isinstance(value, dict):
                found = value.get(name, _ABSENT)  # get(): listing contexts override it
                value = self.missing(value, name) if found is _ABSENT else found
            elif value is None or value is NO_VALUE:
                raise _FieldError(f"nil pointer evaluating interface {{}}.{name}")
            else:
                attr = getattr(value, name, NO_VALUE)
                if attr is NO_VALUE:
                    raise _FieldError(f"can't evaluate field {name} in type interface {{}}")
                value = attr
        return value

    def missing(self, mapping: dict[str, Any], name: str) -> Any:
        if self.missing_key == "error":
            quoted = name.replace("\\", "\\\\").replace('"', '\\"')
            raise _FieldError(f'map has no entry for key "{quoted}"')
        if self.missing_key == "struct" and not isinstance(mapping, GoMap):
            if name in self.zero:
                return self.zero[name]
            raise _FieldError(f"can't evaluate field {name} in type struct")
        return NO_VALUE


def expand_escapes(fmt: str) -> str:
    r"""Docker turns the two characters ``\t`` / ``\n`` of a --format into tab / newline."""
    return fmt.replace("\\t", "\t").replace("\\n", "\n")


def render(fmt: str, data: Any) -> str:
    return parse(expand_escapes(fmt)).execute(data)
