"""Unpacked read-only layers, one per chain ID, shared by every image that has them.

On disk (``<data-root>/layers``)::

    <chain-hex>/diff        the layer's own content, overlay format (whiteouts are 0:0 devices)
    <chain-hex>/layer.json  {"chain_id", "parent", "diff_id", "size"}
    .tmp-<pid>-<random>/    an unpack in progress, or prepared and waiting for its parent;
                            renamed to <chain-hex> when complete

A layer directory appears by one rename of a complete temp directory, so a reader never sees a
half-unpacked layer. An unpack (``prepare``) needs nothing of the layers below it, so a pull
unpacks layers as they arrive and publishes them (``commit``) bottom first. Two applies of the
same chain ID may race: both unpack, the first rename wins and the loser discards its copy.

A store with an ``IdentityMapping`` (a ``--userns-remap`` daemon's) unpacks every owner shifted
to the host; chain IDs stay those of the tars, so image IDs do not change.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import logging
import os
import secrets
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

from berth.errors import DigestMismatch, Internal, InvalidArgument, NotFound, UnsafeArchive
from berth.oci.digest import ChainID, DiffID, digest_hex, parse_digest, sha256_digest
from berth.oci.idmap import IdentityMapping
from berth.snapshot.archive import apply_tar

log = logging.getLogger(__name__)

_META = "layer.json"
_TMP_PREFIX = ".tmp-"
_TRASH_PREFIX = ".trash-"
_READ_CHUNK = 1 << 20


@dataclass(frozen=True)
class PreparedLayer:
    """A layer unpacked into a temp directory of the store, not yet published."""

    diff_id: DiffID
    path: Path
    size: int


@dataclass(frozen=True)
class LayerInfo:
    chain_id: ChainID
    parent: ChainID | None
    diff_id: DiffID
    size: int


class LayerStore:
    """Unpacks each layer once per chain ID under ``root`` and answers where it lives."""

    def __init__(self, root: Path, *, durable: bool = True,
                 ids: IdentityMapping | None = None) -> None:
        # durable: syncfs before the rename that publishes a layer, so a crash never leaves a
        # published layer with lost content. Tests on scratch directories may turn it off.
        self.root = Path(os.path.abspath(root))
        self._durable = durable
        self.ids = ids or IdentityMapping()
        self.root.mkdir(parents=True, exist_ok=True)
        self._sweep_stale()

    # -- queries -----------------------------------------------------------------------------

    def exists(self, chain_id: ChainID) -> bool:
        return (self._dir(chain_id) / _META).is_file()

    def diff_dir(self, chain_id: ChainID) -> Path:
        self._info(chain_id)
        return self._dir(chain_id) / "diff"

    def lower_dirs(self, chain_id: ChainID) -> list[Path]:
        """Diff dirs of the whole chain, top layer first (the order of overlay's lowerdir)."""
        dirs: list[Path] = []
        current: ChainID | None = chain_id
        while current is not None:
            info = self._info(current)
            dirs.append(self._dir(current) / "diff")
            current = info.parent
        return dirs

    def size(self, chain_id: ChainID) -> int:
        return self._info(chain_id).size

    def chain_ids(self) -> list[ChainID]:
        """Every published layer (temp and trash directories are not layers)."""
        found = []
        for entry in sorted(self.root.iterdir()):
            if entry.name.startswith(".") or not (entry / _META).is_file():
                continue
            found.append(ChainID(f"sha256:{entry.name}"))
        return found

    def info(self, chain_id: ChainID) -> LayerInfo:
        return self._info(chain_id)

    # -- changes -----------------------------------------------------------------------------

    def apply_layer(self, parent: ChainID | None, diff_id: DiffID, tar_stream: BinaryIO) -> ChainID:
        """Unpack an uncompressed layer tar on top of ``parent`` and return its chain ID.

        The stream is read to its end and its sha256 must equal ``diff_id``. Returns at once,
        without reading, when the chain ID is already there.
        """
        check_diff_id(diff_id)
        if parent is not None and not self.exists(parent):
            raise NotFound(f"parent layer {parent} does not exist")
        chain_id = chain_id_of(parent, diff_id)
        if self.exists(chain_id):
            return chain_id
        prepared = self.prepare(diff_id, tar_stream)
        try:
            return self.commit(prepared, parent)[0]
        finally:
            self.discard(prepared)

    def prepare(self, diff_id: DiffID, tar_stream: BinaryIO) -> PreparedLayer:
        """Unpack a layer tar into a temp directory, unpublished, and verify its diff ID.

        A layer's diff directory holds only its own entries, whatever lies below it, so layers
        of one image may be prepared in any order (and at the same time); ``commit`` publishes
        them bottom first. ``discard`` removes what was not committed.
        """
        check_diff_id(diff_id)
        tmp = self.root / f"{_TMP_PREFIX}{os.getpid()}-{secrets.token_hex(8)}"
        tmp.mkdir(mode=0o700)
        try:
            diff = tmp / "diff"
            diff.mkdir()
            os.chmod(diff, 0o755)  # a layer root without its own entry reads as 0755
            os.chown(diff, *self.ids.root_pair())
            reader = _HashingReader(tar_stream)
            try:
                apply_tar(cast(BinaryIO, reader), diff, self.ids)
            except UnsafeArchive:
                # a tar that is corrupt because it is not the blob we were promised: say so
                reader.drain()
                reader.verify(diff_id)
                raise
            reader.drain()
            reader.verify(diff_id)
            size = _disk_size(diff)
            if self._durable:
                _syncfs(tmp)
        except BaseException:
            _remove(tmp)
            raise
        return PreparedLayer(diff_id, tmp, size)

    def commit(self, prepared: PreparedLayer, parent: ChainID | None) -> tuple[ChainID, bool]:
        """Publish a prepared layer on ``parent``; its chain ID, and False if it was there."""
        if parent is not None and not self.exists(parent):
            raise NotFound(f"parent layer {parent} does not exist")
        chain_id = chain_id_of(parent, prepared.diff_id)
        if self.exists(chain_id):
            return chain_id, False
        if not prepared.path.is_dir():
            raise Internal(f"layer {prepared.diff_id} was committed or discarded already")
        _write_json(prepared.path / _META, LayerInfo(chain_id, parent, prepared.diff_id,
                                                     prepared.size))
        return self._publish(prepared.path, chain_id)

    def discard(self, prepared: PreparedLayer) -> None:
        """Remove a prepared layer that was not committed (a no-op after a commit)."""
        if prepared.path.exists():
            _remove(prepared.path)

    def remove(self, chain_id: ChainID) -> None:
        """Remove one layer. Its children are the caller's business (GC knows the references)."""
        self._info(chain_id)
        trash = self.root / f"{_TRASH_PREFIX}{os.getpid()}-{secrets.token_hex(8)}"
        try:
            os.rename(self._dir(chain_id), trash)
        except FileNotFoundError as err:
            raise NotFound(f"layer {chain_id} does not exist") from err
        _remove(trash)

    # -- internals ---------------------------------------------------------------------------

    def _dir(self, chain_id: ChainID) -> Path:
        return self.root / digest_hex(chain_id)

    def _info(self, chain_id: ChainID) -> LayerInfo:
        path = self._dir(chain_id) / _META
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError as err:
            raise NotFound(f"layer {chain_id} does not exist") from err
        parent = raw.get("parent")
        return LayerInfo(
            chain_id=ChainID(raw["chain_id"]),
            parent=ChainID(parent) if parent else None,
            diff_id=DiffID(raw["diff_id"]),
            size=int(raw["size"]),
        )

    def _publish(self, tmp: Path, chain_id: ChainID) -> tuple[ChainID, bool]:
        final = self._dir(chain_id)
        try:
            os.rename(tmp, final)
        except OSError as err:
            # the rename race: another apply of the same chain ID finished first
            if err.errno in (errno.ENOTEMPTY, errno.EEXIST) and self.exists(chain_id):
                log.debug("layer %s was unpacked concurrently; keeping the other copy", chain_id)
                return chain_id, False
            raise Internal(f"failed to register layer {chain_id}: {err.strerror}") from err
        if self._durable:
            _fsync_dir(self.root)
        return chain_id, True

    def _sweep_stale(self) -> None:
        """Remove temp and trash directories left by processes that no longer exist."""
        for entry in self.root.iterdir():
            for prefix in (_TMP_PREFIX, _TRASH_PREFIX):
                if not entry.name.startswith(prefix):
                    continue
                pid = entry.name[len(prefix) :].split("-", 1)[0]
                if pid.isdigit() and not _pid_alive(int(pid)):
                    log.info("removing stale %s", entry)
                    _remove(entry)


def check_diff_id(diff_id: DiffID) -> None:
    parse_digest(diff_id)
    if not diff_id.startswith("sha256:"):
        raise InvalidArgument(f"unsupported diff ID algorithm: {diff_id}")


def chain_id_of(parent: ChainID | None, diff_id: DiffID) -> ChainID:
    if parent is None:
        return ChainID(diff_id)
    return ChainID(sha256_digest(f"{parent} {diff_id}".encode()))


class _HashingReader:
    """A read-only stream that hashes and counts what passes through it."""

    def __init__(self, source: BinaryIO) -> None:
        self._source = source
        self._hash = hashlib.sha256()
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        self._hash.update(data)
        self.count += len(data)
        return data

    def drain(self) -> None:
        while self.read(_READ_CHUNK):
            pass

    def verify(self, diff_id: DiffID) -> None:
        actual = "sha256:" + self._hash.hexdigest()
        if actual != diff_id:
            raise DigestMismatch(
                f"layer content does not match its diff ID: expected {diff_id}, got {actual}"
            )


def _disk_size(root: Path) -> int:
    """Docker's measure: sizes of everything but directories, each hard-linked inode once."""
    total = 0
    inodes: set[int] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (
            *filenames,
            *(d for d in dirnames if os.path.islink(os.path.join(dirpath, d))),
        ):
            st = os.lstat(os.path.join(dirpath, name))
            if stat.S_ISDIR(st.st_mode) or st.st_size == 0 or st.st_ino in inodes:
                continue
            inodes.add(st.st_ino)
            total += st.st_size
    return total


def _write_json(path: Path, info: LayerInfo) -> None:
    data = json.dumps(
        {
            "chain_id": info.chain_id,
            "parent": info.parent,
            "diff_id": info.diff_id,
            "size": info.size,
        },
        sort_keys=True,
    ).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _syncfs(path: Path) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if libc.syncfs(fd) != 0:
            code = ctypes.get_errno()
            raise Internal(f"syncfs {path}: {os.strerror(code)}")
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(path)
