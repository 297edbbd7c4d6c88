"""``.dockerignore``: reading lines, glob matching, exceptions, directory pruning."""

from __future__ import annotations

import pytest

from berth.build.dockerignore import DockerIgnore, IgnorePattern, read_patterns
from berth.errors import InvalidArgument


@pytest.mark.parametrize(
    ("text", "patterns"),
    [
        ("/foo/bar/\nfoo/bar\n/foo/bar\nfoo/bar/", ["foo/bar"] * 4),
        ("# comment\n  # not a comment when indented\n", ["# not a comment when indented"]),
        ("\n   \n\tx  \n", ["x"]),
        ("!  keep.md\n! /a/b/", ["!keep.md", "!a/b"]),
        ("a/./b/../c\n./d\n", ["a/c", "d"]),
        ("\ufeffnode_modules\n", ["node_modules"]),
        ("/\n//x\n", ["/", "x"]),
        ("!", ["!"]),
    ],
)
def test_reading_lines(text: str, patterns: list[str]) -> None:
    assert read_patterns(text) == patterns


def test_a_lone_exclamation_mark_is_an_error() -> None:
    with pytest.raises(InvalidArgument, match='illegal exclusion pattern: "!"'):
        DockerIgnore.from_text("!\n")


def test_bad_glob_is_an_error() -> None:
    with pytest.raises(InvalidArgument, match="syntax error in pattern"):
        DockerIgnore.from_text("a[b\n")


CASES: list[tuple[str, str, bool]] = [
    # pattern(s), path, excluded?
    ("*.md", "README.md", True),
    ("*.md", "docs/README.md", False),  # * does not cross /
    ("**/*.md", "docs/a/README.md", True),
    ("**/*.md", "README.md", True),  # ** matches no directory too
    ("a/**/b", "a/b", True),
    ("a/**/b", "a/x/y/b", True),
    ("a/**/b", "a/x/y/bc", False),
    ("a/**", "a/x/y", True),
    ("a/**", "a", False),
    ("node_modules", "node_modules/x/y.js", True),  # a parent directory matches
    ("node_modules", "src/node_modules/x", False),
    ("/build/", "build/out.o", True),
    ("b?ild", "build", True),
    ("b?ild", "b/ild", False),
    ("[a-c]at", "bat", True),
    ("[^a-c]at", "bat", False),
    ("[^a-c]at", "rat", True),
    ("\\*", "*", True),
    ("\\*", "x", False),
    ("file.(x)", "file.(x)", True),
    ("a+b", "a+b", True),
    ("a+b", "aab", False),
    ("*", "anything/at/all", True),
    (".", "x", False),
    ("Dockerfile", "Dockerfile", True),
    # last match wins; exceptions
    ("*.md\n!README.md", "README.md", False),
    ("*.md\n!README.md", "CHANGES.md", True),
    ("!README.md\n*.md", "README.md", True),
    ("*\n!src\n", "src/main.py", False),
    ("*\n!src\n", "docs/x", True),
    ("*\n!src\nsrc/*.tmp", "src/a.tmp", True),
    ("docs\n!docs/keep.md", "docs/keep.md", False),
    ("docs\n!docs/keep.md", "docs/other.md", True),
    ("**/.git\n", "sub/.git/config", True),
]


@pytest.mark.parametrize(("text", "path", "excluded"), CASES)
def test_matching(text: str, path: str, excluded: bool) -> None:
    assert DockerIgnore.from_text(text).matches(path) is excluded


@pytest.mark.parametrize("path", ["./a/b", "/a/b", "a//b", "a/b/"])
def test_paths_are_cleaned_before_matching(path: str) -> None:
    assert DockerIgnore.from_text("a/b").matches(path)


@pytest.mark.parametrize(
    ("text", "directory", "walk"),
    [
        ("node_modules", "node_modules", False),
        ("node_modules", "src", True),
        ("docs\n!docs/keep.md", "docs", True),
        ("docs\n!docs/keep.md", "other", True),
        ("docs\nother\n!docs/keep.md", "other", False),
        ("*\n!src/main.py", "src", True),
        ("*\n!src/main.py", "tests", False),
        ("*\n!**/keep", "deep", True),
        ("*\n!*/keep", "any", True),
        ("a\n!a/b/c", "a/b", True),
        ("a\n!a/b/c", "a/x", False),
    ],
)
def test_should_walk(text: str, directory: str, walk: bool) -> None:
    ignore = DockerIgnore.from_text(text)
    assert ignore.should_walk(directory) is walk


def test_should_walk_never_prunes_a_directory_holding_a_kept_file() -> None:
    ignore = DockerIgnore.from_text("*\n!a/b/c.txt\n!*/z\n")
    for kept in ["a/b/c.txt", "q/z"]:
        parts = kept.split("/")
        assert not ignore.matches(kept)
        for i in range(1, len(parts)):
            assert ignore.should_walk("/".join(parts[:i]))


def test_dockerfile_and_dockerignore_are_always_sent() -> None:
    ignore = DockerIgnore.from_text("*\n")
    assert ignore.must_send("Dockerfile")
    assert ignore.must_send(".dockerignore")
    assert ignore.must_send("build/app.Dockerfile", dockerfile="build/app.Dockerfile")
    assert not ignore.must_send("src/x")
    assert ignore.matches("Dockerfile")  # ...but COPY cannot see them


def test_has_exclusions_and_pattern_records() -> None:
    assert not DockerIgnore.from_text("a\nb").has_exclusions
    ignore = DockerIgnore.from_text("a\n!b")
    assert ignore.has_exclusions
    assert ignore.patterns[1] == IgnorePattern.compile("!b")
    assert (ignore.patterns[1].pattern, ignore.patterns[1].exclusion) == ("b", True)


def test_crlf_and_odd_separators() -> None:
    assert read_patterns("a\r\nb\x0cc\n") == ["a", "b\x0cc"]
