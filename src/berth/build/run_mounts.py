"""``RUN --mount``: turning the parsed mounts of a RUN into host paths and a cache-key part.

The executor resolves what only it knows (the build context, other stages, images, the
working directory); the backend creates cache directories and performs the mounts. Types:

- ``bind``: the context (default) or the filesystem of ``from=`` (a stage or an image),
  ``source`` inside it, read-only unless ``rw`` (then writes go to a throw-away copy).
  The sources' content is part of the step's cache key, as in BuildKit.
- ``cache``: a directory kept by the daemon between builds (``id``, default the target);
  its content is never part of the layer nor of the cache key.
- ``tmpfs``: an empty tmpfs.
- ``secret``/``ssh``: refused (berth has no secret or agent forwarding in builds).
"""

from __future__ import annotations

import asyncio
import hashlib
import posixpath
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from berth.build.filecopy import SourceFile, resolve_in_root, sources_digest
from berth.build.instructions import Mount
from berth.errors import InvalidArgument, NotImplementedByBerth

__all__ = ["RunMount", "resolve_mounts", "check_supported"]

RootFor = Callable[[str], Awaitable[tuple[Path, str]]]
"""``from=`` reference → (its mounted filesystem, an ID naming its content for the cache)."""


@dataclass(frozen=True)
class RunMount:
    """A mount of one RUN step, ready for the backend."""

    kind: str  # bind | cache | tmpfs
    target: str  # absolute path in the container
    source: Path | None = None  # bind: the host path
    readonly: bool = True
    cache_id: str = ""
    sharing: str = "shared"
    mode: int = 0o755
    uid: int = 0
    gid: int = 0
    size: int = 0


def check_supported(mounts: tuple[Mount, ...], line: int) -> None:
    """Refuse the mount types berth cannot honour, before anything runs."""
    for m in mounts:
        if m.type in ("secret", "ssh"):
            raise NotImplementedByBerth(
                f"Dockerfile:{line}: RUN --mount=type={m.type} is not supported by berth's "
                "builder")
        if m.type == "cache" and m.from_:
            raise NotImplementedByBerth(
                f"Dockerfile:{line}: RUN --mount=type=cache,from= is not supported by berth's "
                "builder")
        if not m.target:
            raise InvalidArgument(f"Dockerfile:{line}: mount {m.spec!r}: target is required")


def _target(target: str, workdir: str) -> str:
    return posixpath.normpath(posixpath.join(workdir or "/", target))


async def resolve_mounts(mounts: tuple[Mount, ...], *, workdir: str, context_root: Path | None,
                         root_for: RootFor, scratch: Path) -> tuple[tuple[RunMount, ...], str]:
    """The backend's view of ``mounts`` and the text they add to the step's cache key."""
    out: list[RunMount] = []
    key: list[str] = []
    for m in mounts:
        target = _target(m.target or "", workdir)
        if m.type == "tmpfs":
            out.append(RunMount("tmpfs", target, readonly=False, size=m.size or 0))
            key.append(f"tmpfs:{target}:{m.size or 0}")
        elif m.type == "cache":
            cache_id = m.id or target
            mount = RunMount("cache", target, readonly=m.readonly, cache_id=cache_id,
                             sharing=m.sharing or "shared",
                             mode=m.mode if m.mode is not None else 0o755,
                             uid=m.uid or 0, gid=m.gid or 0)
            out.append(mount)
            key.append(f"cache:{target}:{cache_id}:{mount.readonly}")
        else:
            out.append(await _bind(m, target, context_root, root_for, scratch, key))
    return tuple(out), "\n".join(key)


async def _bind(m: Mount, target: str, context_root: Path | None, root_for: RootFor,
                scratch: Path, key: list[str]) -> RunMount:
    rel = m.source or "/"
    if m.from_:
        root, content_id = await root_for(m.from_)
    else:
        if context_root is None:
            context_root = scratch / "empty-context"
            context_root.mkdir(exist_ok=True)
        root, content_id = context_root, ""
    source = resolve_in_root(root, rel)
    if not source.exists():
        raise InvalidArgument(f"failed to compute cache key: mount source {rel!r} not found")
    if not content_id:  # the context: what is mounted decides the key
        entry = SourceFile(rel, source, source.is_dir())
        content_id = await asyncio.to_thread(sources_digest, [entry])
    key.append(f"bind:{target}:{m.from_ or ''}:{rel}:{content_id}:{m.readonly}")
    if not m.readonly and not m.from_:
        # writes must not reach the context (a later COPY reads it): a throw-away copy
        copy = scratch / ("rw-" + hashlib.sha256(f"{target}{rel}".encode()).hexdigest()[:16])
        await asyncio.to_thread(_copy_any, source, copy)
        source = copy
    return RunMount("bind", target, source=source, readonly=m.readonly)


def _copy_any(source: Path, dest: Path) -> None:
    if dest.exists():
        shutil.rmtree(dest, ignore_errors=True)
    if source.is_dir():
        shutil.copytree(source, dest, symlinks=True)
    else:
        shutil.copy2(source, dest)
