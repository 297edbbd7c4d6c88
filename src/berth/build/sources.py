"""Planning a COPY/ADD: find or fetch the sources, name them for the cache, then apply them.

``plan_copy`` does the part that must happen before the cache lookup (resolving globs,
downloading ``ADD http(s)://`` sources, hashing); ``CopyPlan.apply`` writes into the mounted
rootfs of the step, resolving ``--chown`` names in that rootfs's ``/etc/passwd``/``group``.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import posixpath
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from berth.build.filecopy import (
    Owner,
    SourceFile,
    copy_sources,
    extract_archive,
    find_sources,
    is_archive,
    parse_chmod,
    sources_digest,
    write_file,
)
from berth.build.git_source import fetch_git, is_git_source
from berth.build.instructions import AddInstruction, CopyInstruction
from berth.errors import InvalidArgument
from berth.runtime.users import resolve_user

__all__ = ["CopyPlan", "plan_copy", "resolve_chown"]

_DOWNLOAD_TIMEOUT = 120


@dataclass(frozen=True)
class _Fetched:
    """A downloaded URL or a heredoc body, stored as a file in the build's scratch dir."""

    name: str
    path: Path
    mode: int
    mtime: float


@dataclass(frozen=True)
class CopyPlan:
    keyword: str
    dest: str  # absolute, trailing "/" kept
    local: tuple[SourceFile, ...]
    fetched: tuple[_Fetched, ...]
    digest: str
    chown: str | None
    chmod: int | None
    extract: bool
    many: bool

    def apply(self, rootfs: Path) -> None:
        owner = resolve_chown(rootfs, self.chown) if self.chown else None
        as_dir = self.dest.endswith("/") or self.many
        for src in self.local:
            if self.extract and not src.is_dir and is_archive(src.path):
                extract_archive(rootfs, src.path, self.dest, owner)
            else:
                copy_sources(rootfs, [src], self.dest, owner=owner or Owner(),
                             chmod=self.chmod, as_dir=as_dir)
        for item in self.fetched:
            with open(item.path, "rb") as data:
                write_file(rootfs, self.dest, item.name, data,
                           mode=self.chmod if self.chmod is not None else item.mode,
                           mtime=item.mtime, owner=owner or Owner(), as_dir=as_dir)


def resolve_chown(rootfs: Path, spec: str) -> Owner:
    """``--chown=user[:group]`` with names looked up in the rootfs being built."""
    user, sep, group = spec.partition(":")
    if not sep and user.isdigit():
        return Owner(int(user), int(user))
    try:
        resolved = resolve_user(str(rootfs), spec)
    except InvalidArgument:
        raise
    except Exception as err:  # FailedPrecondition: name not in passwd/group
        raise InvalidArgument(
            f"unable to convert uid/gid chown string to host mapping: {err}") from err
    del group
    return Owner(resolved.uid, resolved.gid)


def _is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def _is_git(source: str) -> bool:
    return is_git_source(source)


