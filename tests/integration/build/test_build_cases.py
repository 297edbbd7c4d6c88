"""The shared build cases 001–023, built end to end; expected values from real Docker 20.10.

Each test names its case (``test_case_0NN_...``). Where the classic builder and BuildKit differ,
berth follows BuildKit (docs/compatibility.md): unused stages are skipped, so output of a stage
the last one does not need is checked with ``--target``; ``RUN`` under a ``VOLUME`` keeps its
writes (case 021); BuildKit-only flags are accepted (case 013).
"""

from __future__ import annotations

import io
import json
import tarfile

import pytest

pytestmark = pytest.mark.usefixtures("daemon")


def _lines(proc, *prefixes: str) -> list[str]:  # type: ignore[no-untyped-def]
    """Output lines (stdout) that start with one of ``prefixes``."""
    return [ln for ln in proc.stdout.decode().splitlines() if ln.startswith(prefixes)]


def _fails(builder, dockerfile: str, files: dict[str, str] | None = None) -> str:  # type: ignore[no-untyped-def]
    """Builds a Dockerfile that must fail; returns stderr."""
    proc = builder.build(builder.context(dockerfile, files), "--no-cache")
    assert proc.returncode == 1, proc.stdout.decode() + proc.stderr.decode()
    return str(proc.stderr.decode())


# ---- case 001: comment lines inside a continuation are dropped ------------------------------

CASE_001_RUN = "echo one > /out     && echo two >> /out     && echo three >> /out"


def test_case_001_comment_inside_continuation(builder):
    tag, out = builder.build_ok(
        "FROM busybox:latest\nRUN echo one > /out \\\n# a comment at column 0\n"
        "    && echo two >> /out \\\n        # an indented comment\n"
        '    && echo three >> /out\nCMD ["cat", "/out"]\n')
    steps = [ln for ln in out.splitlines() if ln.startswith("Step ")]
    assert steps == ["Step 1/3 : FROM busybox:latest", f"Step 2/3 : RUN {CASE_001_RUN}",
                     'Step 3/3 : CMD ["cat", "/out"]']
    assert "Empty continuation" not in out
    assert builder.run(tag) == "one\ntwo\nthree\n"
    history = builder.out("history", "--no-trunc", "--format", "{{.CreatedBy}}", tag)
    assert f"/bin/sh -c {CASE_001_RUN}" in history.splitlines()


# ---- case 003: a blank line inside a continuation is skipped, with a warning ----------------


def test_case_003_empty_continuation_line_warns(builder):
    proc = builder.build(builder.context("FROM busybox:latest\nRUN echo a \\\n\necho b\n"),
                         "--no-cache", tag=builder.tag())
    out = proc.stdout.decode()
    assert proc.returncode == 0, proc.stderr
    # dockerd sends it on the build's stderr stream, in red
    warning = ("\x1b[91m[WARNING]: Empty continuation line found in:\n    RUN echo a echo b\n"
               "[WARNING]: Empty continuation lines will become errors in a future release.\n"
               "\x1b[0m")
    before, after = out.split(warning)
    assert "Step" not in before  # printed before the first step
    assert [ln for ln in after.splitlines() if ln.startswith(("Step ", "a "))] == [
        "Step 1/2 : FROM busybox:latest", "Step 2/2 : RUN echo a echo b", "a echo b"]


# ---- case 005: exec form that is not JSON becomes shell form; SHELL has no fallback ---------


def test_case_005_invalid_json_falls_back_to_shell_form(builder):
    tag, out = builder.build_ok(
        'FROM busybox:latest\nRUN ["sh", "-c", "echo exec-ok"] this text is ignored\n'
        "CMD ['echo', 'hello']\n", None, "--no-cache")
    assert "exec-ok\n" in out
    cmd = builder.out("inspect", "-f", "{{json .Config.Cmd}}", tag).strip()
    assert cmd == '["/bin/sh","-c","[\'echo\', \'hello\']"]'
    proc = builder.daemon.cli("run", "--rm", tag)
    assert proc.returncode == 127
    assert b"/bin/sh: [echo,: not found" in proc.stderr
    err = _fails(builder, "FROM busybox:latest\nSHELL /bin/sh -c\n")
    assert err == ("Error response from daemon: dockerfile parse error line 2: "
                   "SHELL requires the arguments to be in JSON form\n")


# ---- case 007: ARGs before FROM reach only FROM lines until re-declared ---------------------

CASE_007 = (
    "ARG BASE=busybox:latest\nARG FLAVOR=plain\nFROM ${BASE} AS one\n"
    'RUN echo "one: flavor=[$FLAVOR]"\nARG FLAVOR\n'
    'RUN echo "one-after-redeclare: flavor=[$FLAVOR]"\nARG LOCAL=x\nFROM ${BASE}\n'
    'RUN echo "two: flavor=[$FLAVOR] local=[$LOCAL]"\n')


