"""``berth cp`` and ``/containers/{id}/archive``: round trips, volumes, hostile symlinks."""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import stat
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("daemon")


def _uid() -> str:
    return uuid.uuid4().hex[:10]


def _request(daemon, method: str, path: str, body: bytes = b"") -> tuple[int, dict[str, str],
                                                                         bytes]:
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(daemon.socket))
    head = f"{method} {path} HTTP/1.0\r\nHost: berth\r\nContent-Length: {len(body)}\r\n"
    if body:
        head += "Content-Type: application/x-tar\r\n"
    s.sendall(head.encode() + b"\r\n" + body)
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    header, _, payload = data.partition(b"\r\n\r\n")
    lines = header.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    return int(lines[0].split()[1]), headers, payload


@pytest.fixture()
def container(daemon) -> Iterator[str]:
    """A stopped container with hostile symlinks at /evil (-> /) and /up (-> ../../..), and a
    named volume at /vol."""
    name = f"cp-{_uid()}"
    daemon.out("run", "--name", name, "-v", f"{name}:/vol", "busybox", "sh", "-c",
               "ln -s / /evil && ln -s ../../.. /up && mkdir /tmp/in && ln -s /etc/hostname "
               "/tmp/in/hn")
    yield name
    daemon.cli("rm", "-f", "-v", name)
    daemon.cli("volume", "rm", "-f", name)


