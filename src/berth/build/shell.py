"""Builder-side variable substitution and word splitting, as the Dockerfile frontend does it.

This is not a shell: it never runs anything. It implements the small language BuildKit's
lexer accepts in ADD, COPY, ENV, EXPOSE, FROM, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR and
ARG arguments (and in the flag values of those instructions):

- ``$name`` / ``${name}``; an unset name expands to the empty string;
- ``${v:-w} ${v-w} ${v:+w} ${v+w} ${v:?msg} ${v?msg}`` (the word ``w`` may hold variables);
- ``${v#p} ${v##p} ${v%p} ${v%%p} ${v/p/r} ${v//p/r}`` with glob patterns (``*``, ``?``, ``[...]``);
- the escape character (``\\`` or a backtick, from the ``# escape=`` directive) makes the next
  character literal; inside double quotes it only escapes ``"``, ``$`` and itself;
- single quotes stop all expansion; quotes are removed from the result.

``process_word`` returns one string (inner whitespace kept); ``process_words`` splits into
words the way the shell would, where the text produced by an unquoted ``$var`` is split too.
Pure functions, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from berth.errors import InvalidArgument

__all__ = ["ShellError", "Lexer", "process_word", "process_words", "glob_to_regex"]

_EOF = ""
_SPECIAL_PARAMS = frozenset("@*#?-$!0")


class ShellError(InvalidArgument):
    """A substitution that does not parse (``syntax error: bad substitution``) or ``${v:?msg}``."""


@dataclass(frozen=True)
class Lexer:
    """Settings of one expansion pass.

    ``raw_quotes`` keeps quote characters in the output, ``raw_escapes`` keeps escape
    characters, ``skip_unset`` leaves references to unset names as written and
    ``skip_quotes`` treats quote characters as ordinary text (used for heredoc bodies).
    """

    escape: str = "\\"
    raw_quotes: bool = False
    raw_escapes: bool = False
    skip_unset: bool = False
    skip_quotes: bool = False

    def process_word(self, text: str, env: Mapping[str, str]) -> str:
        """Expand ``text`` into a single string (quotes removed, whitespace kept)."""
        word, _ = _Scan(text, env, self).run()
        return word

    def process_words(self, text: str, env: Mapping[str, str]) -> list[str]:
        """Expand ``text`` and split it into words as the shell would."""
        _, words = _Scan(text, env, self).run()
        return words


def process_word(text: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """Expand one word with BuildKit's rules: ``ENV`` values, ``COPY`` paths, ``WORKDIR`` ..."""
    return Lexer(escape=escape).process_word(text, env)


def process_words(text: str, env: Mapping[str, str], escape: str = "\\") -> list[str]:
    """Expand and split into words (``EXPOSE $PORTS`` with ``PORTS="80 443"`` gives two)."""
    return Lexer(escape=escape).process_words(text, env)


class _Words:
    """Collects words; characters that came from quotes or escapes never split a word."""

    def __init__(self) -> None:
        self.words: list[str] = []
        self.current: list[str] = []
        self.in_word = False

    def add_char(self, ch: str) -> None:
        if ch.isspace():
            if self.in_word:
                self._flush()
            return
        self.add_raw_char(ch)

    def add_raw_char(self, ch: str) -> None:
        self.current.append(ch)
        self.in_word = True

    def add_string(self, text: str) -> None:
        for ch in text:
            self.add_char(ch)

    def add_raw_string(self, text: str) -> None:
        for ch in text:
            self.add_raw_char(ch)

    def _flush(self) -> None:
        if self.current:
            self.words.append("".join(self.current))
        self.current = []
        self.in_word = False

    def result(self) -> list[str]:
        self._flush()
        return self.words