@pytest.mark.parametrize(("args", "flavor"), [((), "plain"),
                                              (("--build-arg", "FLAVOR=spicy",
                                                "--build-arg", "UNUSED=1"), "spicy")])
def test_case_007_arg_before_from_scope(builder, args, flavor):
    ctx = builder.context(CASE_007)
    # berth skips stage "one" when building the last stage (BuildKit): build it by name too
    one = builder.build(ctx, "--no-cache", "--target", "one", *args)
    last = builder.build(ctx, "--no-cache", *args)
    assert one.returncode == 0 and last.returncode == 0, one.stderr + last.stderr
    assert _lines(one, "one", "two") + _lines(last, "one", "two") == [
        "one: flavor=[]", f"one-after-redeclare: flavor=[{flavor}]", "two: flavor=[] local=[]"]
    warning = "[Warning] One or more build-args [UNUSED] were not consumed"
    assert (warning in last.stdout.decode()) is bool(args)


# ---- case 009: ENV pairs see the values from before the instruction; quotes removed ---------


def test_case_009_env_same_instruction_and_quotes(builder):
    tag, _ = builder.build_ok(
        "FROM busybox:latest\nENV abc=hello\nENV abc=bye def=$abc\nENV ghi=$abc\n"
        'ENV DQUOTE One "two two"  three\nENV SQUOTE One \'two two\' three\n'
        "ENV SBACKSLASH One two\\ two three\nENV DBACKSLASH One two\\\\ two three\n"
        'ENV multi="a b" single=c\\ d empty=\nCMD ["env"]\n')
    env = builder.out("inspect", "-f", "{{range .Config.Env}}{{println .}}{{end}}", tag)
    assert [ln for ln in env.splitlines() if ln and not ln.startswith("PATH=")] == [
        "abc=bye", "def=hello", "ghi=bye", "DQUOTE=One two two  three",
        "SQUOTE=One two two three", "SBACKSLASH=One two two three",
        "DBACKSLASH=One two\\ two three", "multi=a b", "single=c d", "empty="]


@pytest.mark.parametrize(("line", "message"), [
    ("ENV a=1 b", 'Syntax error - can\'t find = in "b". Must be of the form: name=value'),
    ("ENV ONLYKEY", "ENV must have two arguments"),
])
def test_case_009_env_errors(builder, line, message):
    err = _fails(builder, f"FROM busybox:latest\n{line}\n")
    assert err == f"Error response from daemon: failed to parse Dockerfile: {message}\n"


# ---- case 011: ONBUILD triggers run after the child's FROM, once ----------------------------


def test_case_011_onbuild_triggers(builder):
    parent = builder.tag()
    proc = builder.build(builder.context(
        "FROM busybox:latest\nONBUILD COPY marker.txt /marker.txt\n"
        'ONBUILD RUN echo "trigger ran" >> /trigger.log\n', name="parent"), "-q", tag=parent)
    assert proc.returncode == 0, proc.stderr
    assert builder.out("inspect", "-f", "{{json .Config.OnBuild}}", parent).strip() == (
        '["COPY marker.txt /marker.txt","RUN echo \\"trigger ran\\" >> /trigger.log"]')

    child = builder.tag()
    proc = builder.build(builder.context(f"FROM {parent}\nRUN cat /marker.txt /trigger.log\n",
                                         {"marker.txt": "child-context\n"}, name="child"),
                         "--no-cache", tag=child)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.decode()
    assert out.count("# Executing 2 build triggers\n") == 1
    assert out.index("# Executing 2 build triggers") < out.index("Step 2/2")
    assert "child-context\ntrigger ran\n" in out
    assert builder.out("inspect", "-f", "{{json .Config.OnBuild}}", child).strip() in (
        "null", "[]")

    proc = builder.build(builder.context(f"FROM {child}\nRUN cat /trigger.log\n",
                                         name="grand"), "--no-cache")
    assert proc.returncode == 0, proc.stderr
    assert "Executing" not in proc.stdout.decode()
    assert proc.stdout.decode().count("trigger ran") == 1

    multi = builder.context(f"FROM {parent} AS s1\nFROM {parent} AS s2\nRUN cat /trigger.log\n",
                            {"marker.txt": "m\n"}, name="multi")
    for target in ("s1", "s2"):  # both stages run the triggers (berth skips s1 unless named)
        proc = builder.build(multi, "--no-cache", "--target", target)
        assert proc.returncode == 0, proc.stderr
        assert "# Executing 2 build triggers" in proc.stdout.decode()
    assert proc.stdout.decode().count("trigger ran") == 1


