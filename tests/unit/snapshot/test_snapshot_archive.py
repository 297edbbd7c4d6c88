"""apply_tar and write_diff: hostile entries, whiteouts, metadata, determinism."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from berth.errors import UnsafeArchive
from berth.oci.idmap import IdentityMapping, IDMap, UnmappedID
from berth.snapshot.archive import OPAQUE_XATTR, apply_tar, tar_directory, write_diff
from berth.snapshot.ownership import adopt_tree


@dataclass
class E:
    """One tar entry for a test: kind is f(ile) d(ir) l(symlink) h(ardlink) c b p(fifo)."""

    name: str
    kind: str = "f"
    data: bytes = b""
    link: str = ""
    mode: int | None = None
    uid: int = 0
    gid: int = 0
    mtime: float = 1_600_000_000
    pax: dict[str, str] = field(default_factory=dict)
    dev: tuple[int, int] = (0, 0)


_TYPES = {
    "f": tarfile.REGTYPE,
    "d": tarfile.DIRTYPE,
    "l": tarfile.SYMTYPE,
    "h": tarfile.LNKTYPE,
    "c": tarfile.CHRTYPE,
    "b": tarfile.BLKTYPE,
    "p": tarfile.FIFOTYPE,
}


def make_tar(*entries: E, trailer: bool = True) -> bytes:
    buf = io.BytesIO()
    tar = tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT)
    for e in entries:
        info = tarfile.TarInfo(e.name)
        info.type = _TYPES[e.kind]
        info.mode = e.mode if e.mode is not None else (0o755 if e.kind == "d" else 0o644)
        info.uid, info.gid, info.mtime = e.uid, e.gid, e.mtime
        info.linkname = e.link
        info.devmajor, info.devminor = e.dev
        info.pax_headers = dict(e.pax)
        if e.kind == "f":
            info.size = len(e.data)
            tar.addfile(info, io.BytesIO(e.data))
        else:
            tar.addfile(info)
    if trailer:
        tar.close()
        return buf.getvalue()
    # the end-of-archive blocks left out, as `umoci insert --whiteout` writes them
    tar.fileobj = None  # type: ignore[assignment]
    return buf.getvalue()


def apply(dest: Path, *entries: E) -> None:
    dest.mkdir(exist_ok=True)
    apply_tar(io.BytesIO(make_tar(*entries)), dest)


def listing(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture()
def box(tmp_path: Path) -> tuple[Path, Path]:
    """A destination and a sibling 'outside' directory that must stay untouched."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("secret\n")
    return tmp_path / "dest", outside


def assert_outside_untouched(outside: Path) -> None:
    assert listing(outside) == {"secret"}
    assert (outside / "secret").read_text() == "secret\n"
    assert (outside / "secret").stat().st_nlink == 1


# -- hostile archives ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["../x", "a/../../x", "./../x", "..", "a/b/../../../outside/secret"],
)
def test_names_that_climb_out_are_refused(box: tuple[Path, Path], name: str) -> None:
    dest, outside = box
    with pytest.raises(UnsafeArchive, match="is outside of"):
        apply(dest, E(name, data=b"pwned"))
    assert_outside_untouched(outside)
    assert not (dest.parent / "x").exists()


def test_absolute_names_are_relative_to_the_layer_root(box: tuple[Path, Path]) -> None:
    # Docker cleans "/etc/x" and "/../x" to paths under the root
    dest, outside = box
    apply(dest, E("/etc/x", data=b"1"), E("/../y", data=b"2"))
    assert (dest / "etc/x").read_bytes() == b"1"
    assert (dest / "y").read_bytes() == b"2"
    assert_outside_untouched(outside)


def test_write_through_absolute_symlink_is_refused(box: tuple[Path, Path]) -> None:
    dest, outside = box
    with pytest.raises(UnsafeArchive, match="symlink"):
        apply(dest, E("evil", "l", link=str(outside)), E("evil/pwned", data=b"x"))
    assert_outside_untouched(outside)


