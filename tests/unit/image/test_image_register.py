"""Images whose blobs are already in content (pull), digest names, multi-platform layouts."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import pytest
from tests.support.image_archives import (
    TarBuilder,
    config_json,
    docker_archive,
    layer_tar,
    listing,
    oci_layout,
    sha,
)

from berth.errors import InvalidArgument
from berth.image.archive import host_platform
from berth.image.store import ImageStore
from berth.oci.digest import ChainID

LAYER = layer_tar({"bin/": None, "bin/sh": b"sh" * 100})
CONFIG = config_json([LAYER])
IMAGE_ID = sha(CONFIG)


def _pulled(store: ImageStore) -> str:
    """Put blobs in content the way a pull does and return the manifest digest."""
    blob = gzip.compress(LAYER, mtime=0)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "digest": sha(CONFIG),
                "size": len(CONFIG),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "digest": sha(blob),
                    "size": len(blob),
                }
            ],
        }
    ).encode()
    for data in (blob, CONFIG, manifest):
        store._content.write_blob(data)
    return sha(manifest)


def test_register_pulled_image_with_tag_and_digest(store: ImageStore) -> None:
    digest = _pulled(store)
    image_id = store.register_manifest(digest, ["busybox:latest"], ["busybox"])
    assert image_id == IMAGE_ID
    record = store.get("busybox")
    assert record.repo_tags == ("busybox:latest",)
    assert record.repo_digests == (f"busybox@{digest}",)
    assert record.manifest_digest == digest
    assert store.get(f"busybox@{digest}").id == IMAGE_ID
    assert store.get(f"busybox:other@{digest}").id == IMAGE_ID  # tag beside a digest is ignored
    # untagging the last tag of a repository takes its digest names along
    records = store.remove("busybox")
    assert records[:3] == [
        ("Untagged", "busybox:latest"),
        ("Untagged", f"busybox@{digest}"),
        ("Deleted", IMAGE_ID),
    ]


def test_rmi_by_id_with_tag_and_digest_of_one_repository(store: ImageStore) -> None:
    digest = _pulled(store)
    store.register_manifest(digest, ["busybox:latest"], ["busybox"])
    records = store.remove(IMAGE_ID[7:19])
    assert records[:3] == [
        ("Untagged", "busybox:latest"),
        ("Untagged", f"busybox@{digest}"),
        ("Deleted", IMAGE_ID),
    ]


def test_register_with_missing_layer_blob_undoes_layers(store: ImageStore, data_root: Path) -> None:
    digest = _pulled(store)
    store._content.delete(sha(gzip.compress(LAYER, mtime=0)))
    before = listing(data_root)
    with pytest.raises(Exception, match="not found"):
        store.register_manifest(digest, ["x:1"])
    assert listing(data_root) == before
    assert store.list() == []


def test_multi_platform_layout_picks_the_host(store: ImageStore) -> None:
    os_name, arch = host_platform()
    layout, manifest = oci_layout(CONFIG, [LAYER])
    other = b'{"schemaVersion":2,"config":{"mediaType":"x","digest":"%s","size":1},"layers":[]}' % (
        sha(b"elsewhere").encode()
    )
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": sha(other),
                "size": len(other),
                "platform": {"os": os_name, "architecture": "not-" + arch},
            },
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": sha(manifest),
                "size": len(manifest),
                "platform": {"os": os_name, "architecture": arch},
            },
        ],
    }
    raw_index = json.dumps(index).encode()
    layout.add("blobs/sha256/" + sha(other)[7:], other)
    layout.add("blobs/sha256/" + sha(raw_index)[7:], raw_index)
    top = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "digest": sha(raw_index),
                "size": len(raw_index),
                "annotations": {"io.containerd.image.name": "docker.io/library/multi:1"},
            }
        ],
    }
    layout.data["index.json"] = json.dumps(top).encode()
    assert store.load(io.BytesIO(layout.build())) == ["Loaded image: multi:1"]
    assert store.get("multi:1").manifest_digest == sha(manifest)


def test_corrupt_gzip_layer_is_invalid_and_undone(store: ImageStore, data_root: Path) -> None:
    archive = docker_archive([(CONFIG, [LAYER], ["x:1"])], gzip_layers=True)
    name = next(n for n in archive.data if n.endswith("layer.tar"))
    archive.data[name] = archive.data[name][:-20]
    before = listing(data_root)
    with pytest.raises(InvalidArgument):
        store.load(io.BytesIO(archive.build()))
    assert listing(data_root) == before


def test_import_of_something_that_is_not_a_tar(store: ImageStore, data_root: Path) -> None:
    before = listing(data_root)
    with pytest.raises(InvalidArgument):
        store.import_rootfs(io.BytesIO(b"\x00garbage" * 100), "x", [], "")
    assert listing(data_root) == before


def test_tar_builder_sanity() -> None:
    assert TarBuilder().build()  # an empty archive is still two zero blocks


def test_leased_layers_outlive_rmi_and_failed_pulls(store: ImageStore) -> None:
    digest = _pulled(store)
    store.register_manifest(digest, ["busybox:latest"])
    chain = ChainID(store.get("busybox").diff_ids[0])
    with store.layer_lease([chain]):  # a pull that needs the layer is running
        store.remove("busybox")
        assert store._layers.exists(chain)
        store.drop_layers([chain])  # another pull failed: the lease still holds
        assert store._layers.exists(chain)
    store.drop_layers([chain])
    assert not store._layers.exists(chain)


def test_pushed_blobs_are_remembered_per_repository(store: ImageStore) -> None:
    from berth.image.push import rank_pushed
    from berth.image.refs import PushedBlob
    from berth.oci.digest import DiffID, Digest

    diff = DiffID(sha(b"layer"))

    def pushed(registry: str, repo: str) -> PushedBlob:
        return PushedBlob(diff, registry, repo, Digest(sha(b"gz")), 10, "gz")

    here = "127.0.0.1:5000"
    for registry, repo in (("docker.io", "library/x"), (here, "team/a/old"), (here, "other"),
                           (here, "team/b"), (here, "team/a/old")):
        store.record_pushed_blob(pushed(registry, repo))  # recorded again: newest now
    assert store.pushed_blobs(diff) == [pushed(here, "team/a/old"), pushed(here, "team/b"),
                                        pushed(here, "other"), pushed("docker.io", "library/x")]
    assert store.pushed_blobs(DiffID(sha(b"other layer"))) == []
    # dockerd's order for a push to team/a/new: this registry, nearest repository, newest
    ranked = rank_pushed(store.pushed_blobs(diff), here, "team/a/new")
    assert [(b.registry, b.repo) for b in ranked] == [
        (here, "team/a/old"), (here, "team/b"), (here, "other"), ("docker.io", "library/x")]
    ranked = rank_pushed(store.pushed_blobs(diff), here, "team/b")
    assert ranked[0].repo == "team/b"