@pytest.mark.parametrize(("line", "message"), [
    ("ONBUILD ONBUILD RUN true", "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"),
    ("ONBUILD FROM x", "FROM isn't allowed as an ONBUILD trigger"),
    ("ONBUILD MAINTAINER x", "MAINTAINER isn't allowed as an ONBUILD trigger"),
])
def test_case_011_forbidden_triggers(builder, line, message):
    err = _fails(builder, f"FROM busybox:latest\n{line}\n")
    assert err == f"Error response from daemon: dockerfile parse error line 2: {message}\n"


# ---- case 013: keywords in any case; leading --words are flags of every instruction ---------


def test_case_013_instruction_case_and_flags(builder):
    tag, _ = builder.build_ok('from busybox:latest AS Base\nRun echo lower-ok\n'
                              'cMd ["echo", "mixed-ok"]\n')
    assert builder.run(tag) == "mixed-ok\n"
    tag, _ = builder.build_ok("FROM busybox:latest\nCMD -- --help\n")
    assert builder.out("inspect", "-f", "{{json .Config.Cmd}}", tag).strip() == (
        '["/bin/sh","-c","--help"]')


@pytest.mark.parametrize(("line", "message"), [
    ("CMD --help", "Unknown flag: help"),
    ("FOO bar", "unknown instruction: FOO"),
])
def test_case_013_parse_errors(builder, line, message):
    err = _fails(builder, f"FROM busybox:latest\n{line}\n")
    assert err == f"Error response from daemon: dockerfile parse error line 2: {message}\n"


def test_case_013_buildkit_flags_are_accepted(builder):
    # The 20.10 classic builder answers "the --chmod option requires BuildKit"; berth follows
    # BuildKit here (docs/compatibility.md) and applies the mode.
    tag, _ = builder.build_ok("FROM busybox:latest\nCOPY --chmod=755 a /a\n", {"a": ""})
    assert builder.run(tag, "stat", "-c", "%a", "/a") == "755\n"


# ---- cases 015-023 --------------------------------------------------------------------------

MULTI = ("When using COPY with more than one source file, the destination must be a directory "
         "and end with a /")


@pytest.mark.parametrize(("body", "expected", "ok"), [
    ("COPY a.txt b.txt /multi", MULTI, False),
    ("COPY *.txt /multi", MULTI, False),
    ("COPY *.log /single\nRUN cat /single", "L\n", True),
    ("COPY *.nomatch /x/", "COPY failed: no source files were specified", False),
    ("COPY missing.txt /x", "COPY failed: file not found in build context or excluded by "
     ".dockerignore: stat missing.txt: file does not exist", False),
    ("ENV D=/multi/\nCOPY a.txt b.txt $D\nRUN ls /multi", "a.txt\nb.txt\n", True),
])
def test_case_015_copy_several_sources_and_wildcards(builder, body, expected, ok):
    ctx = builder.context(f"FROM busybox:latest\n{body}\n",
                          {"a.txt": "a\n", "b.txt": "b\n", "only.log": "L\n"})
    proc = builder.build(ctx, "--no-cache")
    out, err = proc.stdout.decode(), proc.stderr.decode()
    if ok:
        assert proc.returncode == 0, err
        assert expected in out
    else:
        assert proc.returncode == 1
        assert expected in err


def test_case_017_workdir_chain_expansion_and_sibling_stages(builder):
    dockerfile = (
        "FROM busybox:latest AS base\nWORKDIR /a\nWORKDIR b\nWORKDIR c\nRUN pwd\n"
        "FROM base AS c1\nWORKDIR c1\nRUN pwd\n"
        "FROM base AS c2\nWORKDIR c2\nRUN pwd\n"
        "FROM busybox:latest\nENV DIRPATH=/path\nWORKDIR $DIRPATH/$NOPE/sub\n"
        "RUN pwd && ls -ld /path/sub | awk '{print $1, $3}'\n")
    ctx = builder.context(dockerfile)
    # every stage: the classic builder builds them all, so does a build that names each one
    outputs = []
    for target in ("base", "c1", "c2"):
        proc = builder.build(ctx, "--no-cache", "--target", target)
        assert proc.returncode == 0, proc.stderr
        outputs.append(proc.stdout.decode())
    tag = builder.tag()
    proc = builder.build(ctx, "--no-cache", tag=tag)
    assert proc.returncode == 0, proc.stderr
    lines = [ln for out in (*outputs, proc.stdout.decode()) for ln in out.splitlines()
             if ln.startswith(("/", "d"))]
    assert lines == ["/a/b/c", "/a/b/c", "/a/b/c/c1", "/a/b/c", "/a/b/c/c2", "/path/sub",
                     "drwxr-xr-x root"]
    assert builder.out("inspect", "-f", "{{.Config.WorkingDir}}", tag) == "/path//sub\n"
    assert builder.run("-w", "/made/at/runtime", tag, "pwd") == "/made/at/runtime\n"


