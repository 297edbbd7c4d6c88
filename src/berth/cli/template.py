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

from berth.cli.template_funcs import (
    FUNCS,
    NO_VALUE,
    TemplateError,
    go_float,
    go_str,
    truth,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["NO_VALUE", "Template", "TemplateError", "expand_escapes", "go_float", "go_str",
           "parse", "render", "truth"]


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


def expand_escapes(fmt: str) -> str:
    r"""Docker turns the two characters ``\t`` / ``\n`` of a --format into tab / newline."""
    return fmt.replace("\\t", "\t").replace("\\n", "\n")


def render(fmt: str, data: Any) -> str:
    return parse(expand_escapes(fmt)).execute(data)
