"""Volumes, bind mounts and their lifetimes, end to end through the CLI and the Engine API."""

from __future__ import annotations

import io
import json
import socket
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("daemon")


def _uid() -> str:
    return uuid.uuid4().hex[:10]


def api(daemon, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    """One raw Engine API request over the daemon's socket (status, body)."""
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(daemon.socket))
    head = f"{method} {path} HTTP/1.0\r\nHost: berth\r\n"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    s.sendall(head.encode() + b"\r\n" + (body or b""))
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    header, _, payload = data.partition(b"\r\n\r\n")
    return int(header.split()[1]), payload


@pytest.fixture()
def cleanup(daemon) -> Iterator[dict[str, list[str]]]:
    """Containers and volumes a test names here are removed afterwards, pass or fail."""
    made: dict[str, list[str]] = {"containers": [], "volumes": []}
    yield made
    if made["containers"]:
        daemon.cli("rm", "-f", "-v", *made["containers"])
    if made["volumes"]:
        daemon.cli("volume", "rm", "-f", *made["volumes"])


def _rootfs_tar(path: Path, volume_files: bool = True) -> None:
    """A tiny image rootfs: static busybox, its applets, and /data with owned files."""
    def add(tar, name, data=None, mode=0o644, uid=0, gid=0, kind=tarfile.REGTYPE, link=""):
        info = tarfile.TarInfo(name)
        info.mode, info.uid, info.gid, info.type, info.linkname = mode, uid, gid, kind, link
        if data is None:
            tar.addfile(info)
        else:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

    with tarfile.open(path, "w") as tar:
        add(tar, "bin", mode=0o755, kind=tarfile.DIRTYPE)
        add(tar, "bin/busybox", Path("/bin/busybox").read_bytes(), mode=0o755)
        for applet in ("sh", "ls", "cat", "echo", "stat", "touch", "true", "wc", "sleep"):
            add(tar, f"bin/{applet}", kind=tarfile.SYMTYPE, link="busybox")
        if volume_files:
            add(tar, "data", mode=0o750, uid=1000, gid=1001, kind=tarfile.DIRTYPE)
            add(tar, "data/hello", b"hello from the image\n", mode=0o640, uid=1000, gid=1001)
            add(tar, "data/sub", mode=0o755, kind=tarfile.DIRTYPE)
            add(tar, "data/sub/link", kind=tarfile.SYMTYPE, link="../hello")


@pytest.fixture(scope="module")
def volume_image(daemon, tmp_path_factory) -> Iterator[str]:
    """An image with ``VOLUME /data`` and files under /data (made with ``import --change``)."""
    tar = tmp_path_factory.mktemp("volimg") / "rootfs.tar"
    _rootfs_tar(tar)
    name = f"volimg-{_uid()}:1"
    daemon.out("import", "-c", "VOLUME /data", "-c", 'CMD ["sh"]', str(tar), name)
    yield name
    daemon.cli("rmi", "-f", name)


def _volume_names(daemon) -> set[str]:
    return set(daemon.out("volume", "ls", "-q").split())


def _mounts(daemon, ref: str) -> list[dict]:
    return json.loads(daemon.out("inspect", "-f", "{{json .Mounts}}", ref))


# -- volumes in containers ------------------------------------------------------------------

def test_named_volume_outlives_its_container(daemon, cleanup):
    vol = f"data-{_uid()}"
    cleanup["volumes"].append(vol)
    daemon.out("run", "--name", f"w-{vol}", "-v", f"{vol}:/data", "busybox",
               "sh", "-c", "echo kept > /data/file")
    daemon.out("rm", f"w-{vol}")
    assert vol in _volume_names(daemon)
    assert daemon.out("run", "--rm", "-v", f"{vol}:/data", "busybox", "cat",
                      "/data/file") == "kept\n"


