"""A content-addressed blob store on the local filesystem.

Layout under ``root`` (``<data-root>/content``)::

    blobs/<algorithm>/<hex>    committed blobs, named by the digest of their bytes
    ingest/<random>            writes in progress; never read by anyone else

A blob gets its final name only after its size and digest were verified and its bytes fsynced,
so a reader never sees half a blob and a crash leaves at most a stray file under ``ingest/``
(removed at start). Digests are validated before they become paths.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from berth.content import writeback
from berth.errors import DigestMismatch, Internal, InvalidArgument, NotFound
from berth.oci.digest import Digest, parse_digest

log = logging.getLogger(__name__)

_CHUNK = 1 << 20


@dataclass(frozen=True)
class BlobInfo:
    digest: Digest
    size: int


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalContentStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.ingest_root = root / "ingest"
        (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        self.ingest_root.mkdir(parents=True, exist_ok=True)

    def clean_ingest(self) -> None:
        """Drop writes a crash left behind; call once at start, before any ingest."""
        for entry in self.ingest_root.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)

    def blob_path(self, digest: str) -> Path:
        algorithm, _, encoded = parse_digest(digest).partition(":")
        return self.root / "blobs" / algorithm / encoded

    def has(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def size(self, digest: str) -> int:
        try:
            return self.blob_path(digest).stat().st_size
        except FileNotFoundError:
            raise NotFound(f"content digest {digest}: not found") from None

    def open_blob(self, digest: str) -> BinaryIO:
        try:
            return self.blob_path(digest).open("rb")
        except FileNotFoundError:
            raise NotFound(f"content digest {digest}: not found") from None

    def read_blob(self, digest: str) -> bytes:
        with self.open_blob(digest) as f:
            return f.read()

    def delete(self, digest: str) -> None:
        try:
            self.blob_path(digest).unlink()
        except FileNotFoundError:
            raise NotFound(f"content digest {digest}: not found") from None

    def walk(self) -> Iterator[BlobInfo]:
        blobs = self.root / "blobs"
        for algo_dir in sorted(blobs.iterdir()):
            for entry in sorted(algo_dir.iterdir()):
                try:
                    digest = parse_digest(f"{algo_dir.name}:{entry.name}")
                except InvalidArgument:
                    continue  # not ours: never guess at files we did not name
                yield BlobInfo(digest, entry.stat().st_size)

    def write_blob(self, data: bytes) -> Digest:
        """Store ``data`` and return its sha256 digest (a no-op when the blob exists)."""
        digest = Digest("sha256:" + hashlib.sha256(data).hexdigest())
        if not self.has(digest):
            self._commit_bytes(data, digest)
        return digest

    def _commit_bytes(self, data: bytes, digest: Digest) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.ingest_root)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            self._rename_into_place(Path(tmp), digest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def ingest(
        self,
        stream: BinaryIO,
        expected_digest: str | None = None,
        expected_size: int | None = None,
    ) -> BlobInfo:
        """Copy ``stream`` into the store, verifying digest and size when given.

        On a mismatch nothing is left behind and DigestMismatch names the expected digest.
        """
        return self.ingest_new(stream, expected_digest, expected_size)[0]

    def ingest_new(
        self,
        stream: BinaryIO,
        expected_digest: str | None = None,
        expected_size: int | None = None,
    ) -> tuple[BlobInfo, bool]:
        """As ``ingest``; also says whether the blob is new (False: it was there already)."""
        algorithm = "sha256"
        if expected_digest is not None:
            algorithm = parse_digest(expected_digest).split(":", 1)[0]
        with self.writer(algorithm) as writer:
            while chunk := stream.read(_CHUNK):
                writer.write(chunk)
                if expected_size is not None and writer.size > expected_size:
                    break
            return writer.commit(expected_digest, expected_size)

    def writer(self, algorithm: str = "sha256") -> BlobWriter:
        """A blob written piece by piece (a download that others read as it arrives)."""
        return BlobWriter(self, algorithm)

    def ingest_file(self, path: Path, digest: str, size: int) -> BlobInfo:
        """Move an already verified file (on this filesystem, e.g. under ``ingest_root``) in."""
        parsed = parse_digest(digest)
        if self.has(parsed):
            path.unlink()
        else:
            self._rename_into_place(path, parsed)
        return BlobInfo(parsed, size)

    def _rename_into_place(self, tmp: Path, digest: Digest) -> None:
        final = self.blob_path(digest)
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(tmp, final)
        except OSError as err:
            raise Internal(f"cannot commit blob {digest}: {err}") from err
        _fsync_dir(final.parent)
        log.debug("committed blob %s", digest)


class BlobWriter:
    """One blob being written under ``ingest/``: hashed as it comes, named only by ``commit``.

    Used as a context manager: leaving it without a commit removes the temp file, so a failed
    or interrupted write leaves nothing behind.
    """

    def __init__(self, store: LocalContentStore, algorithm: str = "sha256") -> None:
        self._store = store
        self._hasher = hashlib.new(algorithm)
        self._algorithm = algorithm
        fd, name = tempfile.mkstemp(dir=store.ingest_root)
        self._file = os.fdopen(fd, "wb")
        self._path = Path(name)
        self._done = False
        self.size = 0

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._done:
            self.abort()

    def write(self, data: bytes) -> None:
        self._hasher.update(data)
        self._file.write(data)
        before, self.size = self.size, self.size + len(data)
        if before // writeback.EVERY != self.size // writeback.EVERY:
            self._file.flush()
            writeback.start_writeback(self._file.fileno())

    @property
    def digest(self) -> Digest:
        """The digest of what was written so far."""
        return Digest(f"{self._algorithm}:{self._hasher.hexdigest()}")

    def verify(self, expected_digest: str | None = None,
               expected_size: int | None = None) -> Digest:
        """Raise DigestMismatch unless what was written so far has this size and digest."""
        digest = self.digest
        if expected_size is not None and self.size != expected_size:
            raise DigestMismatch(
                f"size mismatch for {expected_digest or digest}: "
                f"expected {expected_size} bytes, got {self.size}"
                + (" or more" if self.size > expected_size else "")
            )
        if expected_digest is not None and digest != expected_digest:
            raise DigestMismatch(f"digest mismatch: expected {expected_digest}, got {digest}")
        return digest

    def commit(self, expected_digest: str | None = None,
               expected_size: int | None = None) -> tuple[BlobInfo, bool]:
        """Verify, fsync and name the blob; False when it was in the store already."""
        try:
            digest = self.verify(expected_digest, expected_size)
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            if self._store.has(digest):
                self._path.unlink()
                new = False
            else:
                self._store._rename_into_place(self._path, digest)
                new = True
        except BaseException:
            self.abort()
            raise
        self._done = True
        return BlobInfo(digest, self.size), new

    def abort(self) -> None:
        self._done = True
        self._file.close()
        self._path.unlink(missing_ok=True)
