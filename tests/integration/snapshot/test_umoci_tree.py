"""Layers made by umoci, unpacked by LayerStore and mounted by overlay, equal `umoci unpack`."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest
from tests.support.images import DOCKER_DEFAULT_PATH, TestImages

from berth.oci.digest import ChainID, DiffID
from berth.snapshot.archive import write_diff
from berth.snapshot.layers import LayerStore
from berth.snapshot.mount import unmount
from berth.snapshot.overlay import prepare_rootfs, release_rootfs


def mounts_under(path: Path) -> list[str]:
    prefix = str(path)
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(prefix)]


@pytest.fixture()
def scratch(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    leaked = mounts_under(tmp_path)
    for target in reversed(leaked):
        unmount(Path(target), detach=True)
    assert leaked == []


def oci_layers(layout: Path) -> Iterator[tuple[DiffID, BinaryIO]]:
    """(diff ID, uncompressed stream) of each layer of ``layout:latest``, bottom first."""

    def blob(digest: str) -> Path:
        return layout / "blobs" / digest.replace(":", "/")

    index = json.loads((layout / "index.json").read_text())
    (desc,) = [
        m
        for m in index["manifests"]
        if m["annotations"]["org.opencontainers.image.ref.name"] == "latest"
    ]
    manifest = json.loads(blob(desc["digest"]).read_text())
    config = json.loads(blob(manifest["config"]["digest"]).read_text())
    for diff_id, layer in zip(config["rootfs"]["diff_ids"], manifest["layers"], strict=True):
        assert layer["mediaType"].endswith("tar+gzip")
        with gzip.open(blob(layer["digest"]), "rb") as stream:
            yield DiffID(diff_id), stream  # type: ignore[misc]


def docker_layers(archive: Path) -> Iterator[tuple[DiffID, BinaryIO]]:
    with tarfile.open(archive) as tar:
        member = tar.extractfile("manifest.json")
        assert member is not None
        (manifest,) = json.load(member)
        for name in manifest["Layers"]:
            data = tar.extractfile(name)
            assert data is not None
            raw = data.read()
            yield DiffID("sha256:" + hashlib.sha256(raw).hexdigest()), io.BytesIO(raw)


def apply_all(store: LayerStore, layers: Iterator[tuple[DiffID, BinaryIO]]) -> ChainID:
    parent: ChainID | None = None
    for diff_id, stream in layers:
        parent = store.apply_layer(parent, diff_id, stream)
    assert parent is not None
    return parent


def tree(root: Path, *, layer_fidelity: bool = False) -> dict[str, tuple[object, ...]]:
    """Per path: type, mode, owner, content or link target, hard link group, user xattrs, mtime.

    ``layer_fidelity``: only what a Docker layer carries (mtimes in seconds, no user xattrs).
    """
    entries: dict[str, tuple[object, ...]] = {}
    groups: dict[int, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            path = Path(dirpath, name)
            rel = str(path.relative_to(root))
            st = os.lstat(path)
            what: object = None
            if stat.S_ISREG(st.st_mode):
                what = hashlib.sha256(path.read_bytes()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                what = os.readlink(path)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                what = st.st_rdev
            group = rel if stat.S_ISDIR(st.st_mode) else groups.setdefault(st.st_ino, rel)
            user_xattrs = tuple(
                sorted(
                    (x, os.getxattr(path, x, follow_symlinks=False))
                    for x in os.listxattr(path, follow_symlinks=False)
                    if x.startswith("user.") and not layer_fidelity
                )
            )
            mtime = None if stat.S_ISDIR(st.st_mode) else st.st_mtime_ns
            if layer_fidelity and mtime is not None:
                mtime //= 10**9
            entries[rel] = (
                stat.S_IFMT(st.st_mode),
                stat.S_IMODE(st.st_mode),
                st.st_uid,
                st.st_gid,
                what,
                group,
                user_xattrs,
                mtime,
            )
    return dict(sorted(entries.items()))


def umoci_unpack(layout: Path, bundle: Path) -> Path:
    subprocess.run(
        ["umoci", "unpack", "--image", f"{layout}:latest", str(bundle)],
        check=True,
        capture_output=True,
    )
    return bundle / "rootfs"


def test_layered_image_matches_umoci_unpack(snapshot_images: TestImages, scratch: Path) -> None:
    store = LayerStore(scratch / "layers", durable=False)
    top = apply_all(store, oci_layers(snapshot_images.layered_oci_dir))
    assert len(store.lower_dirs(top)) == 5
    expected = tree(umoci_unpack(snapshot_images.layered_oci_dir, scratch / "bundle"))
    rootfs = prepare_rootfs(store.lower_dirs(top), scratch / "ctr")
    try:
        actual = tree(rootfs)
    finally:
        release_rootfs(scratch / "ctr", remove=True)
    assert list(actual) == list(expected)
    assert actual == expected
    # the cases the image was made for, spelled out
    assert "data/keep/gone.txt" not in actual and "data/gone-dir" not in actual
    assert "etc/hostname" not in actual and "bin/vi" not in actual
    assert [p for p in actual if p.startswith("data/dir/")] == [
        "data/dir/nested",
        "data/dir/fresh",
        "data/dir/nested/deep",
    ] or sorted(p for p in actual if p.startswith("data/dir/")) == [
        "data/dir/fresh",
        "data/dir/nested",
        "data/dir/nested/deep",
    ]
    assert actual["data/file-hardlink"][5] == actual["data/file"][5]
    assert actual["data/special"][1:4] == (0o4750, 1234, 5678)
    assert actual["data/special"][6] == (("user.berth.test", b"value"),)


def test_docker_archive_layers_give_the_same_chain(
    snapshot_images: TestImages, scratch: Path
) -> None:
    oci = LayerStore(scratch / "oci", durable=False)
    docker = LayerStore(scratch / "docker", durable=False)
    top = apply_all(oci, oci_layers(snapshot_images.layered_oci_dir))
    assert apply_all(docker, docker_layers(snapshot_images.layered_docker_tar)) == top
    for a, b in zip(oci.lower_dirs(top), docker.lower_dirs(top), strict=True):
        assert tree(a) == tree(b)


def test_busybox_image_runs(snapshot_images: TestImages, scratch: Path) -> None:
    store = LayerStore(scratch / "layers", durable=False)
    top = apply_all(store, docker_layers(snapshot_images.busybox_docker_tar))
    rootfs = prepare_rootfs(store.lower_dirs(top), scratch / "ctr", volatile=True)
    try:
        assert stat.S_IMODE((rootfs / "tmp").stat().st_mode) == 0o1777
        assert os.readlink(rootfs / "bin/sh") == "busybox"
        assert "nobody:x:65534:65534:" in (rootfs / "etc/passwd").read_text()

        def run(*argv: str) -> subprocess.CompletedProcess[str]:
            env = {"PATH": DOCKER_DEFAULT_PATH, "FOO": "bar baz"}
            return subprocess.run(
                ["chroot", str(rootfs), *argv], capture_output=True, text=True, env=env
            )

        assert run("sh", "-c", "echo hello > /tmp/x && cat /tmp/x").stdout == "hello\n"
        assert run("printenv", "FOO").stdout == "bar baz\n"
        missing = run("printenv", "NOPE")
        assert (missing.returncode, missing.stdout) == (1, "")
        assert "FOO=bar baz" in run("printenv").stdout.splitlines()
    finally:
        release_rootfs(scratch / "ctr", remove=True)


def test_changes_on_the_real_image_round_trip(snapshot_images: TestImages, scratch: Path) -> None:
    store = LayerStore(scratch / "layers", durable=False)
    top = apply_all(store, oci_layers(snapshot_images.layered_oci_dir))
    rootfs = prepare_rootfs(store.lower_dirs(top), scratch / "one", volatile=True)
    try:
        subprocess.run(
            ["chroot", str(rootfs), "/bin/sh", "-c",
             "rm -rf /data/dir /bin/ls && mkdir /data/dir && echo z > /data/dir/z"
             " && ln /data/special /data/special2 && chmod 700 /data/sticky"],
            check=True,
        )  # fmt: skip
        # a layer keeps mtimes in seconds and no xattr but security.capability, as Docker's
        expected = tree(rootfs, layer_fidelity=True)
        diff = io.BytesIO()
        write_diff(scratch / "one/upper", diff)
    finally:
        release_rootfs(scratch / "one", remove=True)
    data = diff.getvalue()
    new_top = store.apply_layer(top, DiffID("sha256:" + hashlib.sha256(data).hexdigest()),
                                io.BytesIO(data))  # fmt: skip
    rootfs = prepare_rootfs(store.lower_dirs(new_top), scratch / "two", volatile=True)
    try:
        assert tree(rootfs, layer_fidelity=True) == expected
    finally:
        release_rootfs(scratch / "two", remove=True)
