"""The volume building blocks on real files: names, bind parsing, copy-up, path resolution."""

from __future__ import annotations

import os
import stat

import pytest

from berth.engine.model import MountRequest
from berth.engine.mounts import parse_bind, parse_mount_request
from berth.errors import InvalidArgument
from berth.volume.copyup import copy_tree, resolve_in_root
from berth.volume.local import validate_options
from berth.volume.store import VolumeRecord, VolumeStore, validate_volume_name


@pytest.mark.parametrize("name", ["ab", "a_b.c-d", "0x", "A" * 200])
def test_valid_volume_names(name):
    validate_volume_name(name)


@pytest.mark.parametrize("name", ["a", "_ab", "a/b", "a b", "a:b", ".ab", "-ab", "é1"])
def test_invalid_volume_names(name):
    with pytest.raises(InvalidArgument, match="includes invalid characters for a local volume"):
        validate_volume_name(name)


def test_parse_bind_forms():
    named = parse_bind("data:/var/lib/db:ro")
    assert (named.type, named.name, named.destination, named.rw, named.mode) == \
        ("volume", "data", "/var/lib/db", False, "ro")
    assert parse_bind("data:/x").mode == "z" and parse_bind("data:/x").copy_pending
    assert not parse_bind("data:/x:nocopy").copy_pending
    bind = parse_bind("/host/dir/:/c:rw,z")
    assert (bind.type, bind.source, bind.rw, bind.propagation) == \
        ("bind", "/host/dir", True, "rprivate")
    assert parse_bind("/h:/c:rshared").propagation == "rshared"
    anon = parse_bind("/only")
    assert anon.type == "volume" and anon.anonymous and not anon.name
    for bad, message in (("ab:b", "mount path must be absolute"),
                         ("/h:/c:xx", "invalid mode: xx"),
                         ("/h:/c:ro,rw", "invalid mode"),
                         ("/h:/", "destination can't be '/'"),
                         ("a:b:c:d", "invalid volume specification")):
        with pytest.raises(InvalidArgument, match=message):
            parse_bind(bad)


def test_parse_mount_requests(tmp_path):
    with pytest.raises(InvalidArgument, match="bind source path does not exist"):
        parse_mount_request(MountRequest(type="bind", source=str(tmp_path / "x"), target="/x"))
    tmpfs = parse_mount_request(MountRequest(type="tmpfs", target="/t", tmpfs_size=1 << 20,
                                             tmpfs_mode=0o1777))
    assert tmpfs.tmpfs_options == ("size=1024k", "mode=1777")
    with pytest.raises(InvalidArgument, match="field Target must not be empty"):
        parse_mount_request(MountRequest(type="volume"))
    with pytest.raises(InvalidArgument, match="mount type unknown"):
        parse_mount_request(MountRequest(type="npipe", target="/x"))


def test_local_driver_options():
    validate_options("v", {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"})
    with pytest.raises(InvalidArgument, match='invalid option: "foo"'):
        validate_options("v", {"foo": "1"})
    with pytest.raises(InvalidArgument, match='missing required option: "device"'):
        validate_options("v", {"type": "tmpfs"})


def test_store_round_trip(tmp_path):
    store = VolumeStore(tmp_path / "berth.db")
    try:
        rec = VolumeRecord(name="vv", created_at="2026-01-01T00:00:00Z", labels={"a": "b"},
                           options={"type": "tmpfs"}, anonymous=False)
        store.insert(rec)
        assert store.get("vv") == rec
        assert [r.name for r in store.all()] == ["vv"]
        store.delete("vv")
        assert store.get("vv") is None
    finally:
        store.close()


def test_resolve_in_root_never_leaves_the_root(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    os.symlink("/", root / "evil")
    os.symlink("../../../..", root / "etc" / "up")
    os.symlink("/etc", root / "abs")
    assert resolve_in_root(root, "/evil/etc") == root / "etc"
    assert resolve_in_root(root, "/etc/up/etc/passwd") == root / "etc" / "passwd"
    assert resolve_in_root(root, "/../../x") == root / "x"
    assert resolve_in_root(root, "/abs/up") == root
    assert resolve_in_root(root, "/evil", follow_last=False) == root / "evil"


def test_copy_tree_keeps_owners_modes_links_and_xattrs(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "sub").mkdir(parents=True)
    dst.mkdir()
    (src / "f").write_text("data")
    os.chown(src / "f", 1000, 1001)
    os.chmod(src / "f", 0o4750)
    os.link(src / "f", src / "hard")
    os.symlink("../f", src / "sub" / "link")
    os.lchown(src / "sub" / "link", 7, 8)
    os.mkfifo(src / "sub" / "fifo", 0o620)
    os.chmod(src, 0o711)
    os.chown(src, 5, 6)
    try:
        os.setxattr(src / "f", "user.note", b"kept")
        has_xattr = True
    except OSError:
        has_xattr = False
    copy_tree(src, dst)
    st = os.lstat(dst / "f")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 1001, 0o4750)
    assert os.lstat(dst / "hard").st_ino == st.st_ino
    assert os.readlink(dst / "sub" / "link") == "../f"
    assert os.lstat(dst / "sub" / "link").st_uid == 7
    assert stat.S_ISFIFO(os.lstat(dst / "sub" / "fifo").st_mode)
    root = os.lstat(dst)
    assert (root.st_uid, root.st_gid, stat.S_IMODE(root.st_mode)) == (5, 6, 0o711)
    if has_xattr:
        assert os.getxattr(dst / "f", "user.note") == b"kept"