def test_write_through_symlink_to_root_is_refused(box: tuple[Path, Path]) -> None:
    dest, outside = box
    with pytest.raises(UnsafeArchive, match="points outside of the layer"):
        apply(dest, E("root", "l", link="/"), E(f"root/{outside}/pwned", data=b"x"))
    assert_outside_untouched(outside)


def test_relative_symlink_that_climbs_out_is_refused(box: tuple[Path, Path]) -> None:
    dest, outside = box
    with pytest.raises(UnsafeArchive, match="invalid symlink"):
        apply(dest, E("a/up", "l", link="../../outside"), E("a/up/pwned", data=b"x"))
    assert_outside_untouched(outside)


def test_symlink_chain_that_climbs_out_is_refused(box: tuple[Path, Path]) -> None:
    # each link looks harmless on its own; followed together they leave the root
    dest, outside = box
    with pytest.raises(UnsafeArchive, match="outside"):
        apply(
            dest,
            E("d/l1", "l", link=".."),
            E("d/l2", "l", link="l1/.."),
            E("d/l2/outside/pwned", data=b"x"),
        )
    assert_outside_untouched(outside)


def test_symlink_loop_is_refused(box: tuple[Path, Path]) -> None:
    dest, _ = box
    with pytest.raises(UnsafeArchive, match="too many levels"):
        apply(dest, E("a", "l", link="b"), E("b", "l", link="a"), E("a/x", data=b"x"))


def test_relative_symlink_inside_the_layer_is_followed(box: tuple[Path, Path]) -> None:
    dest, _ = box
    apply(dest, E("usr/lib", "d"), E("lib", "l", link="usr/lib"), E("lib/libc.so", data=b"c"))
    assert (dest / "usr/lib/libc.so").read_bytes() == b"c"
    assert (dest / "lib").is_symlink()


def test_entry_replaces_a_symlink_instead_of_writing_through_it(box: tuple[Path, Path]) -> None:
    dest, outside = box
    apply(dest, E("f", "l", link=str(outside / "secret")), E("f", data=b"mine"))
    assert not (dest / "f").is_symlink()
    assert (dest / "f").read_bytes() == b"mine"
    assert_outside_untouched(outside)


@pytest.mark.parametrize(
    "link",
    ["/etc/passwd", "../../etc/passwd", "../outside/secret", "s/passwd"],
)
def test_hardlinks_out_of_the_layer_are_refused(box: tuple[Path, Path], link: str) -> None:
    dest, outside = box
    nlink = os.stat("/etc/passwd").st_nlink
    with pytest.raises(UnsafeArchive, match="hardlink|outside"):
        apply(dest, E("s", "l", link="/etc"), E("h", "h", link=link))
    assert os.stat("/etc/passwd").st_nlink == nlink
    assert_outside_untouched(outside)
    assert not (dest / "h").exists()


def test_hardlink_to_a_directory_is_refused(box: tuple[Path, Path]) -> None:
    dest, _ = box
    with pytest.raises(UnsafeArchive, match="directory"):
        apply(dest, E("d", "d"), E("h", "h", link="d"))


def test_child_of_a_file_is_refused(box: tuple[Path, Path]) -> None:
    dest, _ = box
    with pytest.raises(UnsafeArchive, match="not a directory"):
        apply(dest, E("a", data=b"file"), E("a/b", data=b"x"))


def test_truncated_tar_is_refused(tmp_path: Path) -> None:
    data = make_tar(E("big", data=b"x" * 10000))
    with pytest.raises(UnsafeArchive, match="invalid tar"):
        apply_tar(io.BytesIO(data[:2048]), tmp_path)


def test_overlay_xattrs_from_the_tar_are_ignored(tmp_path: Path) -> None:
    pax = {"SCHILY.xattr.trusted.overlay.redirect": "/etc", "SCHILY.xattr.user.ok": "yes"}
    apply(tmp_path / "d", E("dir", "d", pax=pax))
    assert os.listxattr(tmp_path / "d/dir") == ["user.ok"]


