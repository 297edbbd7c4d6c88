"""Dockerfile text → ``RawInstruction`` records with their source location.

The first of the frontend's three passes (text → raw instructions → typed instructions →
execution). It knows the file syntax only: parser directives (``# syntax=``, ``# escape=``,
``# check=``), comments, line continuations, builder flags (``--from=x``) at the start of any
instruction, exec (JSON) versus shell form, and heredocs. What each instruction *means* is
``instructions.py``'s job; variable substitution is ``shell.py``'s. Pure: no I/O.

Behaviour follows Docker's Dockerfile frontend (see docs/reference in the shared facts sheet):

- Directives are recognised only at the very top; the first line that is not a known directive
  (an ordinary comment, an empty line, an instruction) ends them.
- A line whose first non-blank character is ``#`` is a comment, also inside a continuation,
  where it is dropped without ending the instruction. A blank line inside a continuation is
  skipped too, with a warning.
- Continuation lines keep their leading whitespace; the escape character and any blanks after it
  are removed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from berth.build.shell import Lexer, ShellError
from berth.errors import DockerfileError

__all__ = [
    "Heredoc",
    "HeredocWord",
    "RawInstruction",
    "FlagSpec",
    "parse_flags",
    "go_quote",
    "ParsedDockerfile",
    "parse",
    "parse_heredoc_word",
    "split_words",
    "KNOWN_INSTRUCTIONS",
]

KNOWN_INSTRUCTIONS = frozenset(
    "ADD ARG CMD COPY ENTRYPOINT ENV EXPOSE FROM HEALTHCHECK LABEL MAINTAINER ONBUILD RUN "
    "SHELL STOPSIGNAL USER VOLUME WORKDIR".split()
)
_HEREDOC_INSTRUCTIONS = frozenset({"ADD", "COPY", "RUN"})
_DIRECTIVES = frozenset({"syntax", "escape", "check"})

_RE_DIRECTIVE = re.compile(r"^#[ \t]*([a-zA-Z][a-zA-Z0-9]*)[ \t]*=[ \t]*(.+?)[ \t]*$")
_RE_WHITESPACE = re.compile(r"[\t\v\f\r ]+")
_RE_HEREDOC = re.compile(r"^(\d*)<<(-?)([^<]*)$")
_RE_LEADING_TABS = re.compile(r"^\t+", re.MULTILINE)
_NOT_STRINGS = "when using JSON array syntax, arrays must be comprised of strings only"


@dataclass(frozen=True)
class Heredoc:
    """One ``<<NAME`` body. ``content`` is the body exactly as written, newlines included."""

    name: str
    content: str
    expand: bool = True
    chomp: bool = False
    fd: int | None = None

    @property
    def data(self) -> str:
        """The body with leading tabs removed from every line when written ``<<-NAME``."""
        return _RE_LEADING_TABS.sub("", self.content) if self.chomp else self.content


@dataclass(frozen=True)
class RawInstruction:
    """One logical instruction as written.

    ``keyword`` is upper-cased; ``original`` is the logical line (continuations joined, comments
    dropped); ``flags`` are the leading ``--name[=value]`` words as written (quotes removed);
    ``rest`` is the text after the flags; ``arguments`` are the words the file syntax gives for
    this instruction (JSON array items, whitespace-split words, ENV/LABEL key and value pairs
    flattened, or the whole rest as one string); ``json`` tells exec form. ``sub`` is the
    trigger of an ``ONBUILD``. Line numbers are 1-based and include heredoc bodies.
    """

    keyword: str
    original: str
    rest: str
    arguments: tuple[str, ...]
    flags: tuple[str, ...] = ()
    json: bool = False
    heredocs: tuple[Heredoc, ...] = ()
    start_line: int = 0
    end_line: int = 0
    sub: RawInstruction | None = None

    @property
    def flag_pairs(self) -> tuple[tuple[str, str | None], ...]:
        """``("from", "build")`` for ``--from=build``; value ``None`` when there is no ``=``."""
        pairs: list[tuple[str, str | None]] = []
        for raw in self.flags:
            body = raw[2:] if raw.startswith("--") else raw
            name, eq, value = body.partition("=")
            pairs.append((name, value if eq else None))
        return tuple(pairs)


@dataclass(frozen=True)
class ParsedDockerfile:
    """The result of ``parse``: instructions, the escape character, directives and warnings."""

    instructions: tuple[RawInstruction, ...]
    escape: str = "\\"
    directives: Mapping[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def syntax(self) -> str | None:
        return self.directives.get("syntax")


class _Directives:
    """Tracks the directive block at the top of the file and the current escape character."""

    def __init__(self) -> None:
        self.done = False
        self.seen: dict[str, str] = {}
        self.escape = "\\"
        self._continuation = _continuation_regex("\\")

    def feed(self, line: str, lineno: int) -> None:
        if self.done:
            return
        match = _RE_DIRECTIVE.match(line)
        if not match or match.group(1).lower() not in _DIRECTIVES:
            self.done = True
            return
        name, value = match.group(1).lower(), match.group(2)
        if name in self.seen:
            raise DockerfileError(f"only one {name} parser directive can be used", lineno)
        self.seen[name] = value
        if name == "escape":
            if value not in ("`", "\\"):
                raise DockerfileError(
                    f"invalid escape token '{value}' does not match ` or \\", lineno
                )
            self.escape = value
            self._continuation = _continuation_regex(value)

    def trim_continuation(self, line: str) -> tuple[str, bool]:
        """Remove a trailing escape character; return (text, is_end_of_instruction)."""
        match = self._continuation.search(line)
        if match is None:
            return line, True
        return line[: match.start()] + (match.group(1) or ""), False


def _continuation_regex(escape: str) -> re.Pattern[str]:
    # An escape character at the end continues the line unless it is itself escaped.
    e = re.escape(escape)
    return re.compile(rf"([^{e}]){e}[ \t]*$|^{e}[ \t]*$")


def _is_comment(line: str) -> bool:
    return line.lstrip().startswith("#")


def parse(text: str) -> ParsedDockerfile:
    """Parse Dockerfile text. Raises ``DockerfileError`` naming the line on malformed input."""
    lines = _split_lines(text)
    if lines and lines[0].startswith("\ufeff"):
        lines[0] = lines[0][1:]
    directives = _Directives()
    instructions: list[RawInstruction] = []
    warnings: list[str] = []
    i = 0
    while i < len(lines):
        lineno = i + 1
        physical = lines[i].rstrip("\r\n").lstrip()
        i += 1
        directives.feed(physical, lineno)
        if _is_comment(physical):
            continue
        start = lineno
        line, end_of_line = directives.trim_continuation(physical)
        if end_of_line and not line:
            continue
        parts = [line]
        empty_continuation = False
        while not end_of_line and i < len(lines):
            raw = lines[i].rstrip("\r\n")
            i += 1
            if _is_comment(raw):
                continue
            if not raw.strip():
                empty_continuation = True
                continue
            piece, end_of_line = directives.trim_continuation(raw)
            parts.append(piece)
        logical = "".join(parts)
        if empty_continuation:
            warnings.append(f"[WARNING]: Empty continuation line found in:\n    {logical}")
        node = _node_from_line(logical, directives.escape, start, i)
        heredocs: list[Heredoc] = []
        if _can_contain_heredoc(node) and "<<" in logical:
            for doc in _heredocs_from_line(logical, start, i):
                body: list[str] = []
                terminated = False
                while i < len(lines):
                    raw = lines[i]
                    i += 1
                    candidate = raw.rstrip("\r\n")
                    if doc.chomp:
                        candidate = candidate.lstrip("\t")
                    if candidate == doc.name:
                        terminated = True
                        break
                    body.append(raw if raw.endswith("\n") else raw + "\n")
                if not terminated:
                    raise DockerfileError("unterminated heredoc", start)
                heredocs.append(
                    Heredoc(doc.name, "".join(body), expand=doc.expand, chomp=doc.chomp, fd=doc.fd)
                )
        instructions.append(_located(node, start, i, tuple(heredocs)))
    if not instructions:
        raise DockerfileError("file with no instructions")
    return ParsedDockerfile(
        instructions=tuple(instructions),
        escape=directives.escape,
        directives=dict(directives.seen),
        warnings=_with_footer(warnings),
    )


def _split_lines(text: str) -> list[str]:
    """Physical lines with their endings; only ``\n`` ends a line (not form feeds, U+2028...)."""
    lines = [line + "\n" for line in text.split("\n")]
    lines[-1] = lines[-1][:-1]
    return lines if lines[-1] else lines[:-1]


def _with_footer(warnings: list[str]) -> tuple[str, ...]:
    if not warnings:
        return ()
    footer = "[WARNING]: Empty continuation lines will become errors in a future release."
    return (*warnings, footer)


def _located(
    node: RawInstruction, start: int, end: int, heredocs: tuple[Heredoc, ...]
) -> RawInstruction:
    sub = node.sub
    if sub is not None:
        sub = RawInstruction(
            keyword=sub.keyword, original=sub.original, rest=sub.rest, arguments=sub.arguments,
            flags=sub.flags, json=sub.json, heredocs=heredocs, start_line=start, end_line=end,
        )
        heredocs = ()
    return RawInstruction(
        keyword=node.keyword, original=node.original, rest=node.rest, arguments=node.arguments,
        flags=node.flags, json=node.json, heredocs=heredocs, start_line=start, end_line=end,
        sub=sub,
    )


def _can_contain_heredoc(node: RawInstruction) -> bool:
    target = node.sub if node.keyword == "ONBUILD" and node.sub is not None else node
    return target.keyword in _HEREDOC_INSTRUCTIONS and not target.json


def _node_from_line(line: str, escape: str, start: int, end: int) -> RawInstruction:
    stripped = line.strip()
    split = _RE_WHITESPACE.split(stripped, maxsplit=1) if stripped else [""]
    keyword = split[0].upper()
    rest, flags = _extract_flags(split[1]) if len(split) == 2 else ("", [])
    rest = rest.strip()
    arguments, is_json, sub = _arguments(keyword, rest, escape, start, end)
    return RawInstruction(
        keyword=keyword, original=line, rest=rest, arguments=tuple(arguments),
        flags=tuple(flags), json=is_json, start_line=start, end_line=end, sub=sub,
    )


def _arguments(
    keyword: str, rest: str, escape: str, start: int, end: int
) -> tuple[list[str], bool, RawInstruction | None]:
    if keyword in ("RUN", "CMD", "ENTRYPOINT", "SHELL"):
        return (*_maybe_json(rest, start), None)
    if keyword in ("ADD", "COPY", "VOLUME"):
        words, is_json = _maybe_json(rest, start)
        if not is_json:
            words = _whitespace_split(rest)
        return words, is_json, None
    if keyword in ("FROM", "EXPOSE"):
        return _whitespace_split(rest), False, None
    if keyword in ("MAINTAINER", "STOPSIGNAL", "USER", "WORKDIR"):
        return ([rest] if rest else []), False, None
    if keyword in ("ENV", "LABEL"):
        return _name_values(rest, keyword, escape, start), False, None
    if keyword == "ARG":
        return split_words(rest, escape), False, None
    if keyword == "HEALTHCHECK":
        return (*_health(rest, start), None)
    if keyword == "ONBUILD":
        sub = _node_from_line(rest, escape, start, end) if rest else None
        return ([sub.keyword] if sub else []), False, sub
    return [], False, None  # unknown: reported by the instruction pass, with its name


def _extract_flags(line: str) -> tuple[str, list[str]]:
    """Take leading ``--flag`` words off ``line``; a lone ``--`` ends them."""
    words: list[str] = []
    word: list[str] = []
    blank_ok = False
    quote = ""
    in_quote = False
    pos = 0
    n = len(line)
    while True:
        # looking for the start of a word
        while pos < n and line[pos].isspace():
            pos += 1
        if pos >= n:
            return "", words
        if not line.startswith("--", pos):
            return line[pos:], words
        word, blank_ok, in_quote = [], False, False
        while pos < n:
            ch = line[pos]
            if in_quote:
                if ch == quote:
                    in_quote = False
                elif ch == "\\":
                    if pos + 1 == n:
                        in_quote = False
                    else:
                        pos += 1
                        word.append(line[pos])
                else:
                    word.append(ch)
                pos += 1
                continue
            if ch.isspace():
                break
            if ch in "'\"":
                quote, blank_ok, in_quote = ch, True, True
            elif ch == "\\":
                if pos + 1 < n:
                    pos += 1
                    word.append(line[pos])
            else:
                word.append(ch)
            pos += 1
        text = "".join(word)
        if pos >= n:
            if text != "--" and (blank_ok or text):
                words.append(text)
            return "", words
        if text == "--":
            return line[pos:], words
        if blank_ok or text:
            words.append(text)


def _maybe_json(rest: str, line: int) -> tuple[list[str], bool]:
    """Exec form when ``rest`` starts with a JSON array of strings; else the text, shell form."""
    if not rest:
        return [], False
    text = rest.lstrip()
    if text.startswith("["):
        try:
            value, _ = json.JSONDecoder(parse_constant=_reject_constant).raw_decode(text)
        except ValueError:
            value = None
        if isinstance(value, list):
            if not all(isinstance(v, str) for v in value):
                raise DockerfileError(_NOT_STRINGS, line)
            return list(value), True
    return [rest], False


def _reject_constant(name: str) -> object:
    raise ValueError(name)  # Go's decoder knows no NaN/Infinity


def _whitespace_split(rest: str) -> list[str]:
    return _RE_WHITESPACE.split(rest) if rest else []


def _health(rest: str, line: int) -> tuple[list[str], bool]:
    if not rest:
        return [], False
    match = re.match(r"(\S+)\s*", rest)
    assert match is not None
    kind = match.group(1)
    cmd, is_json = _maybe_json(rest[match.end() :], line)
    return [kind, *cmd], is_json


def _name_values(rest: str, keyword: str, escape: str, line: int) -> list[str]:
    """ENV and LABEL: ``k=v k2=v2`` pairs, or the legacy ``k rest of the line``."""
    words = split_words(rest, escape)
    if not words:
        return []
    if "=" not in words[0]:
        parts = _RE_WHITESPACE.split(rest, maxsplit=1)
        if len(parts) < 2:
            raise DockerfileError(f"{keyword} must have two arguments", line)
        return [parts[0], parts[1]]
    flat: list[str] = []
    for word in words:
        if "=" not in word:
            raise DockerfileError(
                f"Syntax error - can't find = in {go_quote(word)}. Must be of the form: name=value",
                line,
            )
        key, _, value = word.partition("=")
        flat += [key, value]
    return flat


def split_words(rest: str, escape: str = "\\") -> list[str]:
    """Split on blanks, keeping quoted runs and escaped characters in the word *as written*.

    Quotes and escape characters stay in the words; they are removed later, when the word is
    expanded (``shell.process_word``).
    """
    words: list[str] = []
    word: list[str] = []
    in_word = False
    blank_ok = False
    quote = ""
    pos = 0
    n = len(rest)
    while pos < n:
        ch = rest[pos]
        if quote:
            if ch == quote:
                quote = ""
            elif ch == escape and quote != "'":
                if pos + 1 == n:
                    quote = ""
                    pos += 1
                    continue
                word.append(ch)
                pos += 1
                ch = rest[pos]
            word.append(ch)
            pos += 1
            continue
        if ch.isspace():
            if in_word and (blank_ok or word):
                words.append("".join(word))
            word, in_word, blank_ok = [], False, False
            pos += 1
            continue
        in_word = True
        if ch in "'\"":
            quote, blank_ok = ch, True
        if ch == escape:
            if pos + 1 == n:
                pos += 1
                continue
            word.append(ch)
            pos += 1
            ch = rest[pos]
        word.append(ch)
        pos += 1
    if in_word and (blank_ok or word):
        words.append("".join(word))
    return words


def go_quote(text: str) -> str:
    """Quote like Go's ``%q`` for the texts that appear in Docker's error messages."""
    return json.dumps(text, ensure_ascii=False)


@dataclass(frozen=True)
class HeredocWord:
    """What a ``<<WORD`` token says: the terminator, whether to expand, whether to chomp."""

    name: str
    expand: bool
    chomp: bool
    fd: int | None


def parse_heredoc_word(word: str) -> HeredocWord | None:
    """``<<EOF`` / ``<<-"EOF"`` / ``3<<EOF`` → name, expand, chomp, fd; None if not a heredoc."""
    match = _RE_HEREDOC.match(word)
    if not match or not match.group(3):
        return None
    rest = match.group(3)
    unquoted = Lexer(skip_unset=True).process_words(rest, {})
    if len(unquoted) != 1:
        return None
    raw = Lexer(skip_unset=True, raw_quotes=True).process_words(rest, {})
    if len(raw) != 1:
        return None

    def quotes(s: str) -> int:
        return s.count("'") + s.count('"')

    return HeredocWord(
        name=unquoted[0],
        expand=quotes(unquoted[0]) == quotes(raw[0]),
        chomp=match.group(2) == "-",
        fd=int(match.group(1)) if match.group(1) else None,
    )


def _heredocs_from_line(line: str, start: int, end: int) -> list[HeredocWord]:
    lexer = Lexer(raw_quotes=True, raw_escapes=True, skip_unset=True)
    try:
        words = lexer.process_words(line, {})
    except ShellError:
        return []
    docs: list[HeredocWord] = []
    for word in words:
        try:
            doc = parse_heredoc_word(word)
        except ShellError as err:
            raise DockerfileError(str(err), start) from err
        if doc is not None:
            docs.append(doc)
    return docs


# ---- builder flags ------------------------------------------------------------------------


@dataclass(frozen=True)
class FlagSpec:
    """The flags one instruction accepts: single strings, booleans and repeatable strings."""

    strings: tuple[str, ...] = ()
    bools: tuple[str, ...] = ()
    lists: tuple[str, ...] = ()


def parse_flags(raw: RawInstruction, spec: FlagSpec) -> dict[str, str | bool | list[str]]:
    """Check ``raw.flags`` against ``spec`` with Docker's messages; return name → value.

    Booleans: ``--link`` is True, ``--link=false`` False. Repeatable flags give a list.
    """
    values: dict[str, str | bool | list[str]] = {}
    for name, value in raw.flag_pairs:
        if name in spec.lists:
            if value is None:
                raise DockerfileError(f"Missing a value on flag: {name}", raw.start_line)
            listed = values.setdefault(name, [])
            assert isinstance(listed, list)
            listed.append(value)
            continue
        if name not in spec.strings and name not in spec.bools:
            raise DockerfileError(f"Unknown flag: {name}", raw.start_line)
        if name in values:
            raise DockerfileError(f"Duplicate flag specified: {name}", raw.start_line)
        if name in spec.bools:
            if value == "":
                raise DockerfileError(f"Missing a value on flag: {name}", raw.start_line)
            lowered = (value or "true").lower()
            if lowered not in ("true", "false"):
                raise DockerfileError(
                    f"Expecting boolean value for flag {name}, not: {value}", raw.start_line
                )
            values[name] = lowered == "true"
        else:
            if value is None:
                raise DockerfileError(f"Missing a value on flag: {name}", raw.start_line)
            values[name] = value
    return values
