"""Builder-side variable substitution: the table of forms, quoting, escapes, errors."""

from __future__ import annotations

import pytest

from berth.build.shell import Lexer, ShellError, glob_to_regex, process_word, process_words

ENV = {"v": "hello/world.tar.gz", "empty": "", "spaced": "x y  z", "PATH": "/bin"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$v", "hello/world.tar.gz"),
        ("${v}", "hello/world.tar.gz"),
        ("a${v}b", "ahello/world.tar.gzb"),
        ("$unset", ""),
        ("${unset}", ""),
        ("$v.x", "hello/world.tar.gz.x"),
        ("$", "$"),
        ("a$", "a$"),
        ("$1", ""),
        ("$ x", "$ x"),
        # default / alternative values
        ("${unset:-def}", "def"),
        ("${empty:-def}", "def"),
        ("${v:-def}", "hello/world.tar.gz"),
        ("${empty-def}", ""),
        ("${unset-def}", "def"),
        ("${v:+alt}", "alt"),
        ("${empty:+alt}", ""),
        ("${empty+alt}", "alt"),
        ("${unset+alt}", ""),
        ("${unset:-$PATH}", "/bin"),
        ("${unset:-${empty:-deep}}", "deep"),
        ("${empty?x}", ""),
        # prefix, suffix, replacement
        ("${v#*/}", "world.tar.gz"),
        ("${v##*.}", "gz"),
        ("${v%.*}", "hello/world.tar"),
        ("${v%%.*}", "hello/world"),
        ("${v#nomatch}", "hello/world.tar.gz"),
        ("${v%%[.]*}", "hello/world"),
        ("${v#h?llo}", "/world.tar.gz"),
        ("${v/o/0}", "hell0/world.tar.gz"),
        ("${v//o/0}", "hell0/w0rld.tar.gz"),
        ("${v//[lo]/_}", "he___/w_r_d.tar.gz"),
        ("${v/*./X}", "Xgz"),
        ("${unset#x}", ""),
        # quoting and escapes
        ("\\$v", "$v"),
        ("\\${v}", "${v}"),
        ("'$v'", "$v"),
        ('"$v"', "hello/world.tar.gz"),
        ('"a\\"b"', 'a"b'),
        ('"\\$v"', "$v"),
        ('"\\x"', "\\x"),
        ('"it\'s"', "it's"),
        ("'a\\b'", "a\\b"),
        ("a\\ b", "a b"),
        ("a\\\\b", "a\\b"),
        ('One "two two"  three', "One two two  three"),
        ("One two\\\\ two three", "One two\\ two three"),
        ("trailing\\", "trailing"),
    ],
)
def test_process_word(text: str, expected: str) -> None:
    assert process_word(text, ENV) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${unset:?boom}", "unset: boom"),
        ("${unset:?}", "unset: is not allowed to be unset"),
        ("${empty:?}", "empty: is not allowed to be empty"),
        ("${unset?}", "unset: is not allowed to be unset"),
        ("${", "syntax error: missing '}'"),
        ("${v", "syntax error: missing '}'"),
        ("${v:-x", "syntax error: missing '}'"),
        ("${}", "syntax error: bad substitution"),
        ("${:x}", "syntax error: bad substitution"),
        ("${v:=x}", "unsupported modifier (=) in substitution"),
        ("${v!}", "unsupported modifier (!) in substitution"),
        ("'open", "unexpected end of statement while looking for matching single-quote"),
        ('"open', "unexpected end of statement while looking for matching double-quote"),
    ],
)
def test_process_word_errors(text: str, message: str) -> None:
    with pytest.raises(ShellError) as err:
        process_word(text, ENV)
    assert str(err.value) == message


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("$spaced", ["x", "y", "z"]),
        ('"$spaced"', ["x y  z"]),
        ("a 'b c' \"d  e\" f\\ g", ["a", "b c", "d  e", "f g"]),
        ("a '' b", ["a", "b"]),
        ("  ", []),
        ("p$spaced", ["px", "y", "z"]),
    ],
)
def test_process_words_splits_unquoted_expansions(text: str, words: list[str]) -> None:
    assert process_words(text, ENV) == words


def test_backtick_escape() -> None:
    assert process_word("a` b `$v c\\d", ENV, escape="`") == "a b $v c\\d"


def test_raw_lexers_keep_quotes_and_unset_references() -> None:
    raw = Lexer(raw_quotes=True, skip_unset=True)
    assert (
        raw.process_word("'a' \"$nope\" ${nope:-x} $v", ENV)
        == "'a' \"$nope\" ${nope:-x} hello/world.tar.gz"
    )


def test_skip_quotes_treats_quotes_as_text() -> None:
    body = Lexer(skip_quotes=True)
    assert (
        body.process_word("echo '$v' \"$v\"\n", ENV)
        == "echo 'hello/world.tar.gz' \"hello/world.tar.gz\"\n"
    )


@pytest.mark.parametrize(
    ("glob", "matches", "misses"),
    [
        ("*.go", ["a.go", ".go"], ["a.gox"]),
        ("a?c", ["abc"], ["ac"]),
        ("[!a]x", ["bx"], ["ax"]),
        ("[^a]x", ["bx"], ["ax"]),
        ("\\*", ["*"], ["a"]),
    ],
)
def test_glob_to_regex(glob: str, matches: list[str], misses: list[str]) -> None:
    import re

    rx = re.compile(glob_to_regex(glob))
    assert all(rx.fullmatch(m) for m in matches)
    assert not any(rx.fullmatch(m) for m in misses)