# -- ordinary entries ------------------------------------------------------------------------


def test_entry_kinds_and_metadata(tmp_path: Path) -> None:
    dest = tmp_path / "d"
    cap = "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    apply(
        dest,
        E("bin/", "d", mode=0o755, mtime=1_500_000_000),
        E("bin/tool", data=b"#!/bin/sh\n", mode=0o4755, uid=1000, gid=1001, mtime=1_500_000_001),
        E("bin/alias", "l", link="tool", uid=7, gid=8),
        E("bin/hard", "h", link="bin/tool"),
        E("dev/null", "c", mode=0o666, dev=(1, 3)),
        E("dev/loop0", "b", mode=0o660, dev=(7, 0)),
        E("run/fifo", "p", mode=0o600),
        E(
            "xattr",
            data=b"x",
            pax={"SCHILY.xattr.user.k": "v", "SCHILY.xattr.security.capability": cap},
        ),
        E("frac", data=b"f", pax={"mtime": "1500000000.123456789"}),
        E("/" + "n" * 150 + "/" + "m" * 150, data=b"long"),
    )
    tool = os.lstat(dest / "bin/tool")
    assert stat.S_IMODE(tool.st_mode) == 0o4755  # chown before chmod keeps the set-id bit
    assert (tool.st_uid, tool.st_gid, tool.st_mtime_ns) == (1000, 1001, 1_500_000_001 * 10**9)
    assert tool.st_nlink == 2 and os.lstat(dest / "bin/hard").st_ino == tool.st_ino
    alias = os.lstat(dest / "bin/alias")
    assert os.readlink(dest / "bin/alias") == "tool" and (alias.st_uid, alias.st_gid) == (7, 8)
    assert os.lstat(dest / "bin").st_mtime_ns == 1_500_000_000 * 10**9  # set after children
    null = os.lstat(dest / "dev/null")
    assert (
        stat.S_ISCHR(null.st_mode) and os.major(null.st_rdev) == 1 and os.minor(null.st_rdev) == 3
    )
    assert stat.S_ISBLK(os.lstat(dest / "dev/loop0").st_mode)
    assert stat.S_ISFIFO(os.lstat(dest / "run/fifo").st_mode)
    assert os.getxattr(dest / "xattr", "user.k") == b"v"
    assert os.getxattr(dest / "xattr", "security.capability") == cap.encode("latin-1")
    assert os.lstat(dest / "frac").st_mtime_ns == 1_500_000_000_123_456_789
    assert (dest / ("n" * 150) / ("m" * 150)).read_bytes() == b"long"
    # missing parents are made like Docker makes them
    assert stat.S_IMODE(os.lstat(dest / "dev").st_mode) == 0o755


def test_later_entries_replace_earlier_ones(tmp_path: Path) -> None:
    dest = tmp_path / "d"
    apply(
        dest,
        E("x", "d"),
        E("x/child", data=b"c"),
        E("x", data=b"now a file"),
        E("y", data=b"file"),
        E("y", "d", mode=0o700),
        E("z", "d", mode=0o700),
        E("z", "d", mode=0o750),
    )
    assert (dest / "x").read_bytes() == b"now a file"
    assert stat.S_IMODE((dest / "y").stat().st_mode) == 0o700
    assert stat.S_IMODE((dest / "z").stat().st_mode) == 0o750


def test_tar_without_end_of_archive_blocks_is_accepted(tmp_path: Path) -> None:
    data = make_tar(E("a/.wh.gone"), trailer=False)
    assert len(data) == 512  # one header, no end-of-archive blocks
    apply_tar(io.BytesIO(data), tmp_path)
    assert stat.S_ISCHR(os.lstat(tmp_path / "a/gone").st_mode)


# -- whiteouts -------------------------------------------------------------------------------


def test_whiteout_becomes_an_overlay_whiteout_device(tmp_path: Path) -> None:
    dest = tmp_path / "d"
    apply(dest, E("keep/", "d"), E("keep/.wh.gone.txt", uid=3, gid=4))
    st = os.lstat(dest / "keep/gone.txt")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert not (dest / "keep/.wh.gone.txt").exists()


