"""Random text never crashes the front end: it parses, or it raises DockerfileError."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from berth.build.dockerignore import DockerIgnore
from berth.build.instructions import StageScope, expand, parse_dockerfile
from berth.build.shell import ShellError, process_word, process_words
from berth.errors import DockerfileError, InvalidArgument

# Text built from the pieces that matter to the grammar, so examples reach deep paths.
PIECES = st.sampled_from(
    [
        "FROM ",
        "from ",
        "RUN ",
        "COPY ",
        "ADD ",
        "ENV ",
        "LABEL ",
        "ARG ",
        "ONBUILD ",
        "CMD ",
        "ENTRYPOINT ",
        "HEALTHCHECK ",
        "SHELL ",
        "EXPOSE ",
        "VOLUME ",
        "WORKDIR ",
        "USER ",
        "STOPSIGNAL ",
        "MAINTAINER ",
        "NONE",
        "AS ",
        "--from=",
        "--mount=",
        "--chown=",
        "--link",
        "--interval=",
        "-- ",
        "type=cache,target=/x",
        "<<EOF",
        "<<-'E'",
        "EOF",
        "\tE",
        "\n",
        "\r\n",
        "\\\n",
        "`\n",
        "\\",
        "`",
        "# escape=`\n",
        "# syntax=x\n",
        "#",
        "[",
        "]",
        '"',
        "'",
        ",",
        '["a", "b"]',
        "$",
        "${",
        "}",
        ":-",
        "#",
        "%",
        "/",
        "=",
        " ",
        "\t",
        "a",
        "b",
        "1",
        "*",
        "\ufeff",
    ]
)
DOCKERFILE_TEXT = st.one_of(st.lists(PIECES, max_size=40).map("".join), st.text(max_size=200))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    DOCKERFILE_TEXT,
    st.dictionaries(st.sampled_from(["a", "b", "X"]), st.text(max_size=5), max_size=2),
)
def test_parser_returns_or_raises_dockerfile_error(text: str, build_args: dict[str, str]) -> None:
    try:
        df = parse_dockerfile(text, build_args)
    except DockerfileError:
        return
    for stage in df.stages:
        scope = StageScope.start()
        for instr in stage.instructions:
            try:
                instr = expand(instr, scope.substitution_env(), df.escape)
            except DockerfileError:
                break
            scope = scope.apply(instr, df)
        df.stages_for_target(stage.name or str(stage.index))


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab$ {}:-+?#%/\\'\"*`[]!^")), max_size=30))
def test_expansion_returns_or_raises_shell_error(text: str) -> None:
    env = {"a": "aa", "b": ""}
    try:
        process_word(text, env)
        process_words(text, env)
    except ShellError:
        pass


@settings(max_examples=200, deadline=None)
@given(
    st.text(alphabet=st.sampled_from(list("ab*?[]^!\\/.\n#- ")), max_size=30),
    st.text(alphabet=st.sampled_from(list("ab/.-")), max_size=12),
)
def test_dockerignore_returns_or_raises_invalid_argument(text: str, path: str) -> None:
    try:
        ignore = DockerIgnore.from_text(text)
    except InvalidArgument:
        return
    ignore.matches(path)
    ignore.should_walk(path)
