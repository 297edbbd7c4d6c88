"""The local content store: verify, then rename; nothing half-written; digests before paths."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from berth.content.store import BlobInfo, LocalContentStore
from berth.errors import DigestMismatch, InvalidArgument, NotFound
from berth.oci.digest import sha256_digest


@pytest.fixture
def store(tmp_path: Path) -> LocalContentStore:
    return LocalContentStore(tmp_path / "content")


def test_write_read_and_walk(store: LocalContentStore) -> None:
    digest = store.write_blob(b"hello")
    assert digest == sha256_digest(b"hello")
    assert store.has(digest)
    assert store.size(digest) == 5
    assert store.read_blob(digest) == b"hello"
    with store.open_blob(digest) as f:
        assert f.read() == b"hello"
    assert store.blob_path(digest) == store.root / "blobs" / "sha256" / digest.split(":")[1]
    assert store.write_blob(b"hello") == digest  # idempotent
    assert list(store.walk()) == [BlobInfo(digest, 5)]
    store.delete(digest)
    assert not store.has(digest)
    assert list(store.walk()) == []


def test_ingest_verifies_digest_and_size(store: LocalContentStore) -> None:
    data = b"x" * 3_000_000
    digest = sha256_digest(data)
    info = store.ingest(io.BytesIO(data), digest, len(data))
    assert info == BlobInfo(digest, len(data))
    assert store.read_blob(digest) == data
    again, new = store.ingest_new(io.BytesIO(data), digest, len(data))
    assert (again, new) == (info, False)
    assert list(store.ingest_root.iterdir()) == []


def test_ingest_without_expected_digest_computes_it(store: LocalContentStore) -> None:
    info, new = store.ingest_new(io.BytesIO(b"abc"))
    assert new and info == BlobInfo(sha256_digest(b"abc"), 3)


def test_digest_mismatch_leaves_nothing(store: LocalContentStore) -> None:
    wanted = sha256_digest(b"expected")
    with pytest.raises(DigestMismatch, match=wanted):
        store.ingest(io.BytesIO(b"something else"), wanted)
    assert list(store.walk()) == []
    assert list(store.ingest_root.iterdir()) == []


def test_size_mismatch_leaves_nothing(store: LocalContentStore) -> None:
    digest = sha256_digest(b"abc")
    with pytest.raises(DigestMismatch, match="size mismatch"):
        store.ingest(io.BytesIO(b"abc"), digest, 2)
    with pytest.raises(DigestMismatch, match="size mismatch"):
        store.ingest(io.BytesIO(b"abc"), digest, 4)
    assert list(store.walk()) == []
    assert list(store.ingest_root.iterdir()) == []


@pytest.mark.parametrize(
    "bad", ["sha256:../../etc/passwd", "sha256:ABC", "md5:" + "0" * 32, "", "sha256:" + "0" * 63]
)
def test_digests_are_validated_before_they_become_paths(store: LocalContentStore, bad: str) -> None:
    with pytest.raises(InvalidArgument):
        store.has(bad)
    with pytest.raises(InvalidArgument):
        store.ingest(io.BytesIO(b""), bad)


def test_missing_blob_is_not_found(store: LocalContentStore) -> None:
    missing = sha256_digest(b"nope")
    for call in (store.open_blob, store.read_blob, store.size, store.delete):
        with pytest.raises(NotFound, match=missing):
            call(missing)


def test_ingest_file_moves_a_verified_file(store: LocalContentStore) -> None:
    tmp = store.ingest_root / "made-elsewhere"
    tmp.write_bytes(b"layer")
    info = store.ingest_file(tmp, sha256_digest(b"layer"), 5)
    assert store.read_blob(info.digest) == b"layer"
    assert not tmp.exists()


def test_clean_ingest_removes_leftovers(store: LocalContentStore) -> None:
    (store.ingest_root / "stale").write_bytes(b"half")
    store.clean_ingest()
    assert list(store.ingest_root.iterdir()) == []


def test_writer_names_the_blob_only_when_verified(store: LocalContentStore) -> None:
    data = b"piece by piece" * 1000
    digest = sha256_digest(data)
    with store.writer() as writer:
        for i in range(0, len(data), 4096):
            writer.write(data[i : i + 4096])
            assert not store.has(digest)
        assert writer.digest == digest and writer.size == len(data)
        assert writer.commit(digest, len(data)) == (BlobInfo(digest, len(data)), True)
    assert store.read_blob(digest) == data
    with store.writer() as again:
        again.write(data)
        assert again.commit(digest, len(data))[1] is False  # there already
    assert list(store.ingest_root.iterdir()) == []


def test_writer_left_or_refused_leaves_nothing(store: LocalContentStore) -> None:
    with store.writer() as writer:
        writer.write(b"half a blob")
    with store.writer() as wrong:
        wrong.write(b"other bytes")
        with pytest.raises(DigestMismatch):
            wrong.commit(sha256_digest(b"expected bytes"))
    with store.writer() as short:
        short.write(b"abc")
        with pytest.raises(DigestMismatch, match="expected 4 bytes, got 3"):
            short.verify(sha256_digest(b"abcd"), 4)
    assert list(store.ingest_root.iterdir()) == []
    assert list(store.walk()) == []