@pytest.mark.parametrize("marker_first", [True, False])
def test_opaque_marker_sets_the_xattr_whatever_its_order(
    tmp_path: Path, marker_first: bool
) -> None:
    dest = tmp_path / "d"
    entries = [E("a/new.txt", data=b"new"), E("a/.wh..wh..opq")]
    if marker_first:
        entries.reverse()
    apply(dest, E("a/", "d", mode=0o750), *entries)
    assert os.getxattr(dest / "a", OPAQUE_XATTR) == b"y"
    assert listing(dest) == {"a", "a/new.txt"}
    assert stat.S_IMODE((dest / "a").stat().st_mode) == 0o750


def test_opaque_marker_before_its_directory_entry(tmp_path: Path) -> None:
    # umoci insert --opaque writes the marker first, then the directory
    dest = tmp_path / "d"
    apply(dest, E("data/dir/.wh..wh..opq"), E("data/dir", "d", mode=0o711))
    assert os.getxattr(dest / "data/dir", OPAQUE_XATTR) == b"y"
    assert stat.S_IMODE((dest / "data/dir").stat().st_mode) == 0o711


def test_whiteout_does_not_hide_an_entry_of_the_same_layer(tmp_path: Path) -> None:
    dest = tmp_path / "d"
    apply(dest, E("f", data=b"same layer"), E(".wh.f"), E(".wh.g"), E("g", data=b"after"))
    assert (dest / "f").read_bytes() == b"same layer"
    assert (dest / "g").read_bytes() == b"after"


def test_aufs_metadata_is_skipped(tmp_path: Path) -> None:
    dest = tmp_path / "d"
    apply(dest, E(".wh..wh.plnk", "d"), E(".wh..wh.plnk/123.456", data=b"x"), E("f", data=b"f"))
    assert listing(dest) == {"f"}


@pytest.mark.parametrize("name", [".wh..", ".wh.", "a/.wh.."])
def test_invalid_whiteouts_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(UnsafeArchive):
        apply(tmp_path / "d", E(name))


# -- write_diff ------------------------------------------------------------------------------


def make_upper(root: Path) -> None:
    (root / "a/sub").mkdir(parents=True)
    (root / "a/sub/file").write_bytes(b"content")
    os.link(root / "a/sub/file", root / "a/hard")
    os.symlink("sub/file", root / "a/link")
    os.mknod(root / "gone", stat.S_IFCHR, os.makedev(0, 0))
    (root / "opaque").mkdir(mode=0o700)
    os.setxattr(root / "opaque", OPAQUE_XATTR, b"y")
    (root / "opaque/z").write_bytes(b"z")
    os.mkfifo(root / "fifo")
    os.chown(root / "a/sub/file", 12, 34)
    os.setxattr(root / "a/sub/file", "user.dropped", b"1")
    for p in [*root.rglob("*"), root]:
        os.utime(
            p, ns=(1_700_000_000_500_000_000, 1_700_000_000_900_000_000), follow_symlinks=False
        )


