"""The CLI's tar writer produces archives ``tarfile`` (the daemon's reader) reads back exactly."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

from berth.cli._tarwrite import TarWriter


def _tree(root: Path) -> list[str]:
    (root / "dir" / "sub").mkdir(parents=True)
    (root / "dir" / "a.txt").write_bytes(b"alpha\n" * 200)
    (root / "empty").write_bytes(b"")
    (root / "run.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(root / "run.sh", 0o755)
    os.chmod(root / "dir" / "sub", 0o700)
    os.symlink("dir/a.txt", root / "link")
    os.symlink("/" + "t" * 150, root / "longlink")
    os.link(root / "dir" / "a.txt", root / "hard")
    long_dir = root / ("d" * 90) / ("e" * 90)
    long_dir.mkdir(parents=True)
    (long_dir / ("f" * 120)).write_bytes(b"deep")
    (root / "ünïcödé").write_bytes(b"u")
    os.mkfifo(root / "pipe")
    os.utime(root / "dir" / "a.txt", (1_600_000_000.75, 1_600_000_000.75))
    names = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames) + sorted(filenames):
            names.append(os.path.relpath(os.path.join(dirpath, name), root))
    return names


def test_round_trip_through_tarfile(tmp_path: Path) -> None:
    root = tmp_path / "ctx"
    root.mkdir()
    names = _tree(root)
    out = io.BytesIO()
    writer = TarWriter(out)
    for name in names:
        writer.add_path(str(root / name), name)
    writer.add_bytes(".dockerfile.stdin", b"FROM scratch\n")
    writer.close()
    out.seek(0)
    with tarfile.open(fileobj=out, mode="r:") as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert sorted(members) == sorted([*names, ".dockerfile.stdin"])
        for name in names:
            st = os.lstat(root / name)
            m = members[name]
            assert (m.uid, m.gid, m.uname, m.gname) == (0, 0, "", "")
            assert m.mode == st.st_mode & 0o7777, name
            if m.islnk():
                first, second = sorted(("hard", "dir/a.txt"), key=names.index)
                assert (name, m.linkname) == (second, first)  # the later name links
            elif m.issym():
                assert m.linkname == os.readlink(root / name)
            elif m.isfile():
                assert tar.extractfile(m).read() == (root / name).read_bytes()  # type: ignore[union-attr]
            elif name == "pipe":
                assert m.isfifo()
            else:
                assert m.isdir(), name
        assert members["dir/a.txt"].mtime == 1_600_000_000  # whole seconds, as docker sends
        assert tar.extractfile(".dockerfile.stdin").read() == b"FROM scratch\n"  # type: ignore[union-attr]


def test_a_file_that_shrinks_while_read_keeps_the_archive_readable(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 1000)
    out = io.BytesIO()
    writer = TarWriter(out)
    real_lstat = os.lstat

    class Grown:  # lstat reports more than the file holds
        def __getattr__(self, attr: str) -> object:
            value = getattr(real_lstat(path), attr)
            return 5000 if attr == "st_size" else value

    os_lstat, os.lstat = os.lstat, lambda p: Grown()  # type: ignore[assignment,misc,return-value]
    try:
        writer.add_path(str(path), "f")
    finally:
        os.lstat = os_lstat  # type: ignore[misc]
    writer.close()
    out.seek(0)
    with tarfile.open(fileobj=out, mode="r:") as tar:
        data = tar.extractfile("f").read()  # type: ignore[union-attr]
    assert data == b"x" * 1000 + b"\0" * 4000
