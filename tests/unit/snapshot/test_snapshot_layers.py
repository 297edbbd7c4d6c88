"""LayerStore: one unpack per chain ID, verified, atomic, safe under concurrency."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import pytest

from berth.errors import DigestMismatch, InvalidArgument, NotFound, UnsafeArchive
from berth.oci.digest import ChainID, DiffID, chain_ids, sha256_digest
from berth.oci.idmap import IdentityMapping, IDMap
from berth.snapshot.layers import LayerStore


def layer(files: dict[str, bytes], links: dict[str, str] | None = None) -> tuple[DiffID, bytes]:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    data = buf.getvalue()
    return DiffID(sha256_digest(data)), data


class Unreadable(io.RawIOBase):
    def readinto(self, b: object) -> int:
        raise AssertionError("an existing layer must not be read again")


@pytest.fixture()
def store(tmp_path: Path) -> LayerStore:
    return LayerStore(tmp_path / "layers", durable=False)


def leftovers(store: LayerStore) -> list[str]:
    return sorted(p.name for p in store.root.iterdir() if p.name.startswith("."))


def test_apply_stack_and_query(store: LayerStore) -> None:
    d1, t1 = layer({"a": b"12345", "b": b"xyz"}, {"l": "a"})
    d2, t2 = layer({"c": b"1"})
    c1 = store.apply_layer(None, d1, io.BytesIO(t1))
    c2 = store.apply_layer(c1, d2, io.BytesIO(t2))
    assert [c1, c2] == chain_ids([d1, d2])
    assert store.exists(c1) and store.exists(c2)
    assert (store.diff_dir(c1) / "a").read_bytes() == b"12345"
    assert store.lower_dirs(c2) == [store.diff_dir(c2), store.diff_dir(c1)]
    assert store.size(c1) == 5 + 3 + 1  # files and the symlink's target, not directories
    assert store.info(c2).parent == c1 and store.info(c2).diff_id == d2
    assert leftovers(store) == []


def test_existing_chain_returns_without_reading(store: LayerStore) -> None:
    d1, t1 = layer({"a": b"a"})
    c1 = store.apply_layer(None, d1, io.BytesIO(t1))
    assert store.apply_layer(None, d1, Unreadable()) == c1  # type: ignore[arg-type]


def test_digest_mismatch_leaves_nothing(store: LayerStore) -> None:
    d1, _ = layer({"a": b"a"})
    _, other = layer({"a": b"b"})
    with pytest.raises(DigestMismatch, match="expected " + d1):
        store.apply_layer(None, d1, io.BytesIO(other))
    assert not store.exists(ChainID(d1))
    assert list(store.root.iterdir()) == []


def test_trailing_bytes_count_for_the_digest(store: LayerStore) -> None:
    d1, t1 = layer({"a": b"a"})
    with pytest.raises(DigestMismatch):
        store.apply_layer(None, d1, io.BytesIO(t1 + b"\0" * 512))


def test_corrupt_tar_with_the_wrong_digest_is_a_digest_mismatch(store: LayerStore) -> None:
    d1, t1 = layer({"a": b"a" * 5000})
    with pytest.raises(DigestMismatch):
        store.apply_layer(None, d1, io.BytesIO(t1[:1024]))
    assert list(store.root.iterdir()) == []


@pytest.mark.parametrize(
    ("files", "links"),
    [
        ({"../escape": b"x"}, {}),
        ({"../../escape": b"x"}, {}),
        ({"out/escape": b"x"}, {"out": "/tmp"}),
        ({"up/escape": b"x"}, {"up": "../.."}),
        ({"a/x": b"x"}, {"a": "b", "b": "a"}),
    ],
)
def test_hostile_layer_leaves_nothing(
    store: LayerStore, tmp_path: Path, files: dict[str, bytes], links: dict[str, str]
) -> None:
    # links first, then the files written through them
    extra = io.BytesIO()
    with tarfile.open(fileobj=extra, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, target in links.items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    data = extra.getvalue()
    diff_id = DiffID(sha256_digest(data))
    before = sorted(os.listdir("/tmp"))
    with pytest.raises(UnsafeArchive):
        store.apply_layer(None, diff_id, io.BytesIO(data))
    assert list(store.root.iterdir()) == []
    assert not (tmp_path / "escape").exists() and not (tmp_path.parent / "escape").exists()
    assert "escape" not in set(os.listdir("/tmp")) - set(before)


def test_missing_parent_and_unknown_layers(store: LayerStore) -> None:
    d1, t1 = layer({"a": b"a"})
    ghost = ChainID("sha256:" + "0" * 64)
    with pytest.raises(NotFound):
        store.apply_layer(ghost, d1, io.BytesIO(t1))
    for query in (store.diff_dir, store.lower_dirs, store.size, store.remove):
        with pytest.raises(NotFound):
            query(ghost)
    with pytest.raises(InvalidArgument):
        store.exists(ChainID("../../etc"))


def test_only_sha256_diff_ids(store: LayerStore) -> None:
    with pytest.raises(InvalidArgument):
        store.apply_layer(None, DiffID("sha512:" + "a" * 128), io.BytesIO(b""))
    with pytest.raises(InvalidArgument):
        store.apply_layer(None, DiffID("md5:abc"), io.BytesIO(b""))


def test_remove(store: LayerStore) -> None:
    d1, t1 = layer({"a": b"a"})
    c1 = store.apply_layer(None, d1, io.BytesIO(t1))
    store.remove(c1)
    assert not store.exists(c1)
    assert list(store.root.iterdir()) == []


def test_concurrent_applies_of_one_layer(store: LayerStore) -> None:
    d1, t1 = layer({f"f{i}": os.urandom(2000) for i in range(200)})
    results: list[ChainID] = []
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def run() -> None:
        try:
            start.wait()
            results.append(store.apply_layer(None, d1, io.BytesIO(t1)))
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=run) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert results == [ChainID(d1)] * 6
    assert leftovers(store) == []
    assert len(os.listdir(store.diff_dir(ChainID(d1)))) == 200


def test_durable_apply(tmp_path: Path) -> None:
    store = LayerStore(tmp_path / "layers")
    d1, t1 = layer({"a": b"a"})
    assert store.exists(store.apply_layer(None, d1, io.BytesIO(t1)))


def test_stale_temp_dirs_of_dead_processes_are_swept(tmp_path: Path) -> None:
    root = tmp_path / "layers"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    (root / f".tmp-{dead}-abc/diff").mkdir(parents=True)
    (root / f".tmp-{os.getpid()}-live").mkdir()
    LayerStore(root, durable=False)
    assert sorted(p.name for p in root.iterdir()) == [f".tmp-{os.getpid()}-live"]


def test_prepare_in_any_order_commit_bottom_first(store: LayerStore) -> None:
    d1, t1 = layer({"a": b"1"})
    d2, t2 = layer({"b": b"22"})
    top = store.prepare(d2, io.BytesIO(t2))  # the upper layer is unpacked first
    bottom = store.prepare(d1, io.BytesIO(t1))
    c1, c2 = chain_ids([d1, d2])
    assert not store.exists(c1) and not store.exists(c2)  # nothing published yet
    with pytest.raises(NotFound):
        store.commit(top, c1)  # its parent is not there yet
    assert store.commit(bottom, None) == (c1, True)
    assert store.commit(top, c1) == (c2, True)
    assert (store.diff_dir(c2) / "b").read_bytes() == b"22"
    assert store.info(c2).parent == c1 and store.size(c2) == 2
    store.discard(top)  # after a commit: nothing left to do
    assert leftovers(store) == []


def test_prepared_layer_discarded_or_already_there(store: LayerStore) -> None:
    d1, t1 = layer({"a": b"1"})
    first = store.prepare(d1, io.BytesIO(t1))
    second = store.prepare(d1, io.BytesIO(t1))
    assert store.commit(first, None) == (ChainID(d1), True)
    assert store.commit(second, None) == (ChainID(d1), False)  # another copy won
    store.discard(second)
    bad = store.prepare(d1, io.BytesIO(t1))
    store.discard(bad)
    assert leftovers(store) == []
    with pytest.raises(DigestMismatch):
        store.prepare(d1, io.BytesIO(t1 + b"\0" * 512))
    assert leftovers(store) == []


def test_a_remapped_store_unpacks_shifted_and_keeps_the_chain_id(tmp_path: Path) -> None:
    remap = IdentityMapping((IDMap(0, 100000, 65536),), (IDMap(0, 100000, 65536),))
    store = LayerStore(tmp_path / "layers", durable=False, ids=remap)
    d1, t1 = layer({"etc/hosts": b"127.0.0.1"})
    chain = store.apply_layer(None, d1, io.BytesIO(t1))
    assert chain == d1
    diff = store.diff_dir(chain)
    for path in (diff, diff / "etc", diff / "etc/hosts"):
        assert (path.stat().st_uid, path.stat().st_gid) == (100000, 100000)