def test_database_rows_survive_a_new_container(daemon, cleanup):
    """The issue's scenario with a shell writer: rows appended by one container are all read
    by the next one."""
    vol = f"db-{_uid()}"
    cleanup["volumes"].append(vol)
    writer = "for i in 1 2 3; do echo \"row $i\" >> /var/lib/db/table; done"
    daemon.out("run", "--rm", "-v", f"{vol}:/var/lib/db", "busybox", "sh", "-c", writer)
    daemon.out("run", "--rm", "-v", f"{vol}:/var/lib/db", "busybox", "sh", "-c",
               "echo 'row 4' >> /var/lib/db/table")
    rows = daemon.out("run", "--rm", "-v", f"{vol}:/var/lib/db:ro", "busybox", "cat",
                      "/var/lib/db/table")
    assert rows.splitlines() == ["row 1", "row 2", "row 3", "row 4"]


def test_image_volume_is_seeded_and_removed_by_rm_v(daemon, cleanup, volume_image):
    name = f"seed-{_uid()}"
    cleanup["containers"].append(name)
    out = daemon.out("run", "--name", name, volume_image, "sh", "-c",
                     "cat /data/hello; stat -c '%u:%g %a' /data /data/hello; "
                     "cat /data/sub/link")
    assert out.splitlines() == ["hello from the image", "1000:1001 750", "1000:1001 640",
                                "hello from the image"]
    (mount,) = _mounts(daemon, name)
    assert mount["Type"] == "volume" and mount["Destination"] == "/data"
    assert len(mount["Name"]) == 64 and mount["RW"] is True and mount["Driver"] == "local"
    assert mount["Name"] in _volume_names(daemon)
    daemon.out("rm", "-v", name)
    assert mount["Name"] not in _volume_names(daemon)


def test_nocopy_leaves_the_volume_empty(daemon, cleanup, volume_image):
    vol = f"nocopy-{_uid()}"
    cleanup["volumes"].append(vol)
    out = daemon.out("run", "--rm", "-v", f"{vol}:/data:nocopy", volume_image, "ls", "-A",
                     "/data")
    assert out == ""
    out = daemon.out("run", "--rm", "--mount", f"type=volume,src={vol}x,dst=/data,volume-nocopy",
                     volume_image, "ls", "-A", "/data")
    cleanup["volumes"].append(f"{vol}x")
    assert out == ""


def test_case_029_anonymous_volumes_go_with_rm_v_and_run_rm(daemon, cleanup, volume_image):
    """Case 029: the image's VOLUME and ``-v /path`` get anonymous volumes that ``rm`` keeps and
    ``rm -v`` / ``run --rm`` remove; a named volume stays, and cannot be removed while used."""
    named = f"named-{_uid()}"
    cleanup["volumes"].append(named)
    a = f"c029a-{_uid()}"
    cleanup["containers"].append(a)
    cid = daemon.out("create", "--name", a, "-v", f"{named}:/named", "-v", "/explicit",
                     volume_image, "true").strip()
    anon = sorted(m["Name"] for m in _mounts(daemon, a) if m["Name"] != named)
    assert len(anon) == 2
    assert all(len(n) == 64 and set(n) <= set("0123456789abcdef") for n in anon)
    proc = daemon.cli("volume", "rm", named)
    assert proc.returncode == 1
    assert proc.stderr.decode().strip() == (
        f"Error response from daemon: remove {named}: volume is in use - [{cid}]")
    daemon.out("rm", a)
    assert set(anon) | {named} <= _volume_names(daemon)  # plain rm keeps them all
    daemon.out("volume", "rm", *anon)

    v = f"c029v-{_uid()}"
    cleanup["containers"].append(v)
    daemon.out("create", "--name", v, "-v", f"{named}:/named", "-v", "/explicit",
               volume_image, "true")
    anon_v = {m["Name"] for m in _mounts(daemon, v) if m["Name"] != named}
    daemon.out("rm", "-v", v)
    names = _volume_names(daemon)
    assert not anon_v & names and named in names  # rm -v: only the anonymous ones go

    b = f"c029b-{_uid()}"
    cleanup["containers"].append(b)
    daemon.out("run", "-d", "--rm", "--name", b, "-v", f"{named}:/named", "-v", "/explicit",
               volume_image, "sleep", "1")
    anon_b = {m["Name"] for m in _mounts(daemon, b) if m["Name"] != named}
    assert len(anon_b) == 2
    daemon.cli("wait", b)
    deadline = time.monotonic() + 10
    while anon_b & _volume_names(daemon) and time.monotonic() < deadline:
        time.sleep(0.1)
    names = _volume_names(daemon)
    assert not anon_b & names
    assert named in names