def read_entries(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r|") as tar:
        return list(tar)


def test_write_diff_converts_overlay_whiteouts(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    upper.mkdir()
    make_upper(upper)
    out = io.BytesIO()
    write_diff(upper, out)
    entries = {e.name: e for e in read_entries(out.getvalue())}
    assert list(entries) == [
        ".wh.gone", "a", "a/hard", "a/link", "a/sub", "a/sub/file", "fifo",
        "opaque", "opaque/.wh..wh..opq", "opaque/z",
    ]  # fmt: skip
    assert entries[".wh.gone"].isreg() and entries[".wh.gone"].size == 0
    assert entries["opaque"].pax_headers == {}  # the xattr became the marker
    assert entries["opaque/.wh..wh..opq"].mode == 0o700
    assert entries["a/hard"].isreg() and entries["a/sub/file"].islnk()
    assert entries["a/sub/file"].linkname == "a/hard"
    assert entries["a/link"].issym() and entries["a/link"].linkname == "sub/file"
    assert entries["a/hard"].uid == 12 and entries["a/hard"].uname == ""
    assert entries["a/hard"].mtime == 1_700_000_000  # truncated to seconds, no atime
    assert all(
        "atime" not in e.pax_headers and "ctime" not in e.pax_headers for e in entries.values()
    )
    assert "SCHILY.xattr.user.dropped" not in entries["a/hard"].pax_headers


def test_write_diff_is_deterministic(tmp_path: Path) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    outs = []
    for upper in (first, second):
        upper.mkdir()
        make_upper(upper)
        out = io.BytesIO()
        write_diff(upper, out)
        outs.append(out.getvalue())
    os.utime(first / "a/sub/file", ns=(5, 1_700_000_000_000_000_001))  # atime and sub-second
    again = io.BytesIO()
    write_diff(first, again)
    assert outs[0] == outs[1] == again.getvalue()


def test_write_diff_then_apply_gives_back_the_upper(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    upper.mkdir()
    make_upper(upper)
    out = io.BytesIO()
    write_diff(upper, out)
    dest = tmp_path / "dest"
    dest.mkdir()
    apply_tar(io.BytesIO(out.getvalue()), dest)
    assert listing(dest) == listing(upper)
    assert os.getxattr(dest / "opaque", OPAQUE_XATTR) == b"y"
    assert os.lstat(dest / "gone").st_rdev == 0
    assert os.lstat(dest / "a/hard").st_ino == os.lstat(dest / "a/sub/file").st_ino


def test_tar_directory_keeps_devices_as_devices(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    make_upper(root)
    out = io.BytesIO()
    tar_directory(root, out)
    names = {e.name: e for e in read_entries(out.getvalue())}
    assert names["gone"].ischr() and "opaque/.wh..wh..opq" not in names


# -- short and corrupt streams ---------------------------------------------------------------


def test_missing_padding_after_the_last_member_is_accepted(tmp_path: Path) -> None:
    # `umoci insert --opaque` writes this: the last file's data, then nothing at all
    full = make_tar(E("dir/.wh..wh..opq"), E("dir/deep", data=b"deep\n"))
    short = full[: full.index(b"deep\n") + 5]  # no padding, no end-of-archive blocks
    apply_tar(io.BytesIO(short), tmp_path)
    assert (tmp_path / "dir/deep").read_bytes() == b"deep\n"
    assert os.getxattr(tmp_path / "dir", OPAQUE_XATTR) == b"y"


def test_data_cut_short_is_refused(tmp_path: Path) -> None:
    full = make_tar(E("big", data=b"x" * 3000))
    short = full[: full.index(b"xxx") + 1000]
    with pytest.raises(UnsafeArchive, match="unexpected end of data"):
        apply_tar(io.BytesIO(short), tmp_path)


@pytest.mark.parametrize("cut", [100, 300, 511])
def test_header_cut_short_or_corrupt_is_refused(tmp_path: Path, cut: int) -> None:
    first = make_tar(E("a", data=b"a" * 512), trailer=False)
    second = make_tar(E("b", data=b"b"))
    with pytest.raises(UnsafeArchive, match="invalid tar"):
        apply_tar(io.BytesIO(first + second[:cut]), tmp_path)
    garbage = first + b"\x01" * 512 + bytes(1024)
    (tmp_path / "g").mkdir()
    with pytest.raises(UnsafeArchive, match="invalid tar header at offset 1024"):
        apply_tar(io.BytesIO(garbage), tmp_path / "g")


# -- --userns-remap: owners shifted in, shifted back out ------------------------------------------

REMAP = IdentityMapping((IDMap(0, 100000, 65536),), (IDMap(0, 200000, 65536),))


def _owner(path: Path) -> tuple[int, int]:
    st = os.lstat(path)
    return st.st_uid, st.st_gid


def test_apply_with_a_mapping_shifts_every_owner_to_the_host(tmp_path: Path) -> None:
    dest = tmp_path / "d"
    dest.mkdir()
    tar = make_tar(E(".", "d"), E("etc/passwd", data=b"x", uid=0, gid=0),
                   E("home/u", "d", uid=1000, gid=1000), E("home/u/.wh.gone", uid=9, gid=9),
                   E("bin/sh", "l", link="busybox", uid=2, gid=3))
    apply_tar(io.BytesIO(tar), dest, REMAP)
    assert _owner(dest) == (100000, 200000)
    assert _owner(dest / "etc") == (100000, 200000)  # made for a parent the tar does not list
    assert _owner(dest / "etc/passwd") == (100000, 200000)
    assert _owner(dest / "home/u") == (101000, 201000)
    assert _owner(dest / "home/u/gone") == (100009, 200009)
    assert _owner(dest / "bin/sh") == (100002, 200003)


def test_apply_refuses_an_id_outside_the_mapping(tmp_path: Path) -> None:
    dest = tmp_path / "d"
    dest.mkdir()
    with pytest.raises(UnmappedID, match="Container ID 70000 cannot be mapped to a host ID"):
        apply_tar(io.BytesIO(make_tar(E("f", uid=70000))), dest, REMAP)


def test_remapped_round_trip_gives_back_the_original_owners(tmp_path: Path) -> None:
    dest = tmp_path / "d"
    dest.mkdir()
    apply_tar(io.BytesIO(make_tar(E("a", uid=0, gid=0), E("b", "d", uid=5, gid=6),
                                  E("b/c", uid=65535, gid=7))), dest, REMAP)
    os.setxattr(dest / "b", OPAQUE_XATTR, b"y")
    os.mknod(dest / "w", stat.S_IFCHR, os.makedev(0, 0))  # a whiteout the kernel made as root
    out = io.BytesIO()
    write_diff(dest, out, REMAP)
    owners = {m.name: (m.uid, m.gid) for m in read_entries(out.getvalue())}
    assert owners == {"a": (0, 0), "b": (5, 6), "b/.wh..wh..opq": (5, 6),
                      "b/c": (65535, 7), ".wh.w": (0, 0)}


def test_write_diff_refuses_a_host_owner_the_container_cannot_have(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")  # owned by the daemon's root, outside the mapping
    with pytest.raises(UnmappedID, match="Host ID 0 cannot be mapped to a container ID"):
        write_diff(tmp_path, io.BytesIO(), REMAP)


def test_adopt_tree_shifts_what_the_daemon_wrote_and_keeps_what_was_shifted(
        tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    (upper / "app").mkdir(parents=True)
    os.chown(upper / "app", 0, 0)  # COPY's default owner, as the daemon wrote it
    (upper / "app/run").write_text("#!/bin/sh\n")
    os.chown(upper / "app/run", 1000, 50)  # --chown=1000:50
    os.chmod(upper / "app/run", 0o4755)
    (upper / "etc").mkdir()
    os.chown(upper / "etc", 100000, 200000)  # copied up from a shifted lower layer
    (upper / "link").symlink_to("app/run")
    os.mknod(upper / "gone", stat.S_IFCHR, os.makedev(0, 0))  # the kernel's whiteout
    adopt_tree(upper, REMAP)
    assert _owner(upper / "app") == (100000, 200000)
    assert _owner(upper / "app/run") == (101000, 200050)
    assert stat.S_IMODE(os.stat(upper / "app/run").st_mode) == 0o4755  # set-uid kept
    assert _owner(upper / "etc") == (100000, 200000)
    assert _owner(upper / "link") == (100000, 200000)
    assert _owner(upper / "gone") == (0, 0)
    out = io.BytesIO()
    write_diff(upper, out, REMAP)
    owners = {m.name: (m.uid, m.gid) for m in read_entries(out.getvalue())}
    assert owners["app/run"] == (1000, 50) and owners["etc"] == (0, 0)
