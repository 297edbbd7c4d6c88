"""``.dockerignore`` parsing and matching with Docker's rules (moby/patternmatcher semantics).

Reading: a UTF-8 BOM on the first line is dropped; a line whose *first character* is ``#`` is a
comment; other lines are trimmed, blank ones skipped; ``!`` marks an exception; the pattern is
path-cleaned (``.``/``..`` segments, duplicate and trailing slashes) and one leading ``/`` is
dropped, so ``/foo/bar/`` and ``foo/bar`` are the same pattern.

Matching: against slash-separated paths relative to the context root. ``*`` is any run of
characters except ``/``, ``?`` one such character, ``[...]`` a class (``^`` negates), ``\\``
escapes, and ``**`` any number of directories (including none). A pattern matches a path when
it matches the path itself or any of its parent directories, so excluding a directory excludes
everything below it. Every line is tried in order and the last one that matches decides.
Pure: no I/O.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field

from berth.errors import InvalidArgument

__all__ = ["IgnorePattern", "DockerIgnore", "read_patterns"]


def read_patterns(text: str) -> list[str]:
    """The pattern lines of a ``.dockerignore`` file, cleaned, exceptions kept as ``!pattern``."""
    patterns: list[str] = []
    for number, line in enumerate(text.split("\n")):  # only "\n" ends a line, as in Go
        if number == 0:
            line = line.removeprefix("\ufeff")
        if line.startswith("#"):
            continue
        line = line.strip()
        if not line:
            continue
        invert = line.startswith("!")
        if invert:
            line = line[1:].strip()
        if line:
            line = posixpath.normpath(line)
            if line.startswith("//"):  # posixpath keeps a leading "//"; Go's Clean does not
                line = "/" + line.lstrip("/")
            if len(line) > 1 and line.startswith("/"):
                line = line[1:]
        patterns.append("!" + line if invert else line)
    return patterns


@dataclass(frozen=True)
class IgnorePattern:
    """One compiled line: ``pattern`` is the cleaned text without its ``!``."""

    pattern: str
    exclusion: bool
    regex: re.Pattern[str] = field(compare=False, repr=False)

    @classmethod
    def compile(cls, line: str) -> IgnorePattern:
        text = line.strip()
        exclusion = text.startswith("!")
        if exclusion:
            text = text[1:]
            if not text:
                raise InvalidArgument('illegal exclusion pattern: "!"')
        text = posixpath.normpath(text) if text else "."
        return cls(text, exclusion, re.compile(_translate(text), re.DOTALL))

    def match(self, path: str) -> bool:
        return self.regex.match(path) is not None

    @property
    def parts(self) -> list[str]:
        return self.pattern.split("/")


def _translate(pattern: str) -> str:
    """Glob (Go ``filepath.Match`` + ``**``) → anchored regex; bad syntax raises InvalidArgument."""
    out = ["^"]
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            if i + 1 < n and pattern[i + 1] == "*":
                i += 2
                if i < n and pattern[i] == "/":
                    i += 1
                out.append(".*" if i >= n else "(.*/)?")
                continue
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\":
            if i + 1 < n:
                i += 1
                out.append(re.escape(pattern[i]))
            else:
                out.append(re.escape("\\"))
        elif ch == "[":
            i, klass = _translate_class(pattern, i)
            out.append(klass)
            continue
        else:
            out.append(re.escape(ch))
        i += 1
    out.append("$")
    return "".join(out)


def _translate_class(pattern: str, start: int) -> tuple[int, str]:
    """``[...]`` as Go's ``filepath.Match`` reads it: ``a-z`` ranges, ``^`` negates."""
    i, n = start + 1, len(pattern)
    negate = i < n and pattern[i] == "^"
    if negate:
        i += 1
    items: list[str] = []

    def char() -> str:
        nonlocal i
        if i >= n or pattern[i] in "-]":
            raise InvalidArgument("syntax error in pattern")
        if pattern[i] == "\\":
            i += 1
            if i >= n:
                raise InvalidArgument("syntax error in pattern")
        i += 1
        return pattern[i - 1]

    while True:
        if i < n and pattern[i] == "]" and items:
            klass = "[" + ("^" if negate else "") + "".join(items) + "]"
            return i + 1, klass
        lo = hi = char()
        if i < n and pattern[i] == "-":
            i += 1
            hi = char()
        if hi < lo:
            raise InvalidArgument("syntax error in pattern")
        items.append(re.escape(lo) if lo == hi else f"{re.escape(lo)}-{re.escape(hi)}")


def _clean_path(path: str) -> str:
    return posixpath.normpath(path).lstrip("/") or "."


@dataclass(frozen=True)
class DockerIgnore:
    """The patterns of one ``.dockerignore``; ``matches(path)`` is True when it is excluded."""

    patterns: tuple[IgnorePattern, ...] = ()

    @classmethod
    def from_text(cls, text: str) -> DockerIgnore:
        return cls.from_patterns(read_patterns(text))

    @classmethod
    def from_patterns(cls, lines: list[str]) -> DockerIgnore:
        return cls(tuple(IgnorePattern.compile(p) for p in lines if p.strip()))

    @property
    def has_exclusions(self) -> bool:
        """True when some line is a ``!`` exception."""
        return any(p.exclusion for p in self.patterns)

    def matches(self, path: str) -> bool:
        """Whether ``path`` (relative to the context root) is excluded from the context."""
        path = _clean_path(path)
        parent = posixpath.dirname(path)
        parents = parent.split("/") if parent else []
        matched = False
        for pattern in self.patterns:
            if pattern.exclusion != matched:
                continue  # only a pattern that can change the verdict is worth trying
            hit = pattern.match(path)
            if not hit:
                hit = any(pattern.match("/".join(parents[: i + 1])) for i in range(len(parents)))
            if hit:
                matched = not pattern.exclusion
        return matched

    def should_walk(self, directory: str) -> bool:
        """Whether a directory must be descended into when building the context.

        False only when the directory itself is excluded and no exception could re-include
        anything below it; then the whole subtree can be skipped unread.
        """
        if not self.matches(directory):
            return True
        dir_parts = _clean_path(directory).split("/")
        return any(
            p.exclusion and _could_match_below(p.parts, dir_parts) for p in self.patterns
        )

    def must_send(self, path: str, dockerfile: str = "Dockerfile") -> bool:
        """Whether a file goes into the build context tar.

        The Dockerfile and ``.dockerignore`` always go (the builder needs them), even when
        the patterns exclude them; COPY must then use ``matches`` to keep them invisible.
        """
        cleaned = _clean_path(path)
        if cleaned in (_clean_path(dockerfile), ".dockerignore"):
            return True
        return not self.matches(cleaned)


def _could_match_below(pattern_parts: list[str], dir_parts: list[str]) -> bool:
    """Could a path under ``dir_parts`` match the pattern? Conservative: when unsure, yes."""
    for i, dir_part in enumerate(dir_parts):
        if i >= len(pattern_parts):
            return True
        part = pattern_parts[i]
        if "**" in part:
            return True
        try:
            if not re.fullmatch(_translate(part)[1:-1], dir_part, re.DOTALL):
                return False
        except InvalidArgument:
            return True
    return True