async def plan_copy(instr: CopyInstruction | AddInstruction, source_root: Path | None,
                    workdir: str, scratch: Path, *, from_context: bool) -> CopyPlan:
    """Resolve the sources of one (expanded) COPY/ADD; raises Docker's errors."""
    kw = instr.keyword
    dest = instr.dest
    if not dest.startswith("/"):
        trailing = dest.endswith("/") or dest in (".", "")
        dest = posixpath.join(workdir or "/", dest)
        dest = posixpath.normpath(dest) + ("/" if trailing and dest != "/" else "")
    local_patterns: list[str] = []
    urls: list[str] = []
    repos: list[str] = []
    for src in instr.sources:
        if isinstance(instr, AddInstruction) and _is_git(src):
            repos.append(src)
        elif isinstance(instr, AddInstruction) and _is_url(src):
            urls.append(src)
        else:
            local_patterns.append(src)
    checksum = instr.checksum if isinstance(instr, AddInstruction) else None
    if checksum and (local_patterns or len(urls) + len(repos) != 1):
        raise InvalidArgument("checksum can't be specified for multiple sources or non-HTTP(S)"
                              " sources")
    local: list[SourceFile] = []
    if local_patterns:
        if source_root is None:
            raise InvalidArgument(
                f"{kw} failed: file not found in build context or excluded by .dockerignore: "
                f"stat {local_patterns[0]}: file does not exist")
        local = await asyncio.to_thread(find_sources, source_root, local_patterns, cmd=kw,
                                        from_context=from_context)
    fetched = [await asyncio.to_thread(_download, url, dest, scratch) for url in urls]
    if checksum and urls:
        _check_sha256(checksum, fetched[0].path)
    git_parts: list[str] = []
    for repo in repos:
        keep = bool(isinstance(instr, AddInstruction) and instr.keep_git_dir)
        got = await asyncio.to_thread(fetch_git, repo, scratch, keep_git_dir=keep,
                                      checksum=checksum)
        local.append(SourceFile(posixpath.basename(repo), got.path, True))
        git_parts.append(got.digest)
    for doc in instr.heredoc_sources:
        path = scratch / f"heredoc-{hashlib.sha256(doc.name.encode()).hexdigest()[:16]}"
        path.write_text(doc.data)
        fetched.append(_Fetched(doc.name, path, 0o644, time.time()))
    count = len(local) + len(fetched)
    if count > 1 and not dest.endswith("/"):
        raise InvalidArgument(f"When using {kw} with more than one source file, the "
                              "destination must be a directory and end with a /")
    parts = []
    plain = local[:len(local) - len(repos)]
    if plain:
        parts.append(await asyncio.to_thread(sources_digest, plain))
    parts += git_parts
    for i, item in enumerate(fetched):
        # Docker prefixes `file:` to context files only, not to downloaded URLs
        prefix = "" if i < len(urls) else "file:"
        parts.append(prefix + await asyncio.to_thread(_file_digest, item.path))
    digest = parts[0] if len(parts) == 1 else "multi:" + hashlib.sha256(
        ",".join(parts).encode()).hexdigest()
    return CopyPlan(
        keyword=kw, dest=dest, local=tuple(local), fetched=tuple(fetched), digest=digest,
        chown=instr.chown or None, chmod=parse_chmod(instr.chmod),
        extract=isinstance(instr, AddInstruction) and instr.unpack is not False,
        many=count > 1)


def _check_sha256(checksum: str, path: Path) -> None:
    algo, _, want = checksum.partition(":")
    if algo != "sha256" or not want:
        raise InvalidArgument(f"unsupported digest algorithm {checksum!r}: only sha256 is")
    got = _file_digest(path)
    if got != want.lower():
        raise InvalidArgument(f"digest mismatch sha256:{got}: sha256:{want}")


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _download(url: str, dest: str, scratch: Path) -> _Fetched:
    name = posixpath.basename(urllib.parse.urlsplit(url).path)
    if dest.endswith("/") and not name:
        raise InvalidArgument(f"cannot determine filename for source {url}")
    target = scratch / f"download-{hashlib.sha256(url.encode()).hexdigest()[:16]}"
    try:
        with urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT) as resp:  # noqa: S310
            with open(target, "wb") as out:
                while chunk := resp.read(1 << 20):
                    out.write(chunk)
            modified = resp.headers.get("Last-Modified")
    except urllib.error.HTTPError as err:
        raise InvalidArgument(f"failed to GET {url} with status {err.code} {err.reason}") from err
    except (urllib.error.URLError, OSError) as err:
        raise InvalidArgument(f"failed to GET {url}: {err}") from err
    mtime = time.time()
    if modified:
        try:
            mtime = email.utils.parsedate_to_datetime(modified).timestamp()
        except (TypeError, ValueError):
            pass
    return _Fetched(name or "download", target, 0o600, mtime)
