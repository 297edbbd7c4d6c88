"""Overlay mounts: described as data, performed by mount.py, diffed back into layers."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from berth.errors import FailedPrecondition, InvalidArgument, NotFound
from berth.oci.digest import ChainID, DiffID, sha256_digest
from berth.snapshot.archive import write_diff
from berth.snapshot.layers import LayerStore
from berth.snapshot.mount import Mount, is_mounted, mount_all, unmount
from berth.snapshot.overlay import overlay_mounts, prepare_rootfs, release_rootfs


def mounts_under(path: Path) -> list[str]:
    prefix = str(path)
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(prefix)]


@pytest.fixture()
def scratch(tmp_path: Path) -> Iterator[Path]:
    """tmp_path, with every mount under it undone at the end whatever happened."""
    yield tmp_path
    leaked = mounts_under(tmp_path)
    for target in reversed(leaked):
        unmount(Path(target), detach=True)
    assert leaked == []


# -- pure ------------------------------------------------------------------------------------


def test_overlay_mounts_lists_lowers_top_first() -> None:
    mounts = overlay_mounts([Path("/l/top"), Path("/l/bottom")], Path("/c/u"), Path("/c/w"),
                            Path("/c/rootfs"))  # fmt: skip
    assert mounts == [
        Mount(
            "overlay",
            "overlay",
            Path("/c/rootfs"),
            ("lowerdir=/l/top:/l/bottom", "upperdir=/c/u", "workdir=/c/w",
             "index=off", "metacopy=off", "redirect_dir=off"),
        )
    ]  # fmt: skip


def test_overlay_mounts_volatile_and_no_lowers() -> None:
    (m,) = overlay_mounts([Path("/l")], Path("/u"), Path("/w"), Path("/t"), volatile=True)
    assert m.options[-1] == "volatile"
    assert overlay_mounts([], Path("/u"), Path("/w"), Path("/t")) == [
        Mount("bind", "/u", Path("/t"), ("bind", "rw"))
    ]


@pytest.mark.parametrize("bad", ["/a,b", "/a:b", "relative"])
def test_overlay_mounts_refuses_paths_it_cannot_express(bad: str) -> None:
    with pytest.raises(InvalidArgument):
        overlay_mounts([Path(bad)], Path("/u"), Path("/w"), Path("/t"))


# -- mounting --------------------------------------------------------------------------------


def test_mount_errors_name_the_path(scratch: Path) -> None:
    (scratch / "t").mkdir()
    missing = scratch / "missing"
    m = overlay_mounts([missing], scratch / "u", scratch / "w", scratch / "t")
    with pytest.raises(NotFound, match=f"error mounting overlay on {scratch / 't'}"):
        mount_all(m)
    with pytest.raises(NotFound, match="not mounted"):
        unmount(scratch / "t")


def test_mount_all_undoes_earlier_mounts_on_failure(scratch: Path) -> None:
    for d in ("src", "t1", "t2"):
        (scratch / d).mkdir()
    good = Mount("bind", str(scratch / "src"), scratch / "t1", ("bind", "ro"))
    bad = Mount("bind", str(scratch / "nope"), scratch / "t2", ("bind",))
    with pytest.raises(NotFound):
        mount_all([good, bad])
    assert not is_mounted(scratch / "t1")


def test_read_only_bind(scratch: Path) -> None:
    for d in ("src", "t"):
        (scratch / d).mkdir()
    mount_all([Mount("bind", str(scratch / "src"), scratch / "t", ("bind", "ro"))])
    try:
        with pytest.raises(OSError):
            (scratch / "t/x").write_text("x")
    finally:
        unmount(scratch / "t")


def test_many_lower_layers_beyond_one_page(scratch: Path) -> None:
    lowers = []
    for i in range(70):
        d = scratch / (f"layer-{i:03d}-" + "x" * 60)
        d.mkdir()
        (d / f"f{i}").write_text(str(i))
        lowers.append(d)
    lowers.reverse()  # top first
    (m,) = overlay_mounts(lowers, scratch / "c/upper", scratch / "c/work", scratch / "c/rootfs")
    assert len(",".join(m.options)) > 4096
    rootfs = prepare_rootfs(lowers, scratch / "c")
    try:
        assert sorted(os.listdir(rootfs)) == sorted(f"f{i}" for i in range(70))
        assert (rootfs / "f0").read_text() == "0"
    finally:
        release_rootfs(scratch / "c", remove=True)


def test_prepare_and_release_rootfs(scratch: Path) -> None:
    lower = scratch / "lower"
    lower.mkdir()
    (lower / "base").write_text("base")
    container = scratch / "ctr"
    rootfs = prepare_rootfs([lower], container)
    assert prepare_rootfs([lower], container) == rootfs  # already mounted: as is
    (rootfs / "new").write_text("new")
    assert (container / "upper/new").read_text() == "new"
    release_rootfs(container)
    assert not is_mounted(rootfs)
    release_rootfs(container)  # nothing mounted: fine
    release_rootfs(container, remove=True)
    assert os.listdir(container) == []


def test_volatile_remount_in_the_same_boot(scratch: Path) -> None:
    lower = scratch / "lower"
    lower.mkdir()
    container = scratch / "ctr"
    rootfs = prepare_rootfs([lower], container, volatile=True)
    (rootfs / "kept").write_text("kept")
    release_rootfs(container)
    assert (container / "work/work/incompat/volatile").exists()
    rootfs = prepare_rootfs([lower], container, volatile=True)
    assert (rootfs / "kept").read_text() == "kept"
    release_rootfs(container)
    # pretend the host rebooted since: the upper directory cannot be trusted any more
    (container / "volatile-boot-id").write_text("another boot\n")
    with pytest.raises(FailedPrecondition, match="discarded"):
        prepare_rootfs([lower], container)
    release_rootfs(container, remove=True)


def test_no_lowers_binds_the_upper(scratch: Path) -> None:
    container = scratch / "ctr"
    rootfs = prepare_rootfs([], container)
    try:
        (rootfs / "f").write_text("f")
        assert (container / "upper/f").read_text() == "f"
    finally:
        release_rootfs(container, remove=True)


# -- the round trip: apply, mount, change, diff, apply, mount --------------------------------


def snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    """Everything a layer must carry, per path (directory mtimes excluded)."""
    tree: dict[str, tuple[object, ...]] = {}
    inodes: dict[int, str] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        st = os.lstat(path)
        kind = stat.S_IFMT(st.st_mode)
        extra: object = None
        if stat.S_ISREG(st.st_mode):
            extra = hashlib.sha256(path.read_bytes()).hexdigest()
        elif stat.S_ISLNK(st.st_mode):
            extra = os.readlink(path)
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            extra = st.st_rdev
        first = inodes.setdefault(st.st_ino, rel) if not stat.S_ISDIR(st.st_mode) else rel
        mtime = None if stat.S_ISDIR(st.st_mode) else int(st.st_mtime)
        tree[rel] = (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, extra, first, mtime)
    return tree


def tar_of(files: dict[str, bytes]) -> tuple[DiffID, bytes]:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 1_600_000_000
            tar.addfile(info, io.BytesIO(data))
    return DiffID(sha256_digest(buf.getvalue())), buf.getvalue()


def test_write_diff_round_trip_through_overlay(scratch: Path) -> None:
    store = LayerStore(scratch / "layers", durable=False)
    d1, t1 = tar_of({
        "etc/passwd": b"root:x:0:0::/root:/bin/sh\n", "keep/stay": b"s", "keep/gone": b"g",
        "tree/a/b/c": b"c", "tree/d": b"d", "mod/file": b"m", "big": os.urandom(100_000),
    })  # fmt: skip
    base = store.apply_layer(None, d1, io.BytesIO(t1))

    first = scratch / "first"
    rootfs = prepare_rootfs(store.lower_dirs(base), first)
    try:
        (rootfs / "keep/gone").unlink()
        shutil.rmtree(rootfs / "tree")
        (rootfs / "tree").mkdir(mode=0o750)
        (rootfs / "tree/new").write_text("new")
        os.chmod(rootfs / "mod/file", 0o4711)
        os.chown(rootfs / "mod/file", 1000, 1000)
        os.link(rootfs / "big", rootfs / "big-link")
        os.symlink("../etc/passwd", rootfs / "keep/link")
        os.mkfifo(rootfs / "keep/fifo")
        (rootfs / "added/deep").mkdir(parents=True)
        (rootfs / "added/deep/file").write_bytes(b"\0" * 10)
        expected = snapshot(rootfs)
        diff = io.BytesIO()
        write_diff(first / "upper", diff)
    finally:
        release_rootfs(first, remove=True)

    names = [e.name for e in tarfile.open(fileobj=io.BytesIO(diff.getvalue()))]
    assert "keep/.wh.gone" in names and "tree/.wh..wh..opq" in names
    top = store.apply_layer(
        base, DiffID(sha256_digest(diff.getvalue())), io.BytesIO(diff.getvalue())
    )
    assert top == ChainID(sha256_digest(f"{base} {sha256_digest(diff.getvalue())}".encode()))

    second = scratch / "second"
    rootfs = prepare_rootfs(store.lower_dirs(top), second)
    try:
        assert snapshot(rootfs) == expected
    finally:
        release_rootfs(second, remove=True)


def test_case_035_whiteouts_and_opaque_dirs(scratch: Path) -> None:
    """shared/cases/035: the crafted layers import, and the same change exports, as in Docker."""

    def tar(entries: list[tuple[str, bytes | None]]) -> tuple[DiffID, bytes]:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
            for name, data in entries:
                info = tarfile.TarInfo(name)
                if data is None:
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    t.addfile(info)
                else:
                    info.size, info.mode = len(data), 0o644
                    t.addfile(info, io.BytesIO(data))
        return DiffID(sha256_digest(buf.getvalue())), buf.getvalue()

    l1 = tar([("a/", None), ("a/b/", None), ("a/b/c/", None), ("a/b/c/bar", b"bar\n"),
              ("keep/", None), ("keep/gone.txt", b"g\n"), ("keep/stay.txt", b"s\n")])  # fmt: skip
    l2 = tar([("a/", None), ("a/new.txt", b"new\n"), ("a/.wh..wh..opq", b""), ("keep/", None),
              ("keep/.wh.gone.txt", b"")])  # fmt: skip
    store = LayerStore(scratch / "layers", durable=False)
    c1 = store.apply_layer(None, l1[0], io.BytesIO(l1[1]))
    c2 = store.apply_layer(c1, l2[0], io.BytesIO(l2[1]))
    rootfs = prepare_rootfs(store.lower_dirs(c2), scratch / "ctr")
    try:
        found = sorted("/" + str(p.relative_to(rootfs)) for p in rootfs.rglob("*"))
        assert found == ["/a", "/a/new.txt", "/keep", "/keep/stay.txt"]
        # RUN rm /keep/stay.txt && rm -rf /a && mkdir /a && echo z > /a/z
        (rootfs / "keep/stay.txt").unlink()
        shutil.rmtree(rootfs / "a")
        (rootfs / "a").mkdir()
        (rootfs / "a/z").write_text("z\n")
        out = io.BytesIO()
        write_diff(scratch / "ctr/upper", out)
    finally:
        release_rootfs(scratch / "ctr", remove=True)
    names = [e.name for e in tarfile.open(fileobj=io.BytesIO(out.getvalue()))]
    assert names == ["a", "a/.wh..wh..opq", "a/z", "keep", "keep/.wh.stay.txt"]
