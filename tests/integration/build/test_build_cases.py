"""The shared build cases (/work/shared/cases/0{15,17,19,21,23}-*.md), expected values from them."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

pytestmark = pytest.mark.usefixtures("daemon")

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
def test_015_copy_several_sources_and_wildcards(builder, body, expected, ok):
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


def test_017_workdir_chain_expansion_and_sibling_stages(builder):
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


def test_019_add_extracts_local_archives_only(builder, file_server):
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


def test_019_url_without_file_name(builder, file_server):
    ctx = builder.context(f"FROM busybox:latest\nADD http://127.0.0.1:{file_server.port}/ /d/\n")
    proc = builder.build(ctx, "--no-cache")
    assert proc.returncode == 1
    assert (f"cannot determine filename for source http://127.0.0.1:{file_server.port}/"
            in proc.stderr.decode())


def test_021_run_writes_under_a_volume_persist_as_in_buildkit(builder):
    # berth follows BuildKit here (docs/compatibility.md): the classic builder would lose
    # /data/after-run; BuildKit, and berth, keep it.
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


def test_023_entrypoint_resets_inherited_cmd(builder):
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