def test_volumes_from_shares_and_does_not_remove(daemon, cleanup):
    src, dst = f"vf1-{_uid()}", f"vf2-{_uid()}"
    cleanup["containers"].extend([src, dst])
    daemon.out("create", "--name", src, "-v", "/shared", "busybox", "true")
    (anon,) = [m["Name"] for m in _mounts(daemon, src)]
    out = daemon.out("run", "--name", dst, "--volumes-from", f"{src}:ro", "busybox", "sh", "-c",
                     "touch /shared/x 2>&1; echo $?")
    assert "Read-only file system" in out
    assert _mounts(daemon, dst)[0]["Name"] == anon
    daemon.out("rm", "-v", dst)
    assert anon in _volume_names(daemon)  # still used by src, and inherited anyway
    daemon.out("rm", "-v", src)
    assert anon not in _volume_names(daemon)


def test_read_only_root_keeps_volumes_writable(daemon, cleanup):
    vol = f"ro-{_uid()}"
    cleanup["volumes"].append(vol)
    proc = daemon.cli("run", "--rm", "--read-only", "-v", f"{vol}:/data", "--tmpfs", "/run",
                      "busybox", "sh", "-c",
                      "touch /x 2>&1; echo root=$?; echo ok > /data/y && cat /data/y; "
                      "touch /run/t && echo tmpfs=ok")
    out = proc.stdout.decode()
    assert "Read-only file system" in out
    assert "root=1" in out
    assert "ok\ntmpfs=ok" in out


def test_bind_mounts(daemon, cleanup, tmp_path):
    host = tmp_path / "bind"
    host.mkdir()
    (host / "f").write_text("from host\n")
    out = daemon.out("run", "--rm", "-v", f"{host}:/b:ro", "busybox", "sh", "-c",
                     "cat /b/f; touch /b/new 2>&1; echo rc=$?")
    assert out.startswith("from host\n") and "rc=1" in out
    daemon.out("run", "--rm", "-v", f"{host}:/b", "busybox", "sh", "-c", "echo w > /b/new")
    assert (host / "new").read_text() == "w\n"
    created = tmp_path / "made" / "by" / "v"
    daemon.out("run", "--rm", "-v", f"{created}:/m", "busybox", "true")
    assert created.is_dir()  # -v creates a missing source, as Docker


def test_mount_refuses_a_missing_bind_source(daemon, tmp_path):
    missing = tmp_path / "nope"
    proc = daemon.cli("run", "--rm", "--mount", f"type=bind,source={missing},target=/x",
                      "busybox", "true")
    assert proc.returncode == 125
    assert (f'invalid mount config for type "bind": bind source path does not exist: '
            f"{missing}") in proc.stderr.decode()
    assert not missing.exists()


