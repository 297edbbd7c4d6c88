"""The file-syntax pass: directives, comments, continuations, forms, flags, heredocs, errors."""

from __future__ import annotations

import pytest

from berth.build.parser import RawInstruction, parse, parse_heredoc_word, split_words
from berth.errors import DockerfileError


def only(text: str) -> RawInstruction:  # the last instruction
    instructions = parse(text).instructions
    return instructions[-1]


# ---- case 001: comment lines inside a continuation are dropped ------------------------------


def test_comments_inside_a_continuation_are_removed_and_do_not_end_it() -> None:
    text = (
        "FROM busybox:latest\n"
        "RUN echo one > /out \\\n"
        "# a comment at column 0\n"
        "    && echo two >> /out \\\n"
        "        # an indented comment\n"
        "    && echo three >> /out\n"
        'CMD ["cat", "/out"]\n'
    )
    parsed = parse(text)
    assert [i.keyword for i in parsed.instructions] == ["FROM", "RUN", "CMD"]
    run = parsed.instructions[1]
    assert run.arguments == ("echo one > /out     && echo two >> /out     && echo three >> /out",)
    assert (run.start_line, run.end_line) == (2, 6)
    assert parsed.warnings == ()  # comments are not "empty continuation lines"


# ---- case 003: blank line inside a continuation is skipped with a warning ------------------


def test_blank_line_inside_a_continuation_glues_the_next_line_and_warns() -> None:
    parsed = parse("FROM busybox:latest\nRUN echo a \\\n\necho b\n")
    assert [i.keyword for i in parsed.instructions] == ["FROM", "RUN"]
    assert parsed.instructions[1].arguments == ("echo a echo b",)
    assert parsed.warnings == (
        "[WARNING]: Empty continuation line found in:\n    RUN echo a echo b",
        "[WARNING]: Empty continuation lines will become errors in a future release.",
    )


def test_without_the_escape_the_next_line_is_an_instruction_of_its_own() -> None:
    parsed = parse("FROM busybox:latest\nRUN echo a\n\necho b\n")
    assert [i.keyword for i in parsed.instructions] == ["FROM", "RUN", "ECHO"]


@pytest.mark.parametrize(
    ("text", "joined"),
    [
        ("RUN a \\\n  b", "a   b"),  # leading whitespace of continuation lines is kept
        ("RUN a\\   \n b", "a b"),  # blanks after the escape character are allowed
        ("RUN a \\\\\n", "a \\\\"),  # an escaped escape character does not continue
        ("RUN a \\\n\\\n b", "a  b"),  # a line holding only the escape character
        ("RUN a \\", "a"),  # escape at the very end of the file
        ("run a \\\r\n b\r\n", "a  b"),  # CRLF line endings
    ],
)
def test_line_continuations(text: str, joined: str) -> None:
    assert only(text).arguments == (joined,)


def test_a_comment_cannot_be_continued() -> None:
    parsed = parse("# comment \\\nFROM x\n")
    assert [i.keyword for i in parsed.instructions] == ["FROM"]


def test_hash_after_the_start_of_a_line_is_ordinary_text() -> None:
    assert only("RUN echo # not a comment").arguments == ("echo # not a comment",)


# ---- directives -----------------------------------------------------------------------------


def test_escape_directive_makes_the_backtick_the_continuation_character() -> None:
    parsed = parse("# escape=`\nFROM x\nRUN dir c:\\ `\n  /w\n")
    assert parsed.escape == "`"
    assert parsed.directives == {"escape": "`"}
    assert parsed.instructions[1].arguments == ("dir c:\\   /w",)


@pytest.mark.parametrize(
    ("text", "directives"),
    [
        (
            "# syntax=docker/dockerfile:1\n# escape=`\nFROM x\n",
            {"syntax": "docker/dockerfile:1", "escape": "`"},
        ),
        ("#SYNTAX = a/b:1 \nFROM x\n", {"syntax": "a/b:1"}),
        ("  # escape=`\nFROM x\n", {"escape": "`"}),
        ("# comment\n# escape=`\nFROM x\n", {}),  # an ordinary comment ends the directives
        ("\n# escape=`\nFROM x\n", {}),  # so does an empty line
        ("FROM x\n# escape=`\n", {}),  # and an instruction
        ("# unknown=1\n# escape=`\nFROM x\n", {}),  # an unknown name counts as a comment
        ("# check=skip=all\nFROM x\n", {"check": "skip=all"}),
    ],
)
def test_directives_only_at_the_top(text: str, directives: dict[str, str]) -> None:
    assert dict(parse(text).directives) == directives


