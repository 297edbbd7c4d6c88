"""``ADD <git repository> <dest>``: clone, check out the ref, hand back a directory to copy.

Sources: ``git@host:org/repo.git``, ``ssh://``, ``git://`` and ``http(s)://.../x.git``, each
with an optional fragment ``#<ref>[:<subdir>]`` (a branch, tag or commit; default the remote's
HEAD). The ``git`` program does the transport (any of its protocols, with the daemon's
credentials, never prompting). The checkout's ``.git`` is removed unless ``--keep-git-dir``;
files get 0644 (0755 when executable) and directories 0755, as BuildKit writes them. The
step's cache key is the commit ID (plus subdir and ``--keep-git-dir``), not the bytes.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import shutil
import stat
import subprocess
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from berth.build.filecopy import resolve_in_root
from berth.errors import InvalidArgument

__all__ = ["GitSource", "is_git_source", "parse_git_source", "fetch_git"]

_GIT_TIMEOUT = 300


@dataclass(frozen=True)
class GitSource:
    url: str
    ref: str  # "" = the remote's HEAD
    subdir: str  # "" = the repository root


@dataclass(frozen=True)
class FetchedGit:
    path: Path  # the directory whose contents ADD copies
    digest: str  # "git:<commit>[:<subdir>]"


def is_git_source(source: str) -> bool:
    if source.startswith(("git@", "git://", "ssh://")):
        return True
    if source.startswith(("http://", "https://")):
        return urllib.parse.urlsplit(source).path.endswith(".git")
    return False


def parse_git_source(source: str) -> GitSource:
    url, _, fragment = source.partition("#")
    ref, _, subdir = fragment.partition(":")
    subdir = posixpath.normpath("/" + subdir).lstrip("/") if subdir else ""
    return GitSource(url, ref, subdir)


def _git(*args: str, cwd: Path | None = None) -> str:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "/bin/true",
           "GIT_SSH_COMMAND": os.environ.get("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")}
    try:
        proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=_GIT_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise InvalidArgument(f"failed to run git: {err}") from err
    if proc.returncode != 0:
        raise InvalidArgument(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip()
                              else f"git {args[0]} failed with exit code {proc.returncode}")
    return proc.stdout.strip()


def fetch_git(source: str, scratch: Path, *, keep_git_dir: bool,
              checksum: str | None = None) -> FetchedGit:
    """Clone ``source`` into ``scratch`` (blocking: run it in a worker thread)."""
    git = parse_git_source(source)
    work = scratch / ("git-" + hashlib.sha256(source.encode()).hexdigest()[:16])
    if work.exists():
        shutil.rmtree(work)
    repo = work / "repo"
    try:
        _git("clone", "-q", "--no-checkout", "--", git.url, str(repo))
    except InvalidArgument as err:
        raise InvalidArgument(f"failed to clone {git.url}: {err}") from err
    commit = _resolve(repo, git.ref)
    if checksum and not commit.startswith(checksum.lower()):
        raise InvalidArgument(f"expected checksum to match {checksum}, got {commit}")
    _git("-c", "advice.detachedHead=false", "checkout", "-q", "--detach", commit, cwd=repo)
    if not keep_git_dir:
        shutil.rmtree(repo / ".git")
    _normalize_modes(repo)
    path = repo
    if git.subdir:
        path = resolve_in_root(repo, git.subdir)
        if not path.is_dir():
            raise InvalidArgument(f"subdirectory {git.subdir} not found in {git.url}#{commit}")
    digest = f"git:{commit}" + (f":{git.subdir}" if git.subdir else "")
    return FetchedGit(path, digest + (":keep-git-dir" if keep_git_dir else ""))


def _resolve(repo: Path, ref: str) -> str:
    if not ref:
        return _git("rev-parse", "--verify", "HEAD^{commit}", cwd=repo)
    for candidate in (f"refs/tags/{ref}", f"refs/remotes/origin/{ref}", ref):
        try:
            return _git("rev-parse", "--verify", "--end-of-options", candidate + "^{commit}",
                        cwd=repo)
        except InvalidArgument:
            continue
    raise InvalidArgument(f"failed to resolve git ref {ref!r}: no branch, tag or commit "
                          "of that name")


def _normalize_modes(root: Path) -> None:
    for dirpath, _dirs, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode):
                os.chmod(path, 0o755 if st.st_mode & 0o100 else 0o644)
