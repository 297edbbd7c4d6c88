"""Typed instructions, stages, variable scope and substitution per instruction."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from berth.build.instructions import (
    AddInstruction,
    ArgDecl,
    ArgInstruction,
    CmdInstruction,
    CopyInstruction,
    Dockerfile,
    EntrypointInstruction,
    EnvInstruction,
    ExposeInstruction,
    FromInstruction,
    HealthcheckInstruction,
    HeredocSource,
    Instruction,
    KeyValue,
    LabelInstruction,
    MaintainerInstruction,
    OnbuildInstruction,
    RunInstruction,
    ShellInstruction,
    StageScope,
    StopsignalInstruction,
    UserInstruction,
    VolumeInstruction,
    WorkdirInstruction,
    expand,
    exposed_ports,
    parse_dockerfile,
    parse_duration,
    parse_instruction,
    parse_mount,
    to_json,
)
from berth.errors import DockerfileError


def first(line: str) -> Instruction:
    """The one instruction of a stage that holds only ``line``."""
    return parse_dockerfile("FROM scratch\n" + line).stages[0].instructions[0]


def error(text: str, build_args: Mapping[str, str] | None = None) -> str:
    with pytest.raises(DockerfileError) as err:
        parse_dockerfile(text, build_args)
    return str(err.value)


def run_stage(df: Dockerfile, index: int, base_env: tuple[str, ...] = ()) -> list[dict[str, str]]:
    """Walk a stage the way the executor does; return the environment each RUN would see."""
    scope = StageScope.start(base_env)
    seen = []
    for instr in df.stages[index].instructions:
        instr = expand(instr, scope.substitution_env(), df.escape)
        if isinstance(instr, RunInstruction):
            seen.append(scope.run_env())
        scope = scope.apply(instr, df)
    return seen


# ---- one record per instruction -------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("RUN echo hi", RunInstruction(command=("echo hi",))),
        ('RUN ["a", "b"]', RunInstruction(command=("a", "b"), prepend_shell=False)),
        (
            "RUN --network=none --security=insecure x",
            RunInstruction(command=("x",), network="none", security="insecure"),
        ),
        ("CMD echo hi", CmdInstruction(command=("echo hi",))),
        ("CMD -- --help", CmdInstruction(command=("--help",))),  # case 013
        (
            'ENTRYPOINT ["echo", "ep:"]',
            EntrypointInstruction(command=("echo", "ep:"), prepend_shell=False),
        ),
        ('SHELL ["/bin/bash", "-c"]', ShellInstruction(shell=("/bin/bash", "-c"))),
        ("EXPOSE 80 53/udp", ExposeInstruction(ports=("80", "53/udp"))),
        (
            'LABEL a=1 "b c"=2',
            LabelInstruction(labels=(KeyValue("a", "1"), KeyValue('"b c"', "2"))),
        ),
        ("ENV a=1", EnvInstruction(env=(KeyValue("a", "1"),))),
        ("ENV K some value", EnvInstruction(env=(KeyValue("K", "some value"),))),
        ("ARG a b=2 c=", ArgInstruction(args=(ArgDecl("a"), ArgDecl("b", "2"), ArgDecl("c", "")))),
        ("WORKDIR /a b", WorkdirInstruction(path="/a b")),
        ("USER app:app", UserInstruction(user="app:app")),
        ("VOLUME /a /b", VolumeInstruction(paths=("/a", "/b"))),
        ('VOLUME ["/a b"]', VolumeInstruction(paths=("/a b",))),
        ("STOPSIGNAL SIGKILL", StopsignalInstruction(signal="SIGKILL")),
        ("MAINTAINER Jane Doe <j@d>", MaintainerInstruction(maintainer="Jane Doe <j@d>")),
        ("HEALTHCHECK NONE", HealthcheckInstruction(test=("NONE",))),
        (
            "HEALTHCHECK --interval=1m30s --timeout=500ms --start-period=2s"
            " --start-interval=1s --retries=5 CMD curl -f x",
            HealthcheckInstruction(
                test=("CMD-SHELL", "curl -f x"),
                interval=90_000_000_000,
                timeout=500_000_000,
                start_period=2_000_000_000,
                start_interval=1_000_000_000,
                retries=5,
            ),
        ),
        ('healthcheck cmd ["true", "x"]', HealthcheckInstruction(test=("CMD", "true", "x"))),
        (
            "COPY --from=build --chown=1:2 --chmod=755 --link --exclude=*.md --exclude=x a b /d/",
            CopyInstruction(
                sources=("a", "b"),
                dest="/d/",
                from_="build",
                chown="1:2",
                chmod="755",
                link=True,
                excludes=("*.md", "x"),
            ),
        ),
        ("COPY --parents=false a /d", CopyInstruction(sources=("a",), dest="/d")),
        (
            "ADD --keep-git-dir --checksum=sha256:abc --unpack=false https://x/y.tgz /d",
            AddInstruction(
                sources=("https://x/y.tgz",),
                dest="/d",
                keep_git_dir=True,
                checksum="sha256:abc",
                unpack=False,
            ),
        ),
    ],
)
def test_typed_records(line: str, expected: Instruction) -> None:
    got = first(line)
    assert type(got) is type(expected)
    # location and text are checked elsewhere; compare the meaning
    assert {k: v for k, v in to_json(got).items() if k not in ("original", "line", "end_line")} == {
        k: v for k, v in to_json(expected).items() if k not in ("original", "line", "end_line")
    }


def test_location_and_original_text() -> None:
    instr = parse_dockerfile("FROM scratch\n\nRUN a \\\n  b\n").stages[0].instructions[0]
    assert (instr.original, instr.line, instr.end_line) == ("RUN a   b", 3, 4)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("FOO bar", "unknown instruction: FOO"),  # case 013
        ("RUNN x", "unknown instruction: RUNN"),
        ("CMD --help", "Unknown flag: help"),  # case 013
        ("COPY --form=x a b", "Unknown flag: form"),
        ("COPY --from=a --from=b a b", "Duplicate flag specified: from"),
        ("COPY --from a b", "Missing a value on flag: from"),
        ("COPY --link= a b", "Missing a value on flag: link"),
        ("COPY --link=yes a b", "Expecting boolean value for flag link, not: yes"),
        (
            "COPY onlyone",
            "COPY requires at least two arguments, but only one was provided."
            " Destination could not be determined.",
        ),
        (
            "ADD",
            "ADD requires at least two arguments, but only one was provided."
            " Destination could not be determined.",
        ),
        ("COPY a <<EOF\nx\nEOF", "COPY cannot accept a heredoc as a destination"),
        ("ENV", "ENV requires at least one argument"),
        ("ENV =x", "ENV names can not be blank"),
        ("LABEL =x", "LABEL names can not be blank"),
        ("ARG", "ARG requires at least one argument"),
        ("ARG =x", "ARG names can not be blank"),
        ("WORKDIR", "WORKDIR requires exactly one argument"),
        ("USER", "USER requires exactly one argument"),
        ("STOPSIGNAL", "STOPSIGNAL requires exactly one argument"),
        ("MAINTAINER", "MAINTAINER requires exactly one argument"),
        ("EXPOSE", "EXPOSE requires at least one argument"),
        ("VOLUME", "VOLUME requires at least one argument"),
        ('VOLUME ["/a", ""]', "VOLUME specified can not be an empty string"),
        ("SHELL /bin/sh -c", "SHELL requires the arguments to be in JSON form"),  # case 005
        ("SHELL []", "SHELL requires at least one argument"),
        ("ONBUILD", "ONBUILD requires at least one argument"),
        (
            "ONBUILD ONBUILD RUN true",
            "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
        ),  # case 011
        ("ONBUILD FROM x", "FROM isn't allowed as an ONBUILD trigger"),
        ("onbuild maintainer x", "MAINTAINER isn't allowed as an ONBUILD trigger"),
        ("HEALTHCHECK", "HEALTHCHECK requires at least one argument"),
        ("HEALTHCHECK NONE x", "HEALTHCHECK NONE takes no arguments"),
        ("HEALTHCHECK CMD", "Missing command after HEALTHCHECK CMD"),
        ("HEALTHCHECK WAIT x", 'Unknown type "WAIT" in HEALTHCHECK (try CMD)'),
        ("HEALTHCHECK --interval=1us CMD x", 'Interval "interval" cannot be less than 1ms'),
        ("HEALTHCHECK --timeout=5 CMD x", 'time: missing unit in duration "5"'),
        ("HEALTHCHECK --retries=-1 CMD x", "--retries cannot be negative (-1)"),
        ("HEALTHCHECK --bogus=1 CMD x", "Unknown flag: bogus"),
        ("RUN --network=bridge x", 'unsupported network mode "bridge"'),
        ("RUN --mount=type=nfs,target=/x x", 'unsupported mount type "nfs"'),
        ("RUN --mount=target=/x,flavour=y x", "unexpected key 'flavour' in 'flavour=y'"),
        ("CMD --chown=1 x", "Unknown flag: chown"),
    ],
)
def test_instruction_errors_use_dockers_words(line: str, message: str) -> None:
    assert error("FROM scratch\n" + line) == "Dockerfile:2: " + message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("FROM", "Dockerfile:1: FROM requires either one or three arguments"),
        ("FROM a b", "Dockerfile:1: FROM requires either one or three arguments"),
        ("FROM a as b c", "Dockerfile:1: FROM requires either one or three arguments"),
        (
            "FROM a AS 1st",
            'Dockerfile:1: invalid name for build stage: "1st",'
            " name can't start with a number or contain symbols",
        ),
        ("FROM --plat=x a", "Dockerfile:1: Unknown flag: plat"),
        ("RUN x\nFROM a", "Dockerfile:1: no build stage in current context"),
        ("ARG A\nENV B=1\nFROM a", "Dockerfile:2: no build stage in current context"),
        ("ARG A", "dockerfile contains no stages to build"),
        ("ARG BASE\nFROM $BASE", "Dockerfile:2: base name ($BASE) should not be blank"),
        ("FROM ${x", "Dockerfile:1: syntax error: missing '}'"),
        ("FROM a AS x\nFROM b AS X", "Dockerfile:2: x stage name already used"),
        ("", "file with no instructions"),
    ],
)
def test_file_level_errors(text: str, message: str) -> None:
    assert error(text) == message


def test_durations_follow_go() -> None:
    assert parse_duration("1h2m3.5s") == 3_723_500_000_000
    assert parse_duration("0") == 0
    assert parse_duration("1.5ms") == 1_500_000
    assert parse_duration("10us") == parse_duration("10\u00b5s") == 10_000
    for bad, message in [
        ("", 'time: invalid duration ""'),
        ("x", 'time: invalid duration "x"'),
        ("1x", 'time: unknown unit "x" in duration "1x"'),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_duration(bad)


def test_exposed_ports() -> None:
    assert exposed_ports(["80", "53/UDP", "8000-8002/tcp", "127.0.0.1:8080:90", "80/tcp"]) == (
        "80/tcp",
        "53/udp",
        "8000/tcp",
        "8001/tcp",
        "8002/tcp",
        "90/tcp",
    )
    with pytest.raises(DockerfileError, match="invalid proto: icmp"):
        exposed_ports(["1/icmp"])
    with pytest.raises(DockerfileError, match="Invalid containerPort: http"):
        exposed_ports(["http"])


# ---- RUN --mount ----------------------------------------------------------------------------


def test_mount_defaults() -> None:
    bind = parse_mount("target=/src,from=build,source=/out")
    assert (bind.type, bind.target, bind.from_, bind.source, bind.readonly) == (
        "bind",
        "/src",
        "build",
        "/out",
        True,
    )
    cache = parse_mount("type=cache,target=/root/.cache,mode=0700,uid=1000")
    assert (cache.id, cache.sharing, cache.readonly, cache.mode, cache.uid) == (
        "/root/.cache",
        "shared",
        False,
        0o700,
        1000,
    )
    secret = parse_mount("type=secret,id=tok,required")
    assert (secret.target, secret.required) == ("/run/secrets/tok", True)
    assert parse_mount("type=secret,target=/x/key").id == "key"
    assert parse_mount("type=ssh").id == "default"
    assert parse_mount("type=tmpfs,target=/t,size=64m").size == 64 * 1024 * 1024
    assert parse_mount("type=bind,target=/t,rw").readonly is False


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("type=bind,target=/x,mode=0700", 'mode not allowed for "bind" type mounts'),
        ("type=bind,target=/x,sharing=locked", "invalid cache sharing set for bind mount"),
        ("type=cache,target=/x,sharing=everyone", 'unsupported sharing value "everyone"'),
        ("type=secret", "invalid secret mount. one of source, target required"),
        ("type=bind,target=/x,required", "unexpected key 'required' for mount type 'bind'"),
        ("type=cache,target=/x,uid=me", "invalid value me for uid"),
    ],
)
def test_mount_errors(spec: str, message: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_mount(spec)
    assert str(err.value) == message


# ---- case 009: ENV uses the values from before the instruction; quotes are removed ----------


def test_case_009_env_pairs_and_legacy_form() -> None:
    df = parse_dockerfile(
        "FROM busybox:latest\n"
        "ENV abc=hello\n"
        "ENV abc=bye def=$abc\n"
        "ENV ghi=$abc\n"
        'ENV DQUOTE One "two two"  three\n'
        "ENV SQUOTE One 'two two' three\n"
        "ENV SBACKSLASH One two\\ two three\n"
        "ENV DBACKSLASH One two\\\\ two three\n"
        'ENV multi="a b" single=c\\ d empty=\n'
        'CMD ["env"]\n'
    )
    scope = StageScope.start(["PATH=/usr/bin"])
    for instr in df.stages[0].instructions:
        scope = scope.apply(expand(instr, scope.substitution_env()), df)
    assert scope.config_env()[1:] == [
        "abc=bye",
        "def=hello",
        "ghi=bye",
        "DQUOTE=One two two  three",
        "SQUOTE=One two two three",
        "SBACKSLASH=One two two three",
        "DBACKSLASH=One two\\ two three",
        "multi=a b",
        "single=c d",
        "empty=",
    ]


def test_case_009_missing_equals() -> None:
    assert error("FROM busybox:latest\nENV a=1 b\n") == (
        'Dockerfile:2: Syntax error - can\'t find = in "b". Must be of the form: name=value'
    )


def test_label_keys_and_values_are_expanded_against_the_old_values() -> None:
    label = expand(first('LABEL "$k"=$v v=new other="$v"'), {"k": "key", "v": "old"})
    assert isinstance(label, LabelInstruction)
    assert label.labels == (KeyValue("key", "old"), KeyValue("v", "new"), KeyValue("other", "old"))


# ---- case 007: ARG before FROM --------------------------------------------------------------

CASE_007 = (
    "ARG BASE=busybox:latest\n"
    "ARG FLAVOR=plain\n"
    "FROM ${BASE} AS one\n"
    'RUN echo "one: flavor=[$FLAVOR]"\n'
    "ARG FLAVOR\n"
    'RUN echo "one-after-redeclare: flavor=[$FLAVOR]"\n'
    "ARG LOCAL=x\n"
    "FROM ${BASE}\n"
    'RUN echo "two: flavor=[$FLAVOR] local=[$LOCAL]"\n'
)


def test_case_007_global_args_only_reach_from_lines_until_redeclared() -> None:
    df = parse_dockerfile(CASE_007)
    assert [s.base_image for s in df.stages] == ["busybox:latest", "busybox:latest"]
    assert [r.get("FLAVOR", "") for r in run_stage(df, 0)] == ["", "plain"]
    (two,) = run_stage(df, 1)
    assert (two.get("FLAVOR", ""), two.get("LOCAL", "")) == ("", "")
    assert df.unused_build_args == ()
    assert df.unused_build_args_warning is None


def test_case_007_build_args_override_and_unused_ones_are_reported() -> None:
    df = parse_dockerfile(CASE_007, {"FLAVOR": "spicy", "UNUSED": "1"})
    assert [r.get("FLAVOR", "") for r in run_stage(df, 0)] == ["", "spicy"]
    assert df.unused_build_args == ("UNUSED",)
    assert df.warnings[-1] == "[Warning] One or more build-args [UNUSED] were not consumed"


def test_global_arg_defaults_see_earlier_global_args_and_platform_is_expanded() -> None:
    df = parse_dockerfile(
        "ARG REG=example.com\nARG IMG=$REG/app\nFROM --platform=$BUILDPLATFORM ${IMG}:1 AS b\n",
        default_args={"BUILDPLATFORM": "linux/amd64"},
    )
    assert (df.stages[0].base_image, df.stages[0].platform) == ("example.com/app:1", "linux/amd64")
    assert df.stages[0].from_instruction.image == "${IMG}:1"


def test_env_wins_over_arg_and_arg_is_not_stored_in_the_config() -> None:
    df = parse_dockerfile(
        "FROM x\nARG V=arg\nENV V=env\nARG V=again\nRUN true\n", {"P": "1", "http_proxy": "p"}
    )
    assert run_stage(df, 0)[0]["V"] == "env"
    assert df.unused_build_args == ("P",)  # predefined proxy args are never reported


def test_arg_without_value_and_without_global_is_unset() -> None:
    df = parse_dockerfile("FROM x\nARG NOPE\nRUN x\n")
    assert "NOPE" not in run_stage(df, 0)[0]
    scope = StageScope.start().apply(df.stages[0].instructions[0], df)
    assert scope.args == (("NOPE", None),)


def test_stage_built_from_a_stage_inherits_its_args() -> None:
    df = parse_dockerfile("FROM x AS a\nARG A=1\nFROM a\nRUN x\n")
    parent = StageScope.start()
    for instr in df.stages[0].instructions:
        parent = parent.apply(expand(instr, parent.substitution_env()), df)
    child = StageScope.start(["E=1"], inherit=parent)
    assert child.substitution_env() == {"A": "1", "E": "1"}


# ---- expansion per instruction -------------------------------------------------------------


ENV = {"D": "/multi/", "U": "app", "P": "80 443/udp", "N": "name"}


@pytest.mark.parametrize(
    ("line", "field", "value"),
    [
        ("COPY a.txt b.txt $D", "dest", "/multi/"),  # case 015
        ("COPY --chown=$U:$U --chmod=${M:-644} --from=$N $D/a /x", "chown", "app:app"),
        ("COPY --chown=$U:$U --chmod=${M:-644} --from=$N $D/a /x", "chmod", "644"),
        ("COPY --chown=$U:$U --chmod=${M:-644} --from=$N $D/a /x", "from_", "name"),
        ("COPY --chown=$U:$U --chmod=${M:-644} --from=$N $D/a /x", "sources", ("/multi//a",)),
        ("ADD --checksum=$N ${D}x /y", "checksum", "name"),
        ("EXPOSE $P 22", "ports", ("80", "443/udp", "22")),
        ("WORKDIR $D/$NOPE/sub", "path", "/multi///sub"),
        ("USER $U", "user", "app"),
        ("STOPSIGNAL ${SIG:-SIGTERM}", "signal", "SIGTERM"),
        ("VOLUME $D \\$D", "paths", ("/multi/", "$D")),
        ("ARG X=$U Y", "args", (ArgDecl("X", "app"), ArgDecl("Y"))),
        ("RUN echo $U", "command", ("echo $U",)),
        ("CMD echo $U", "command", ("echo $U",)),
        ('ENTRYPOINT ["$U"]', "command", ("$U",)),
        ("ONBUILD COPY $U /x", "expression", "COPY $U /x"),
        ("HEALTHCHECK CMD echo $U", "test", ("CMD-SHELL", "echo $U")),
    ],
)
def test_expand_touches_only_what_docker_expands(line: str, field: str, value: object) -> None:
    assert getattr(expand(first(line), ENV), field) == value


def test_case_017_workdir_expansion_keeps_the_double_slash() -> None:
    df = parse_dockerfile("FROM busybox:latest\nENV DIRPATH=/path\nWORKDIR $DIRPATH/$NOPE/sub\n")
    scope = StageScope.start()
    env_instr, workdir = df.stages[0].instructions
    scope = scope.apply(expand(env_instr, scope.substitution_env()), df)
    expanded = expand(workdir, scope.substitution_env())
    assert isinstance(expanded, WorkdirInstruction)
    assert expanded.path == "/path//sub"


def test_case_019_add_url_from_a_build_arg() -> None:
    df = parse_dockerfile(
        "FROM busybox:latest\nARG URL\nADD ${URL}/arch.tar.gz /remote/\n",
        {"URL": "http://127.0.0.1:9"},
    )
    scope = StageScope.start()
    arg, add = df.stages[0].instructions
    scope = scope.apply(expand(arg, scope.substitution_env()), df)
    expanded = expand(add, scope.substitution_env())
    assert isinstance(expanded, AddInstruction)
    assert expanded.sources == ("http://127.0.0.1:9/arch.tar.gz",)


def test_run_mount_values_are_expanded() -> None:
    run = expand(first("RUN --mount=type=cache,target=$D,id=${N} make"), ENV)
    assert isinstance(run, RunInstruction)
    assert (run.mounts[0].target, run.mounts[0].id) == ("/multi/", "name")


def test_expansion_errors_carry_the_line() -> None:
    with pytest.raises(DockerfileError) as err:
        expand(first("WORKDIR ${NEED:?must be set}"), {})
    assert str(err.value) == "Dockerfile:2: NEED: must be set"


# ---- heredocs in typed form -----------------------------------------------------------------


def test_copy_heredoc_sources_expand_unless_quoted() -> None:
    copy = first("COPY <<A <<'B' /dest/\nhello $N \"q\"\nA\nraw $N\nB\n")
    assert isinstance(copy, CopyInstruction)
    assert copy.sources == ()
    assert copy.heredoc_sources == (
        HeredocSource("A", 'hello $N "q"\n', True),
        HeredocSource("B", "raw $N\n", False),
    )
    expanded = expand(copy, ENV)
    assert isinstance(expanded, CopyInstruction)
    assert [d.data for d in expanded.heredoc_sources] == ['hello name "q"\n', "raw $N\n"]


def test_copy_heredoc_chomp_is_applied_to_the_file_body() -> None:
    copy = first("COPY <<-EOF /f\n\tindented\n\tEOF\n")
    assert isinstance(copy, CopyInstruction)
    assert copy.heredoc_sources[0].data == "indented\n"


@pytest.mark.parametrize(
    ("text", "script"),
    [
        ("RUN <<EOF\necho a\necho b\nEOF\n", "echo a\necho b\n"),
        ("RUN <<-EOF\n\techo a\n\tEOF\n", "echo a\n"),
        ("RUN cat <<EOF > /f\nbody\nEOF\n", "cat <<EOF > /f\nbody\nEOF"),
        ("RUN <<A bash\necho 1\nA\n", "<<A bash\necho 1\nA"),
        ("RUN a <<X && b <<Y\nx\nX\ny\nY\n", "a <<X && b <<Y\nx\nX\ny\nY"),
        ("RUN echo plain", "echo plain"),
    ],
)
def test_run_shell_script_with_heredocs(text: str, script: str) -> None:
    run = first(text)
    assert isinstance(run, RunInstruction)
    assert run.shell_script() == script


# ---- ONBUILD (case 011) ---------------------------------------------------------------------


def test_case_011_onbuild_stores_the_trigger_text() -> None:
    df = parse_dockerfile(
        "FROM busybox:latest\nONBUILD COPY marker.txt /marker.txt\n"
        'ONBUILD RUN echo "trigger ran" >> /trigger.log\n'
    )
    triggers = df.stages[0].instructions
    assert all(isinstance(t, OnbuildInstruction) for t in triggers)
    assert [t.expression for t in triggers if isinstance(t, OnbuildInstruction)] == [
        "COPY marker.txt /marker.txt",
        'RUN echo "trigger ran" >> /trigger.log',
    ]
    copy = triggers[0].trigger if isinstance(triggers[0], OnbuildInstruction) else None
    assert isinstance(copy, CopyInstruction)
    assert copy.sources == ("marker.txt",)


def test_onbuild_with_a_bad_trigger_is_stored_and_fails_only_in_the_child() -> None:
    onbuild = first("ONBUILD FOO bar")
    assert isinstance(onbuild, OnbuildInstruction)
    assert onbuild.trigger is None
    with pytest.raises(DockerfileError, match="unknown instruction: FOO"):
        parse_instruction(onbuild.expression)


def test_parse_instruction_reads_a_trigger_back() -> None:
    run = parse_instruction('RUN echo "trigger ran" >> /trigger.log')
    assert isinstance(run, RunInstruction)
    assert run.command == ('echo "trigger ran" >> /trigger.log',)
    assert isinstance(parse_instruction("WORKDIR c:\\a `\n b", escape="`"), WorkdirInstruction)


# ---- stages, names, targets (cases 013, 017, 023) -------------------------------------------


def test_case_013_stage_names_are_lower_cased_and_found_case_insensitively() -> None:
    df = parse_dockerfile(
        'from busybox:latest AS Base\nRun echo lower-ok\ncMd ["echo", "mixed-ok"]\n'
    )
    stage = df.stage("BASE")
    assert (stage.name, stage.index) == ("base", 0)
    assert [type(i) for i in stage.instructions] == [RunInstruction, CmdInstruction]
    assert isinstance(stage.from_instruction, FromInstruction)


def test_case_017_sibling_stages_build_on_the_same_parent() -> None:
    df = parse_dockerfile(
        "FROM busybox:latest AS base\nWORKDIR /a\nWORKDIR b\nWORKDIR c\nRUN pwd\n"
        "FROM base AS c1\nWORKDIR c1\nRUN pwd\nFROM Base AS c2\nWORKDIR c2\nRUN pwd\n"
        "FROM busybox:latest\nENV DIRPATH=/path\nWORKDIR $DIRPATH/$NOPE/sub\n"
    )
    assert [(s.name, s.base_stage) for s in df.stages] == [
        ("base", None),
        ("c1", 0),
        ("c2", 0),
        (None, None),
    ]
    assert [s.index for s in df.stages_for_target("c2")] == [0, 2]
    assert [s.index for s in df.stages_for_target()] == [3]


def test_case_023_target_selection() -> None:
    df = parse_dockerfile(
        'FROM busybox:latest AS base\nCMD ["echo", "base-cmd"]\n\n'
        'FROM base AS override\nCMD ["hello", "world"]\nENTRYPOINT ["echo"]\n\n'
        'FROM base AS extended\nENTRYPOINT ["echo", "ep:"]\n\n'
        'FROM base AS shellform\nENTRYPOINT echo shell-ep\nCMD ["ignored"]\n'
    )
    assert [s.name for s in df.stages_for_target("extended")] == ["base", "extended"]
    entry = df.stage("shellform").instructions[0]
    assert isinstance(entry, EntrypointInstruction)
    assert (entry.command, entry.prepend_shell) == (("echo shell-ep",), True)


def test_dependencies_through_copy_from_and_mounts() -> None:
    df = parse_dockerfile(
        "ARG SRC=gen\n"
        "FROM alpine AS gen\n"
        "FROM alpine AS tools\n"
        "FROM alpine AS unused\n"
        "FROM scratch\n"
        "COPY --from=${SRC} /a /a\n"
        "COPY --from=1 /b /b\n"
        "COPY --from=nginx:latest /c /c\n"
        "RUN --mount=from=TOOLS,target=/t x\n"
    )
    assert df.stages[3].dependencies == (0, 1)
    assert [s.name for s in df.stages_for_target()] == ["gen", "tools", None]
    assert df.stage(2).name == "unused"
    assert df.stage("1").name == "tools"


def test_unknown_target() -> None:
    df = parse_dockerfile("FROM a AS x\n")
    with pytest.raises(DockerfileError) as err:
        df.stages_for_target("nope")
    assert str(err.value) == "failed to reach build target nope in Dockerfile"


def test_a_later_stage_with_an_image_name_is_not_a_stage_reference() -> None:
    df = parse_dockerfile("FROM alpine\nFROM alpine AS alpine2\n")
    assert df.stages[0].base_stage is None and df.stages[1].base_stage is None


def test_escape_directive_applies_to_expansion() -> None:
    df = parse_dockerfile("# escape=`\nFROM x\nWORKDIR c:\\`$notvar\n")
    workdir = expand(df.stages[0].instructions[0], {"notvar": "no"}, df.escape)
    assert isinstance(workdir, WorkdirInstruction)
    assert workdir.path == "c:\\$notvar"


def test_negative_healthcheck_interval() -> None:
    assert error("FROM x\nHEALTHCHECK --interval=-1s CMD x") == (
        'Dockerfile:2: Interval "interval" cannot be less than 1ms'
    )


def test_healthcheck_none_ignores_flags() -> None:
    assert first("HEALTHCHECK --interval=bogus NONE") == HealthcheckInstruction(
        test=("NONE",), original="HEALTHCHECK --interval=bogus NONE", line=2, end_line=2
    )


@pytest.mark.parametrize(
    ("name", "valid"),
    [("my-stage_1.x", True), ("Build", True), ("a:b", False), ("a@b", False), ("_a", False)],
)
def test_stage_name_rules(name: str, valid: bool) -> None:
    text = f"FROM scratch AS {name}\n"
    if valid:
        assert parse_dockerfile(text).stages[0].name == name.lower()
    else:
        assert "invalid name for build stage" in error(text)