def test_case_019_add_extracts_local_archives_only(builder, file_server):
    src = io.BytesIO()
    with tarfile.open(fileobj=src, mode="w:gz") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"hi\n"))
    archive = src.getvalue()
    (file_server.directory / "arch.tar.gz").write_bytes(archive)
    ctx = builder.context(
        "FROM busybox:latest\nARG URL\nADD arch.tar.gz /local/\nCOPY arch.tar.gz /copied/\n"
        "ADD fake.tar.gz /fake/\nADD ${URL}/arch.tar.gz /remote/\n"
        "RUN find /local /copied /fake /remote -type f | sort && "
        "stat -c '%a %n' /remote/arch.tar.gz\n",
        {"arch.tar.gz": archive, "fake.tar.gz": "not an archive\n"})
    proc = builder.build(ctx, "--no-cache", "--build-arg",
                         f"URL=http://127.0.0.1:{file_server.port}")
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stdout.decode().splitlines()
             if ln.startswith("/") or ln[:3].isdigit()]
    assert lines == ["/copied/arch.tar.gz", "/fake/fake.tar.gz", "/local/hello.txt",
                     "/remote/arch.tar.gz", "600 /remote/arch.tar.gz"]


def test_case_019_url_without_file_name(builder, file_server):
    ctx = builder.context(f"FROM busybox:latest\nADD http://127.0.0.1:{file_server.port}/ /d/\n")
    proc = builder.build(ctx, "--no-cache")
    assert proc.returncode == 1
    assert (f"cannot determine filename for source http://127.0.0.1:{file_server.port}/"
            in proc.stderr.decode())


def test_case_021_run_writes_under_a_volume_persist_as_in_buildkit(builder):
    """Case 021: files made before VOLUME and COPY/ADD after it are in the image. The classic
    builder also throws away what RUN writes under the volume (/data/after-run); the case notes
    BuildKit keeps it, and berth follows BuildKit (docs/compatibility.md)."""
    tag, out = builder.build_ok(
        "FROM busybox:latest\nRUN mkdir /data && echo before > /data/before\nVOLUME /data\n"
        "RUN echo after-run > /data/after-run\nCOPY c.txt /data/after-copy\nRUN ls /data\n"
        'CMD ["ls", "/data"]\n', {"c.txt": "c\n"}, "--no-cache")
    step6 = out.split("Step 6/7")[1].split("Step 7/7")[0]
    assert [ln for ln in step6.splitlines() if ln.startswith(("after", "before"))] == [
        "after-copy", "after-run", "before"]
    assert builder.run(tag).split() == ["after-copy", "after-run", "before"]
    config = json.loads(builder.out("inspect", "-f", "{{json .Config.Volumes}}", tag))
    assert config == {"/data": {}}


def test_case_023_entrypoint_resets_inherited_cmd(builder):
    ctx = builder.context(
        'FROM busybox:latest AS base\nCMD ["echo", "base-cmd"]\n'
        'FROM base AS override\nCMD ["hello", "world"]\nENTRYPOINT ["echo"]\n'
        'FROM base AS extended\nENTRYPOINT ["echo", "ep:"]\n'
        'FROM base AS shellform\nENTRYPOINT echo shell-ep\nCMD ["ignored"]\n')
    tags = {}
    for target in ("base", "override", "extended", "shellform"):
        tags[target] = builder.tag()
        proc = builder.build(ctx, "-q", "--target", target, tag=tags[target])
        assert proc.returncode == 0, proc.stderr

    def cmd(target: str) -> str:
        return builder.out("inspect", "-f", "{{json .Config.Cmd}}", tags[target]).strip()

    assert cmd("base") == '["echo","base-cmd"]'
    assert builder.run(tags["base"]) == "base-cmd\n"
    assert cmd("override") == '["hello","world"]'
    assert builder.run(tags["override"]) == "hello world\n"
    assert cmd("extended") == "null"
    assert builder.run(tags["extended"]) == "ep:\n"
    assert cmd("shellform") == '["ignored"]'
    assert builder.run(tags["shellform"]) == "shell-ep\n"
    assert builder.run(tags["extended"], "a", "b") == "ep: a b\n"
    assert builder.run(tags["shellform"], "a", "b") == "shell-ep\n"
    assert builder.run("--entrypoint", "echo", tags["base"]) == "\n"