def test_escape_directive_after_a_comment_is_ignored_and_backslash_still_continues() -> None:
    parsed = parse("# hello\n# escape=`\nFROM x\nRUN a \\\n b\n")
    assert parsed.escape == "\\"
    assert parsed.instructions[1].arguments == ("a  b",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "# escape=`\n# escape=\\\nFROM x\n",
            "Dockerfile:2: only one escape parser directive can be used",
        ),
        ("# escape=x\nFROM x\n", "Dockerfile:1: invalid escape token 'x' does not match ` or \\"),
    ],
)
def test_directive_errors(text: str, message: str) -> None:
    with pytest.raises(DockerfileError) as err:
        parse(text)
    assert str(err.value) == message


def test_byte_order_mark_is_ignored() -> None:
    assert parse("\ufeff# escape=`\nFROM x\n").escape == "`"


# ---- keywords, flags, exec vs shell form ----------------------------------------------------


def test_keywords_are_case_insensitive_and_upper_cased() -> None:
    parsed = parse('from busybox:latest AS Base\nRun echo lower-ok\ncMd ["echo", "mixed-ok"]\n')
    assert [i.keyword for i in parsed.instructions] == ["FROM", "RUN", "CMD"]
    assert parsed.instructions[0].arguments == ("busybox:latest", "AS", "Base")


@pytest.mark.parametrize(
    ("line", "flags", "rest"),
    [
        ("COPY --from=build --chown=1:2 a b", ("--from=build", "--chown=1:2"), "a b"),
        ("CMD --help", ("--help",), ""),
        ("CMD -- --help", (), "--help"),
        ("CMD echo --help", (), "echo --help"),
        ('COPY --chown="a b" x y', ("--chown=a b",), "x y"),
        ("COPY --link x y", ("--link",), "x y"),
        ("RUN --mount=type=cache,target=/c  make", ("--mount=type=cache,target=/c",), "make"),
        ("COPY -x a b", (), "-x a b"),
    ],
)
def test_leading_double_dash_words_are_builder_flags(
    line: str, flags: tuple[str, ...], rest: str
) -> None:
    raw = only("FROM x\n" + line)
    assert raw.flags == flags
    assert raw.rest == rest


def test_flag_pairs() -> None:
    raw = only("FROM x\nCOPY --from=a --link --chmod= x y")
    assert raw.flag_pairs == (("from", "a"), ("link", None), ("chmod", ""))


@pytest.mark.parametrize(
    ("line", "arguments", "is_json"),
    [
        (
            'RUN ["sh", "-c", "echo exec-ok"] this text is ignored',
            ("sh", "-c", "echo exec-ok"),
            True,
        ),
        ("CMD ['echo', 'hello']", ("['echo', 'hello']",), False),  # case 005
        ('VOLUME [ "/data"', ("[", '"/data"'), False),  # unterminated: whitespace split
        ('SHELL [ "bin/sh" ] ]', ("bin/sh",), True),
        ('CMD  [ "a" , "b\\\\c" ]', ("a", "b\\c"), True),
        ("CMD []", (), True),
        ("CMD [NaN]", ("[NaN]",), False),
        ('COPY ["a b", "/c d/"]', ("a b", "/c d/"), True),
        ("COPY a  b\tc", ("a", "b", "c"), False),
        ("ENTRYPOINT", (), False),
    ],
)
def test_exec_form_and_fallback_to_shell_form(
    line: str, arguments: tuple[str, ...], is_json: bool
) -> None:
    raw = only("FROM x\n" + line)
    assert raw.arguments == arguments
    assert raw.json is is_json


def test_json_array_with_non_strings_is_an_error() -> None:
    with pytest.raises(DockerfileError) as err:
        parse('FROM x\nCMD ["a", 1]\n')
    assert str(err.value) == (
        "Dockerfile:2: when using JSON array syntax, arrays must be comprised of strings only"
    )


@pytest.mark.parametrize(
    ("line", "arguments"),
    [
        ("ENV a=1 b=2", ("a", "1", "b", "2")),
        ('ENV multi="a b" single=c\\ d empty=', ("multi", '"a b"', "single", "c\\ d", "empty", "")),
        ('ENV DQUOTE One "two two"  three', ("DQUOTE", 'One "two two"  three')),
        ("LABEL a.b=c", ("a.b", "c")),
        ("ARG a=1 b", ("a=1", "b")),
        ("HEALTHCHECK --interval=5s CMD curl -f x", ("CMD", "curl -f x")),
        ('HEALTHCHECK CMD ["true"]', ("CMD", "true")),
        ("HEALTHCHECK NONE", ("NONE",)),
        ("WORKDIR /a b", ("/a b",)),
        ("EXPOSE 80 443/udp", ("80", "443/udp")),
        ("ONBUILD RUN x", ("RUN",)),
    ],
)
def test_arguments_by_instruction(line: str, arguments: tuple[str, ...]) -> None:
    assert only("FROM x\n" + line).arguments == arguments


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "ENV a=1 b",
            'Dockerfile:2: Syntax error - can\'t find = in "b". Must be of the form: name=value',
        ),
        ("ENV ONLYKEY", "Dockerfile:2: ENV must have two arguments"),
        ("LABEL k", "Dockerfile:2: LABEL must have two arguments"),
    ],
)
def test_name_value_errors(line: str, message: str) -> None:
    with pytest.raises(DockerfileError) as err:
        parse("FROM x\n" + line)
    assert str(err.value) == message


