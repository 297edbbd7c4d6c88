"""ADD of a git repository, served by dumb HTTP from a loopback server."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("daemon")


def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid",
         "-c", "init.defaultBranch=main", *args],
        cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture()
def git_repo(file_server, tmp_path) -> str:  # type: ignore[no-untyped-def]
    """``http://127.0.0.1:<port>/repo.git``: tag v1 has a.txt=one, main has a.txt=two."""
    work = tmp_path / "work"
    work.mkdir()
    _git("init", "-q", cwd=work)
    (work / "a.txt").write_text("one\n")
    (work / "run.sh").write_text("#!/bin/sh\necho ran\n")
    (work / "run.sh").chmod(0o700)
    (work / "sub").mkdir()
    (work / "sub" / "inner.txt").write_text("inner\n")
    _git("add", "-A", cwd=work)
    _git("commit", "-q", "-m", "one", cwd=work)
    _git("tag", "v1", cwd=work)
    (work / "a.txt").write_text("two\n")
    _git("commit", "-q", "-am", "two", cwd=work)
    bare = file_server.directory / "repo.git"
    _git("clone", "-q", "--bare", str(work), str(bare), cwd=tmp_path)
    _git("update-server-info", cwd=bare)
    return f"http://127.0.0.1:{file_server.port}/repo.git"


def test_add_git_ref_subdir_and_keep_git_dir(builder, git_repo):
    dockerfile = (f"FROM busybox:latest\n"
                  f"ADD {git_repo}#v1 /src\n"
                  f"ADD {git_repo}#main:sub /sub/\n"
                  f"ADD --keep-git-dir=true {git_repo} /kept\n")
    tag, _ = builder.build_ok(dockerfile)
    out = builder.run(tag, "sh", "-c",
                      "cat /src/a.txt /sub/inner.txt /kept/a.txt; /src/run.sh; "
                      "stat -c '%a %n' /src/a.txt /src/run.sh /src/sub; "
                      "ls -a /src | grep -c '^.git$'; ls -d /kept/.git; ls /sub")
    assert out.splitlines() == ["one", "inner", "two", "ran", "644 /src/a.txt",
                                "755 /src/run.sh", "755 /src/sub", "0", "/kept/.git",
                                "inner.txt"]
    # the commit, not the clone's bytes, is the cache key: a rebuild is all cache hits
    ctx = builder.context(dockerfile, name="again")
    proc = builder.build(ctx)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().count("Using cache") == 3


def test_add_git_unknown_ref_and_checksum(builder, git_repo):
    ctx = builder.context(f"FROM busybox:latest\nADD {git_repo}#nope /src\n")
    proc = builder.build(ctx)
    assert proc.returncode == 1
    assert "failed to resolve git ref 'nope'" in proc.stderr.decode()
    ctx = builder.context(f"FROM busybox:latest\nADD --checksum=0000000 {git_repo}#v1 /src\n",
                          name="sum")
    proc = builder.build(ctx)
    assert proc.returncode == 1
    assert "expected checksum to match 0000000" in proc.stderr.decode()
