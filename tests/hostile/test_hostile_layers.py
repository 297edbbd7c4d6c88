"""Hostile image archives through ``POST /images/load``: refused with a clear 4xx (or, where
Docker accepts the entry, confined to the layer), the host untouched, the store unchanged."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest
from tests.hostile.conftest import listing
from tests.support.image_archives import config_json, docker_archive

pytestmark = pytest.mark.usefixtures("daemon")


def entry(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"pwned\n", *,
          linkname: str = "", major: int = 0, minor: int = 0) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = 0o644
    info.linkname = linkname
    info.devmajor, info.devminor = major, minor
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data


def layer(*entries: tuple[tarfile.TarInfo, bytes], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def busybox() -> list[tuple[tarfile.TarInfo, bytes]]:
    """Entries giving a layer its own static busybox, so the hostile image can run."""
    info, data = entry("bin/busybox", data=Path("/bin/busybox").read_bytes())
    info.mode = 0o755
    links = [entry(f"bin/{tool}", tarfile.SYMTYPE, b"", linkname="busybox")
             for tool in ("cat", "head", "sh")]
    return [entry("bin/", tarfile.DIRTYPE, b""), (info, data), *links]


def archive(layer_tar: bytes, tag: str) -> bytes:
    return docker_archive([(config_json([layer_tar], cmd=["sh"]), [layer_tar], [tag])]).build()


@pytest.fixture()
def victim(tmp_path: Path) -> Path:
    """A host directory hostile entries aim at; it must look the same afterwards."""
    d = tmp_path / "host"
    d.mkdir()
    (d / "victim").write_text("original\n")
    return d


def assert_host_untouched(victim: Path) -> None:
    assert sorted(os.listdir(victim)) == ["victim"]
    assert (victim / "victim").read_text() == "original\n"
    assert os.stat(victim / "victim").st_nlink == 1


def load(api, data: bytes) -> tuple[int, bytes]:
    return api("POST", "/v1.41/images/load?quiet=1", raw=data,
               headers={"Content-Type": "application/x-tar"})


def refused(status: int, body: bytes) -> bool:
    """Docker streams the error inside a 200 for load; either form is a clear refusal."""
    return 400 <= status < 500 or (status == 200 and b'"error' in body)


def up(victim: Path) -> str:
    return "../" * 12 + str(victim).lstrip("/")


REFUSED = {
    "dotdot-file": lambda v: layer(entry(up(v) + "/pwned")),
    "dotdot-dir": lambda v: layer(entry(up(v) + "/sub/", tarfile.DIRTYPE, b"")),
    "hardlink-out": lambda v: layer(entry("hl", tarfile.LNKTYPE, b"", linkname=up(v) + "/victim")),
    "hardlink-abs-host": lambda v: layer(
        entry("hl", tarfile.LNKTYPE, b"", linkname=str(v / "victim"))),
    "symlink-climb-then-write": lambda v: layer(
        entry("esc", tarfile.SYMTYPE, b"", linkname=up(v)), entry("esc/pwned")),
    "huge-name": lambda v: layer(entry("a" * 70000)),
    "truncated-data": lambda v: layer(entry("f", data=b"x" * 4096))[:1024],
    "garbage-header": lambda v: b"\x01" * 1024 + layer(entry("f")),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_hostile_layer_is_refused_and_store_unchanged(daemon, api, victim, case):
    before = listing(daemon.data_root)
    images_before = daemon.out("images", "-q", "--no-trunc")
    status, body = load(api, archive(REFUSED[case](victim), f"hostile-{case}:v1"))
    assert refused(status, body), (status, body)
    assert status < 500, body
    assert_host_untouched(victim)
    assert listing(daemon.data_root) == before
    assert daemon.out("images", "-q", "--no-trunc") == images_before


CONFINED = {
    # Docker joins an absolute name onto the layer root: it lands inside the layer.
    "absolute-file": lambda v: layer(*busybox(), entry(str(v / "pwned"))),
    # A symlink to an absolute path is resolved against the layer root while unpacking.
    "symlink-abs-then-write": lambda v: layer(
        *busybox(), entry("link", tarfile.SYMTYPE, b"", linkname=str(v)), entry("link/pwned")),
}


@pytest.mark.parametrize("case", sorted(CONFINED))
def test_absolute_paths_stay_inside_the_layer(daemon, api, victim, case):
    tag = f"hostile-{case}:v1"
    status, body = load(api, archive(CONFINED[case](victim), tag))
    try:
        assert_host_untouched(victim)
        if status == 200 and b'"error' not in body:
            out = daemon.out("run", "--rm", tag, "cat", str(victim / "pwned"))
            assert out == "pwned\n"
        else:
            assert 400 <= status < 500 or status == 200, body
    finally:
        daemon.cli("rmi", "-f", tag)
    assert_host_untouched(victim)


def test_device_node_in_a_layer_is_unusable_in_the_container(daemon, api):
    # /dev/mem's numbers (c 1:1): the layer may carry the node, the device cgroup forbids it.
    tag = "hostile-devnode:v1"
    data = layer(*busybox(), entry("mem", tarfile.CHRTYPE, b"", major=1, minor=1),
                 entry("sda", tarfile.BLKTYPE, b"", major=8, minor=0))
    status, body = load(api, archive(data, tag))
    try:
        if status != 200 or b'"error' in body:
            assert 400 <= status < 500 or status == 200, body
            return
        for node in ("/mem", "/sda"):
            proc = daemon.cli("run", "--rm", tag, "head", "-c", "1", node)
            assert proc.returncode != 0
            assert b"Operation not permitted" in proc.stderr, proc.stderr
    finally:
        daemon.cli("rmi", "-f", tag)


def test_huge_pax_header_is_bounded(daemon, api, victim):
    # A 16 MiB PAX record: refused or handled, but never a 5xx or a dead daemon.
    info, data = entry("f")
    info.pax_headers = {"comment": "x" * (16 << 20)}
    before = listing(daemon.data_root)
    status, body = load(api, archive(layer((info, data)), "hostile-pax:v1"))
    try:
        assert status < 500, body
        assert daemon.cli("version").returncode == 0
    finally:
        daemon.cli("rmi", "-f", "hostile-pax:v1")
    if refused(status, body):
        assert listing(daemon.data_root) == before


@pytest.mark.parametrize("link", ["abs", "rel"])
def test_cp_through_container_symlinks_stays_inside(daemon, api, victim, tmp_path, link):
    """``cp`` into and out of a container through a symlink aimed at the host: both ends are
    resolved inside the container's root, as Docker does."""
    target = str(victim) if link == "abs" else up(victim)
    tag = f"hostile-cplink-{link}:v1"
    status, body = load(api, archive(layer(*busybox(), entry(
        "esc", tarfile.SYMTYPE, b"", linkname=target)), tag))
    if link == "rel":
        # Docker refuses a layer symlink that climbs out; nothing to copy through then.
        assert refused(status, body) and status < 500, body
        return
    assert status == 200 and b'"error' not in body, body
    cid = daemon.out("create", tag, "sh").strip()
    try:
        src = tmp_path / "pwned"
        src.write_text("pwned\n")
        proc = daemon.cli("cp", str(src), f"{cid}:/esc/pwned")
        assert_host_untouched(victim)
        if proc.returncode == 0:
            # it landed in the container's own copy of that path
            out = tmp_path / "back"
            daemon.out("cp", f"{cid}:{victim}/pwned", str(out))
            assert out.read_text() == "pwned\n"
        # reading through the link never returns the host's file
        proc = daemon.cli("cp", f"{cid}:/esc/victim", str(tmp_path / "stolen"))
        assert proc.returncode != 0
        assert not (tmp_path / "stolen").exists()
    finally:
        daemon.cli("rm", "-f", cid)
        daemon.cli("rmi", "-f", tag)
    assert_host_untouched(victim)