def test_bind_of_a_file_onto_a_directory_is_a_clear_error(daemon, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    proc = daemon.cli("run", "--rm", "-v", f"{f}:/etc", "busybox", "true")
    assert proc.returncode != 0
    err = proc.stderr.decode()
    assert "not a directory" in err and "Are you trying to mount" in err


def test_tmpfs_mount_with_size(daemon):
    out = daemon.out("run", "--rm", "--mount", "type=tmpfs,target=/t,tmpfs-size=1m", "busybox",
                     "sh", "-c", "grep ' /t ' /proc/mounts")
    assert "tmpfs /t tmpfs" in out and "size=1024k" in out


# -- the volume API -------------------------------------------------------------------------

def test_bad_volume_name_is_dockers_error(daemon):
    proc = daemon.cli("volume", "create", "bad/name")
    assert proc.returncode == 1
    assert proc.stderr.decode().strip() == (
        'Error response from daemon: create bad/name: "bad/name" includes invalid characters '
        'for a local volume name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you '
        "intended to pass a host directory, use absolute path")
    proc = daemon.cli("run", "--rm", "-v", "bad@name:/x", "busybox", "true")
    assert proc.returncode == 125
    assert '"bad@name" includes invalid characters for a local volume name' in \
        proc.stderr.decode()


def test_remove_in_use_volume_is_409_with_the_container_id(daemon, cleanup):
    vol = f"inuse-{_uid()}"
    cleanup["volumes"].append(vol)
    name = f"user-{vol}"
    cleanup["containers"].append(name)
    cid = daemon.out("create", "--name", name, "-v", f"{vol}:/d", "busybox", "true").strip()
    assert daemon.out("ps", "-aq", "--no-trunc", "--filter", f"volume={vol}").split() == [cid]
    status, body = api(daemon, "DELETE", f"/v1.41/volumes/{vol}")
    assert status == 409
    assert json.loads(body) == {"message": f"remove {vol}: volume is in use - [{cid}]"}
    status, _ = api(daemon, "DELETE", f"/v1.41/volumes/{vol}?force=1")
    assert status == 409
    daemon.out("rm", name)
    status, _ = api(daemon, "DELETE", f"/v1.41/volumes/{vol}")
    assert status == 204


def test_volume_api_shapes_filters_and_prune(daemon, cleanup):
    vol = f"api-{_uid()}"
    cleanup["volumes"].extend([vol, vol + "b"])
    status, body = api(daemon, "POST", "/volumes/create", json.dumps(
        {"Name": vol, "Labels": {"team": "a"}}).encode())
    assert status == 201
    doc = json.loads(body)
    assert set(doc) == {"CreatedAt", "Driver", "Labels", "Mountpoint", "Name", "Options",
                        "Scope"}
    assert doc["Driver"] == "local" and doc["Scope"] == "local" and doc["Labels"] == {"team": "a"}
    assert doc["Mountpoint"].endswith(f"/volumes/{vol}/_data")
    assert Path(doc["Mountpoint"]).is_dir()
    daemon.out("volume", "create", "--opt", "type=tmpfs", "--opt", "device=tmpfs",
               "--opt", "o=size=1m", vol + "b")
    status, body = api(daemon, "GET", "/volumes")
    listing = json.loads(body)
    assert listing["Warnings"] is None
    assert {vol, vol + "b"} <= {v["Name"] for v in listing["Volumes"]}
    assert daemon.out("volume", "ls", "-q", "--filter", "label=team=a").split() == [vol]
    assert daemon.out("volume", "ls", "-q", "--filter", f"name={vol}b").split() == [vol + "b"]
    assert vol in daemon.out("volume", "ls", "-q", "--filter", "dangling=true").split()
    assert daemon.cli("volume", "inspect", "nosuchvolume-x").returncode == 1
    # a tmpfs volume works and goes away with prune
    out = daemon.out("run", "--rm", "-v", f"{vol}b:/t", "busybox", "sh", "-c",
                     "grep ' /t ' /proc/mounts")
    assert "tmpfs" in out
    status, body = api(daemon, "POST", "/volumes/prune?filters=" +
                       '%7B%22label%22%3A%5B%22team%3Da%22%5D%7D')
    assert status == 200
    assert json.loads(body)["VolumesDeleted"] == [vol]
    daemon.out("volume", "rm", vol + "b")
    assert not ({vol, vol + "b"} & _volume_names(daemon))


def test_unknown_volume_is_404(daemon):
    status, body = api(daemon, "GET", "/volumes/no-such-volume-here")
    assert status == 404
    assert json.loads(body)["message"] == "get no-such-volume-here: no such volume"


def test_local_bind_volume_writes_through_and_rm_keeps_host_data(daemon, cleanup, tmp_path):
    vol = f"bindvol-{_uid()}"
    cleanup["volumes"].append(vol)
    host = tmp_path / "device"
    host.mkdir()
    (host / "pre").write_text("pre\n")
    daemon.out("volume", "create", "--opt", "type=none", "--opt", f"device={host}",
               "--opt", "o=bind", vol)
    out = daemon.out("run", "--rm", "-v", f"{vol}:/d", "busybox", "sh", "-c",
                     "cat /d/pre; echo new > /d/new")
    assert out == "pre\n"
    assert (host / "new").read_text() == "new\n"
    daemon.out("volume", "rm", vol)
    assert sorted(p.name for p in host.iterdir()) == ["new", "pre"]  # the user's data stays