class _Scan:
    """One left-to-right pass over ``text``; mirrors the structure of a POSIX word expander."""

    def __init__(self, text: str, env: Mapping[str, str], lexer: Lexer) -> None:
        self.text = text
        self.pos = 0
        self.env = env
        self.lx = lexer

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else _EOF

    def next(self) -> str:
        ch = self.peek()
        if ch:
            self.pos += 1
        return ch

    def run(self) -> tuple[str, list[str]]:
        word, words = self.until(_EOF, self.lx.raw_escapes)
        return word, words

    def until(self, stop: str, raw_escapes: bool) -> tuple[str, list[str]]:
        """Process up to (and consuming) ``stop``; ``stop == ""`` means the end of the text."""
        out: list[str] = []
        words = _Words()
        esc = self.lx.escape
        while self.peek() != _EOF:
            ch = self.peek()
            if stop and ch == stop:
                self.next()
                return "".join(out), words.result()
            if ch in "'\"" and not self.lx.skip_quotes:
                piece = self.single_quoted() if ch == "'" else self.double_quoted()
                out.append(piece)
                words.add_raw_string(piece)
                continue
            if ch == "$":
                piece = self.dollar()
                out.append(piece)
                words.add_string(piece)
                continue
            ch = self.next()
            if ch == esc:
                if raw_escapes:
                    words.add_raw_char(ch)
                    out.append(ch)
                ch = self.next()
                if ch == _EOF:
                    break
                words.add_raw_char(ch)
            else:
                words.add_char(ch)
            out.append(ch)
        if stop:
            raise ShellError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(out), words.result()

    def single_quoted(self) -> str:
        # Nothing can be escaped inside single quotes, not even a single quote.
        out: list[str] = []
        quote = self.next()
        if self.lx.raw_quotes:
            out.append(quote)
        while True:
            ch = self.next()
            if ch == _EOF:
                raise ShellError(
                    "unexpected end of statement while looking for matching single-quote"
                )
            if ch == "'":
                if self.lx.raw_quotes:
                    out.append(ch)
                return "".join(out)
            out.append(ch)

    def double_quoted(self) -> str:
        out: list[str] = []
        quote = self.next()
        if self.lx.raw_quotes:
            out.append(quote)
        esc = self.lx.escape
        while True:
            ch = self.peek()
            if ch == _EOF:
                raise ShellError(
                    "unexpected end of statement while looking for matching double-quote"
                )
            if ch == '"':
                self.next()
                if self.lx.raw_quotes:
                    out.append(ch)
                return "".join(out)
            if ch == "$":
                out.append(self.dollar())
                continue
            ch = self.next()
            if ch == esc:
                nxt = self.peek()
                if nxt == _EOF:
                    continue
                if nxt in ('"', "$", esc):
                    if self.lx.raw_escapes:
                        out.append(ch)
                    ch = self.next()
            out.append(ch)

    def name(self) -> str:
        """A variable name: letters, digits, ``_``; or digits only; or one special parameter."""
        start = self.pos
        ch = self.peek()
        if ch and ch.isdigit():
            while self.peek() and self.peek().isdigit():
                self.next()
            return self.text[start : self.pos]
        if ch and ch in _SPECIAL_PARAMS:
            return self.next()
        while True:
            ch = self.peek()
            if not ch or not (ch.isalnum() or ch == "_"):
                break
            self.next()
        return self.text[start : self.pos]

    def lookup(self, name: str) -> str | None:
        return self.env.get(name)

    def dollar(self) -> str:
        self.next()  # the $
        if self.peek() != "{":
            name = self.name()
            if not name:
                return "$"
            value = self.lookup(name)
            if value is None:
                return "$" + name if self.lx.skip_unset else ""
            return value
        self.next()  # the {
        if self.peek() == _EOF:
            raise ShellError("syntax error: missing '}'")
        if self.peek() in "{}:":
            raise ShellError("syntax error: bad substitution")
        name = self.name()
        ch = self.next()
        value = self.lookup(name)
        if ch == "}":
            if value is None:
                return "${" + name + "}" if self.lx.skip_unset else ""
            return value
        if ch == ":":
            modifier = self.next()
            word = self.operand()
            if modifier == "-":
                if value is None and self.lx.skip_unset:
                    return "${" + name + ":-" + word + "}"
                return value if value else word
            if modifier == "+":
                if value is None and self.lx.skip_unset:
                    return "${" + name + ":+" + word + "}"
                return word if value else ""
            if modifier == "?":
                if value is None:
                    raise ShellError(f"{name}: {word or 'is not allowed to be unset'}")
                if value == "":
                    raise ShellError(f"{name}: {word or 'is not allowed to be empty'}")
                return value
            raise ShellError(f"unsupported modifier ({modifier}) in substitution")
        if ch in ("-", "+", "?"):
            word = self.operand()
            if value is None and self.lx.skip_unset:
                return "${" + name + ch + word + "}"
            if ch == "-":
                return word if value is None else value
            if ch == "+":
                return "" if value is None else word
            if value is None:
                raise ShellError(f"{name}: {word or 'is not allowed to be unset'}")
            return value
        if ch in ("#", "%"):
            longest = self.peek() == ch
            if longest:
                self.next()
            pattern = self.operand(raw_escapes=True)
            if value is None:
                return "${" + name + ch * (2 if longest else 1) + pattern + "}" if (
                    self.lx.skip_unset
                ) else ""
            return _trim(value, pattern, prefix=ch == "#", longest=longest, escape=self.lx.escape)
        if ch == "/":
            every = self.peek() == "/"
            if every:
                self.next()
            pattern, _ = self.until("/", True)
            replacement = self.operand(raw_escapes=True)
            if value is None:
                if self.lx.skip_unset:
                    return "${" + name + "/" + pattern + "/" + replacement + "}"
                return ""
            return _replace(value, pattern, replacement, every, self.lx.escape)
        if ch == _EOF:
            raise ShellError("syntax error: missing '}'")
        raise ShellError(f"unsupported modifier ({ch}) in substitution")

    def operand(self, raw_escapes: bool | None = None) -> str:
        """The word after a modifier, up to the closing brace (it may contain expansions)."""
        try:
            word, _ = self.until("}", self.lx.raw_escapes if raw_escapes is None else raw_escapes)
        except ShellError:
            if self.peek() == _EOF:
                raise ShellError("syntax error: missing '}'") from None
            raise
        return word