def test_onbuild_keeps_its_trigger_as_a_sub_instruction() -> None:
    raw = only('FROM x\nONBUILD run echo "t" >> /log')
    assert raw.sub is not None
    assert raw.sub.keyword == "RUN"
    assert raw.sub.arguments == ('echo "t" >> /log',)


def test_empty_file_has_no_instructions() -> None:
    for text in ("", "\n\n", "# only a comment\n", "# escape=`\n"):
        with pytest.raises(DockerfileError) as err:
            parse(text)
        assert str(err.value) == "file with no instructions"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("a b  c", ["a", "b", "c"]),
        ('a="x y" b', ['a="x y"', "b"]),
        ("a\\ b c", ["a\\ b", "c"]),
        ("'it''s' x", ["'it''s'", "x"]),
        ('"" x', ['""', "x"]),
    ],
)
def test_split_words_keeps_quotes_for_later_expansion(text: str, words: list[str]) -> None:
    assert split_words(text) == words


# ---- heredocs -------------------------------------------------------------------------------


def test_run_heredoc_body_and_lines() -> None:
    parsed = parse("FROM x\nRUN <<EOF\necho $HOME\n  two\nEOF\nCMD x\n")
    run = parsed.instructions[1]
    assert run.arguments == ("<<EOF",)
    (doc,) = run.heredocs
    assert (doc.name, doc.content, doc.expand, doc.chomp) == (
        "EOF",
        "echo $HOME\n  two\n",
        True,
        False,
    )
    assert (run.start_line, run.end_line) == (2, 5)
    assert parsed.instructions[2].keyword == "CMD"


def test_dash_heredoc_strips_leading_tabs_of_body_and_terminator() -> None:
    (doc,) = only("FROM x\nRUN <<-EOT\n\t\tone\n\t two\n\tEOT\n").heredocs
    assert doc.chomp
    assert doc.content == "\t\tone\n\t two\n"
    assert doc.data == "one\n two\n"


@pytest.mark.parametrize(
    ("word", "name", "expand"),
    [
        ("<<EOF", "EOF", True),
        ('<<"EOF"', "EOF", False),
        ("<<'EOF'", "EOF", False),
        ('<<E"O"F', "EOF", False),
    ],
)
def test_quoted_heredoc_word_disables_expansion(word: str, name: str, expand: bool) -> None:
    doc = parse_heredoc_word(word)
    assert doc is not None
    assert (doc.name, doc.expand) == (name, expand)


@pytest.mark.parametrize("word", ["<<", "a<<b", "<<a b", "x"])
def test_words_that_are_not_heredocs(word: str) -> None:
    assert parse_heredoc_word(word) is None


def test_several_heredocs_on_one_line_take_their_bodies_in_order() -> None:
    run = only("FROM x\nRUN cat <<A > /a && cat <<'B' > /b\nfirst\nA\nsecond $X\nB\n")
    assert [(d.name, d.content, d.expand) for d in run.heredocs] == [
        ("A", "first\n", True),
        ("B", "second $X\n", False),
    ]


def test_copy_heredoc() -> None:
    raw = only("FROM x\nCOPY <<EOF /dest\nhello\nEOF\n")
    assert raw.arguments == ("<<EOF", "/dest")
    assert raw.heredocs[0].content == "hello\n"


def test_heredocs_only_for_run_copy_add_in_shell_form() -> None:
    parsed = parse('FROM x\nCMD cat <<EOF\nENV a=1\nRUN ["cat", "<<EOF"]\nLABEL b=2\n')
    assert [i.keyword for i in parsed.instructions] == ["FROM", "CMD", "ENV", "RUN", "LABEL"]


def test_onbuild_heredoc() -> None:
    raw = only("FROM x\nONBUILD RUN <<EOF\necho hi\nEOF\n")
    assert raw.sub is not None
    assert raw.sub.heredocs[0].content == "echo hi\n"


def test_unterminated_heredoc() -> None:
    with pytest.raises(DockerfileError) as err:
        parse("FROM x\nRUN <<EOF\necho\n")
    assert str(err.value) == "Dockerfile:2: unterminated heredoc"


def test_only_newline_ends_a_line() -> None:
    parsed = parse("FROM x\nRUN a\x0cb\u2028c\x1cd\n")
    assert parsed.instructions[1].arguments == ("a\x0cb\u2028c\x1cd",)
