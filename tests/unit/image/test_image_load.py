"""docker load and save: the layouts Docker and OCI tools write; all or nothing on bad input."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest
from tests.support.image_archives import (
    config_json,
    docker_archive,
    layer_tar,
    listing,
    make_store,
    oci_layout,
    sha,
)

from berth.errors import DigestMismatch, InvalidArgument, UnsafeArchive
from berth.image.store import ImageStore
from berth.oci.digest import chain_ids

BASE = layer_tar({"bin/": None, "bin/sh": b"#!shell\n" * 100, "etc/": None, "etc/os": b"x\n"})
TOP = layer_tar({"etc/": None, "etc/motd": b"hello\n", "etc/.wh.os": b""})
CONFIG = config_json([BASE, TOP], cmd=["sh"])
IMAGE_ID = sha(CONFIG)


def load(store: ImageStore, data: bytes) -> list[str]:
    return store.load(io.BytesIO(data))


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("gzip_layers", [False, True])
def test_load_docker_20_10_archive(store: ImageStore, compress: bool, gzip_layers: bool) -> None:
    archive = docker_archive(
        [(CONFIG, [BASE, TOP], ["busybox:latest", "example.com/a/b:1"])], gzip_layers=gzip_layers
    )
    lines = load(store, archive.build(compress))
    assert lines == ["Loaded image: busybox:latest", "Loaded image: example.com/a/b:1"]
    record = store.get("busybox")
    assert record.id == IMAGE_ID
    assert record.repo_tags == ("busybox:latest", "example.com/a/b:1")
    assert record.config.cmd == ("sh",)
    assert record.diff_ids == (sha(BASE), sha(TOP))
    assert record.created == "2024-01-02T03:04:05.123456789Z"
    assert record.created_unix == 1704164645
    chain = store.layer_chain(IMAGE_ID)
    assert chain == chain_ids([sha(BASE), sha(TOP)])  # type: ignore[list-item]
    layers = store._layers
    assert record.size == sum(layers.size(c) for c in chain) > 800
    top_diff = layers.diff_dir(chain[-1])  # type: ignore[attr-defined]
    assert (top_diff / "etc" / "motd").read_bytes() == b"hello\n"
    assert store.config_bytes(IMAGE_ID) == CONFIG


def test_identical_layers_are_linked_and_unpacked_once(store: ImageStore) -> None:
    same = layer_tar({"a": b"1"})
    config = config_json([same, same])
    archive = docker_archive([(config, [same, same], ["dup:1"])])
    assert any(e.issym() for e in archive.entries)
    assert load(store, archive.build()) == ["Loaded image: dup:1"]
    assert len(store.layer_chain("dup:1")) == 2


def test_untagged_image_reports_its_id(store: ImageStore) -> None:
    archive = docker_archive([(CONFIG, [BASE, TOP], [])])
    assert load(store, archive.build()) == [f"Loaded image ID: {IMAGE_ID}"]
    assert store.get(IMAGE_ID).repo_tags == ()


def test_loading_a_tag_held_by_another_image_moves_it(store: ImageStore) -> None:
    other = config_json([BASE], cmd=["other"])
    load(store, docker_archive([(other, [BASE], ["app:1"])]).build())
    lines = load(store, docker_archive([(CONFIG, [BASE, TOP], ["app:1"])]).build())
    assert lines == [
        f"The image app:1 already exists, renaming the old one with ID {sha(other)} "
        "to empty string",
        "Loaded image: app:1",
    ]
    assert store.get("app:1").id == IMAGE_ID
    assert store.get(sha(other)).repo_tags == ()


@pytest.mark.parametrize("gzip_layers", [True, False])
def test_load_oci_layout_keeps_the_manifest_bytes(store: ImageStore, gzip_layers: bool) -> None:
    layout, manifest = oci_layout(
        CONFIG, [BASE, TOP], ref_name="busybox:1.36", gzip_layers=gzip_layers
    )
    assert load(store, layout.build(compress=True)) == ["Loaded image: busybox:1.36"]
    record = store.get("busybox:1.36")
    assert record.id == IMAGE_ID
    assert record.manifest_digest == sha(manifest)
    assert store.manifest_bytes(IMAGE_ID) == manifest


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        ({"ref_name": "latest"}, [f"Loaded image ID: {IMAGE_ID}"]),
        (
            {"ref_name": "latest", "containerd_name": "docker.io/library/app:2"},
            ["Loaded image: app:2"],
        ),
        ({"ref_name": "localhost:5000/x"}, ["Loaded image: localhost:5000/x:latest"]),
        ({}, [f"Loaded image ID: {IMAGE_ID}"]),
    ],
)
def test_oci_layout_names(
    store: ImageStore, annotations: dict[str, str], expected: list[str]
) -> None:
    layout, _ = oci_layout(CONFIG, [BASE, TOP], **annotations)  # type: ignore[arg-type]
    assert load(store, layout.build()) == expected


def test_load_docker_25_archive(store: ImageStore) -> None:
    layout, manifest = oci_layout(
        CONFIG, [BASE, TOP], gzip_layers=False, docker_manifest_tags=["busybox:latest"]
    )
    assert load(store, layout.build()) == ["Loaded image: busybox:latest"]
    assert store.get("busybox").manifest_digest == sha(manifest)


def test_save_then_load_gives_the_same_image(store: ImageStore, tmp_path: Path) -> None:
    layout, _ = oci_layout(CONFIG, [BASE, TOP], ref_name="busybox:latest")
    load(store, layout.build())
    store.tag("busybox", "mine:v1")
    out = io.BytesIO()
    store.save(["busybox", "mine:v1"], out)

    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        names = tar.getnames()
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        repositories = json.loads(tar.extractfile("repositories").read())  # type: ignore[union-attr]
        first_layer = tar.extractfile(manifest[0]["Layers"][0]).read()  # type: ignore[union-attr]
    assert manifest[0]["Config"] == IMAGE_ID.split(":")[1] + ".json"
    assert manifest[0]["RepoTags"] == ["busybox:latest", "mine:v1"]
    assert first_layer == BASE  # uncompressed, byte for byte
    assert set(repositories) == {"busybox", "mine"}
    assert f"{IMAGE_ID.split(':')[1]}.json" in names

    other = make_store(tmp_path / "other")
    try:
        assert other.load(io.BytesIO(out.getvalue())) == [
            "Loaded image: busybox:latest",
            "Loaded image: mine:v1",
        ]
        assert other.get("mine:v1").id == IMAGE_ID
    finally:
        other.close()


def test_save_by_id_is_untagged(store: ImageStore) -> None:
    load(store, docker_archive([(CONFIG, [BASE, TOP], ["busybox:latest"])]).build())
    out = io.BytesIO()
    store.save([IMAGE_ID[7:19]], out)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert manifest[0]["RepoTags"] is None


# -- bad input leaves the store as it was ------------------------------------------------------


def _corrupt_variants() -> list[tuple[str, bytes, type[Exception], str]]:
    good = docker_archive([(CONFIG, [BASE, TOP], ["busybox:latest"])]).build()
    bad_diff = config_json([BASE, TOP], diff_ids=[sha(BASE), sha(b"not the top layer")])
    evil = layer_tar({"../escape": b"x"})
    layout, _ = oci_layout(CONFIG, [BASE, TOP], ref_name="x:1")
    tampered_name = next(
        n for n in layout.data if n.startswith("blobs/") and layout.data[n][:2] == b"\x1f\x8b"
    )
    layout.data[tampered_name] = gzip.compress(b"tampered")
    missing, _ = oci_layout(CONFIG, [BASE, TOP], ref_name="x:1")
    gone = next(
        n for n in missing.data if n.startswith("blobs/") and missing.data[n][:2] == b"\x1f\x8b"
    )
    missing.entries = [e for e in missing.entries if e.name != gone]
    short = docker_archive([(config_json([BASE]), [BASE, TOP], ["x:1"])]).build()
    return [
        ("not a tar", b"this is not an archive" * 50, InvalidArgument, "invalid archive"),
        ("truncated", good[: len(good) // 2], InvalidArgument, "invalid archive"),
        ("bad gzip", gzip.compress(good)[:200], InvalidArgument, "invalid archive"),
        (
            "empty tar",
            docker_archive([]).build()[:0] + _empty_tar(),
            InvalidArgument,
            "neither manifest.json",
        ),
        (
            "diff id mismatch",
            docker_archive([(bad_diff, [BASE, TOP], ["x:1"])]).build(),
            DigestMismatch,
            "does not match its diff ID",
        ),
        ("blob digest mismatch", layout.build(), DigestMismatch, "mismatch"),
        ("missing blob", missing.build(), InvalidArgument, "not found in the archive"),
        ("layer count", short, InvalidArgument, "layers length mismatch"),
        (
            "path escape",
            docker_archive([(config_json([BASE, evil]), [BASE, evil], ["x:1"])]).build(),
            UnsafeArchive,
            "escape|outside|\\.\\.",
        ),
    ]


def _empty_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w"):
        pass
    return buf.getvalue()


@pytest.mark.parametrize(
    ("what", "data", "error", "message"),
    _corrupt_variants(),
    ids=lambda v: v if isinstance(v, str) and len(v) < 30 else "",
)
def test_bad_archives_leave_the_store_unchanged(
    store: ImageStore, data_root: Path, what: str, data: bytes, error: type[Exception], message: str
) -> None:
    # something already there, sharing the base layer, must survive untouched
    load(store, docker_archive([(config_json([BASE]), [BASE], ["keep:1"])]).build())
    before = listing(data_root)
    with pytest.raises(error, match=message):
        load(store, data)
    assert listing(data_root) == before, what
    assert [r.repo_tags for r in store.list()] == [("keep:1",)]


@pytest.mark.parametrize("codec", ["bz2", "lzma"])
def test_load_other_compressions(store: ImageStore, codec: str) -> None:
    import bz2
    import lzma

    raw = docker_archive([(CONFIG, [BASE, TOP], ["busybox:latest"])]).build()
    data = bz2.compress(raw) if codec == "bz2" else lzma.compress(raw)
    assert load(store, data) == ["Loaded image: busybox:latest"]