def _tree(root: Path) -> None:
    (root / "d" / "sub").mkdir(parents=True)
    (root / "d" / "run.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(root / "d" / "run.sh", 0o755)
    (root / "d" / "secret").write_bytes(os.urandom(70000))
    os.chmod(root / "d" / "secret", 0o600)
    (root / "d" / "sub" / "note").write_text("note\n")
    os.chmod(root / "d" / "sub" / "note", 0o640)
    os.chmod(root / "d" / "sub", 0o750)
    os.symlink("../run.sh", root / "d" / "sub" / "link")
    for p in (root / "d", root / "d" / "run.sh", root / "d" / "secret", root / "d" / "sub",
              root / "d" / "sub" / "note"):
        os.chown(p, 1234, 2345)
    os.lchown(root / "d" / "sub" / "link", 1234, 2345)


def _snapshot(root: Path, owners: bool) -> dict[str, tuple]:
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(dirpath, name)
            st = os.lstat(p)
            rel = str(p.relative_to(root))
            content = os.readlink(p) if stat.S_ISLNK(st.st_mode) else (
                p.read_bytes() if stat.S_ISREG(st.st_mode) else None)
            out[rel] = (st.st_mode, content) + ((st.st_uid, st.st_gid) if owners else ())
    return out


@pytest.mark.parametrize("running", [False, True], ids=["stopped", "running"])
def test_cp_round_trip_keeps_contents_modes_and_owners_with_a(daemon, container, tmp_path,
                                                             running):
    src = tmp_path / "src"
    _tree(src)
    if running:
        # the same container, now kept running
        daemon.out("rm", "-f", container)
        daemon.out("run", "-d", "--name", container, "-v", f"{container}:/vol", "busybox",
                   "sleep", "60")
    daemon.out("cp", "-a", str(src / "d"), f"{container}:/tree")
    daemon.out("cp", "-a", str(src / "d"), f"{container}:/vol/")
    back = tmp_path / "back"
    back.mkdir()
    daemon.out("cp", "-a", f"{container}:/tree", str(back / "d"))
    daemon.out("cp", "-a", f"{container}:/vol/d", str(back / "v"))
    assert _snapshot(back / "d", owners=True) == _snapshot(src / "d", owners=True)
    assert _snapshot(back / "v", owners=True) == _snapshot(src / "d", owners=True)
    # what the container itself sees
    check = daemon.out("run", "--rm", "--volumes-from", container, "busybox", "stat", "-c",
                       "%u:%g %a", "/vol/d/sub/note")
    assert check.strip() == "1234:2345 640"


def test_cp_without_a_copies_modes(daemon, container, tmp_path):
    src = tmp_path / "src"
    _tree(src)
    daemon.out("cp", str(src / "d"), f"{container}:/plain")
    back = tmp_path / "back"
    daemon.out("cp", f"{container}:/plain", str(back))
    snap_back = {k: v[:2] for k, v in _snapshot(back, owners=False).items()}
    assert snap_back == _snapshot(src / "d", owners=False)


def test_hostile_symlinks_stay_inside_the_container_on_write(daemon, container, tmp_path):
    marker = f"berth-cp-escape-{_uid()}"
    f = tmp_path / "payload"
    f.write_text("payload\n")
    for via in ("/evil/tmp", "/up/tmp", "/evil/../../tmp"):
        daemon.out("cp", str(f), f"{container}:{via}/{marker}")
        assert not os.path.lexists(f"/tmp/{marker}"), f"escaped through {via}"
    # the file landed in the container's own /tmp
    out = daemon.cli("cp", f"{container}:/tmp/{marker}", "-").stdout
    with tarfile.open(fileobj=io.BytesIO(out)) as tar:
        member = tar.extractfile(marker)
        assert member is not None and member.read() == b"payload\n"
    # a tar whose own entries climb or go through a symlink of its own
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        link = tarfile.TarInfo("hop")
        link.type, link.linkname = tarfile.SYMTYPE, "/"
        tar.addfile(link)
        for name in (f"hop/tmp/{marker}-2", f"up/tmp/{marker}-3"):
            data = tarfile.TarInfo(name)
            data.size = 2
            tar.addfile(data, io.BytesIO(b"x\n"))
    daemon.out("cp", "-", f"{container}:/tmp/in", input=buf.getvalue())
    for suffix in ("-2", "-3"):
        assert not os.path.lexists(f"/tmp/{marker}{suffix}")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = tarfile.TarInfo(f"../../../../tmp/{marker}-4")
        data.size = 2
        tar.addfile(data, io.BytesIO(b"x\n"))
    daemon.cli("cp", "-", f"{container}:/tmp/in", input=buf.getvalue())
    assert not os.path.lexists(f"/tmp/{marker}-4")


def test_hostile_symlinks_stay_inside_the_container_on_read(daemon, container, tmp_path):
    marker = tmp_path / f"host-only-{_uid()}"
    marker.write_text("host secret\n")
    for via in ("/evil", "/up", "/evil/../.."):
        proc = daemon.cli("cp", f"{container}:{via}{marker}", str(tmp_path / "out"))
        assert proc.returncode == 1
        assert "Could not find the file" in proc.stderr.decode()
    assert not (tmp_path / "out").exists()
    # through a symlink, the container's own file is read
    out = daemon.cli("cp", f"{container}:/evil/etc/hostname", "-").stdout
    with tarfile.open(fileobj=io.BytesIO(out)) as tar:
        assert tar.getnames() == ["hostname"]


def test_archive_head_and_get_describe_the_path(daemon, container):
    status, headers, _ = _request(daemon, "HEAD", f"/containers/{container}/archive?path=/evil")
    assert status == 200
    info = json.loads(base64.b64decode(headers["x-docker-container-path-stat"]))
    assert info["name"] == "evil" and info["linkTarget"] == "/"
    assert info["mode"] & (1 << 27)  # Go's os.ModeSymlink
    status, headers, _ = _request(daemon, "HEAD", f"/containers/{container}/archive?path=/vol")
    info = json.loads(base64.b64decode(headers["x-docker-container-path-stat"]))
    assert info["mode"] & (1 << 31) and info["linkTarget"] == ""
    status, _, _ = _request(daemon, "HEAD", f"/containers/{container}/archive?path=/nope")
    assert status == 404
    status, _, body = _request(daemon, "GET", f"/containers/{container}/archive?path=/nope")
    assert status == 404
    assert json.loads(body)["message"] == f"Could not find the file /nope in container {container}"


def test_put_refuses_to_replace_a_directory_with_a_file(daemon, container):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = tarfile.TarInfo("in")
        data.size = 2
        tar.addfile(data, io.BytesIO(b"x\n"))
    status, _, body = _request(daemon, "PUT", f"/containers/{container}/archive?path=/tmp"
                               "&noOverwriteDirNonDir=true", buf.getvalue())
    assert status == 400
    assert "cannot overwrite directory" in json.loads(body)["message"]
    status, _, body = _request(daemon, "PUT", f"/containers/{container}/archive?path=/nope",
                               buf.getvalue())
    assert status == 404


def test_cp_follow_link(daemon, container, tmp_path):
    daemon.out("cp", f"{container}:/tmp/in/hn", str(tmp_path / "asis"))
    assert (tmp_path / "asis").is_symlink()
    daemon.out("cp", "-L", f"{container}:/tmp/in/hn", str(tmp_path / "followed"))
    assert (tmp_path / "followed").is_file() and not (tmp_path / "followed").is_symlink()


def test_trailing_slash_destinations_as_docker(daemon, container, tmp_path):
    """docker 28 CLI + dockerd 20.10.24: a file cannot create the directory `dir/` asks for
    (the CLI says `no such directory`); a directory can; a missing parent is the daemon's 404."""
    src = tmp_path / "f"
    src.write_text("x\n")
    proc = daemon.cli("cp", str(src), f"{container}:/nonexistdir/sub/")
    assert (proc.returncode, proc.stderr.decode()) == (1, "no such directory\n")
    proc = daemon.cli("cp", str(src), f"{container}:/nonexistdir/")
    assert (proc.returncode, proc.stderr.decode()) == (1, "no such directory\n")
    proc = daemon.cli("cp", str(src), f"{container}:/nonexistdir/file")
    assert proc.returncode == 1
    assert proc.stderr.decode() == ("Error response from daemon: Could not find the file "
                                    f"/nonexistdir in container {container}\n")
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a").write_text("a\n")
    daemon.out("cp", str(tree), f"{container}:/newdir/")
    assert daemon.out("cp", f"{container}:/newdir/a", str(tmp_path / "back")) == ""
    assert (tmp_path / "back").read_text() == "a\n"