def glob_to_regex(pattern: str, escape: str = "\\") -> str:
    """Translate a shell glob (``*``, ``?``, ``[...]``, escaped characters) into a regex.

    An unterminated or malformed ``[`` stands for itself, as in the shell.
    """
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == escape and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch == "[":
            klass = _bracket(pattern, i, escape)
            if klass is not None:
                i, text = klass
                out.append(text)
                continue
            out.append(re.escape(ch))
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out)


def _bracket(pattern: str, start: int, escape: str) -> tuple[int, str] | None:
    """``[abc]``, ``[a-z]``, ``[!x]`` / ``[^x]`` → (index after it, regex); None if malformed."""
    i, n = start + 1, len(pattern)
    negate = i < n and pattern[i] in "!^"
    if negate:
        i += 1
    items: list[str] = []
    while i < n:
        if pattern[i] == "]" and items:
            return i + 1, "[" + ("^" if negate else "") + "".join(items) + "]"
        lo = pattern[i]
        if lo == escape and i + 1 < n:
            i += 1
            lo = pattern[i]
        i += 1
        hi = lo
        if i + 1 < n and pattern[i] == "-" and pattern[i + 1] != "]":
            hi = pattern[i + 1]
            i += 2
        if hi < lo:
            return None
        items.append(re.escape(lo) if lo == hi else f"{re.escape(lo)}-{re.escape(hi)}")
    return None


def _trim(value: str, pattern: str, *, prefix: bool, longest: bool, escape: str) -> str:
    rx = re.compile(glob_to_regex(pattern, escape), re.DOTALL)
    cuts = range(len(value) + 1)
    order = reversed(cuts) if longest else iter(cuts)
    for n in order:
        part = value[:n] if prefix else value[len(value) - n :]
        if rx.fullmatch(part):
            return value[n:] if prefix else value[: len(value) - n]
    return value


def _replace(value: str, pattern: str, replacement: str, every: bool, escape: str) -> str:
    if pattern == "":
        return value
    rx = re.compile(glob_to_regex(pattern, escape), re.DOTALL)
    out: list[str] = []
    i = 0
    replaced = False
    while i < len(value):
        if replaced and not every:
            break
        match_end = -1
        for end in range(len(value), i, -1):  # longest match at the leftmost position
            if rx.fullmatch(value, i, end):
                match_end = end
                break
        if match_end < 0:
            out.append(value[i])
            i += 1
            continue
        out.append(replacement)
        i = match_end
        replaced = True
    out.append(value[i:])
    return "".join(out)
