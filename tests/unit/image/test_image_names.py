"""Lookups, tags and docker rmi with Docker 20.10's rules and messages."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from tests.support.image_archives import (
    config_json,
    docker_archive,
    layer_tar,
    listing,
    make_store,
    sha,
)

from berth.errors import Conflict, ImageNotFound, InvalidReference
from berth.image.store import ImageStore
from berth.oci.digest import chain_ids

BASE = layer_tar({"bin/": None, "bin/sh": b"sh"})
TOP = layer_tar({"etc/": None, "etc/motd": b"hi"})
CONFIG = config_json([BASE, TOP])
IMAGE_ID = sha(CONFIG)
HEX = IMAGE_ID.split(":")[1]


@pytest.fixture
def loaded(store: ImageStore) -> ImageStore:
    store.load(io.BytesIO(docker_archive([(CONFIG, [BASE, TOP], ["busybox:latest"])]).build()))
    return store


@pytest.mark.parametrize(
    "name",
    [
        "busybox",
        "busybox:latest",
        "docker.io/library/busybox",
        "index.docker.io/library/busybox:latest",
        IMAGE_ID,
        HEX,
        HEX[:12],
        HEX[:1],
        "sha256:" + HEX[:5],
    ],
)
def test_get_by_name_or_id(loaded: ImageStore, name: str) -> None:
    assert loaded.get(name).id == IMAGE_ID


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("nosuch", "No such image: nosuch:latest"),
        ("nosuch:1", "No such image: nosuch:1"),
        ("sha256:" + "0" * 64, "No such image: sha256:" + "0" * 64),
        ("0" * 64, "No such image: sha256:" + "0" * 64),
    ],
)
def test_not_found_messages(loaded: ImageStore, name: str, message: str) -> None:
    with pytest.raises(ImageNotFound) as info:
        loaded.get(name)
    assert str(info.value) == message


def test_invalid_names_are_invalid_reference(loaded: ImageStore) -> None:
    with pytest.raises(InvalidReference, match="must be lowercase"):
        loaded.get("BusyBox")


def test_tag_and_list(loaded: ImageStore) -> None:
    loaded.tag("busybox", "localhost:5000/x/y:v1")
    loaded.tag(HEX[:6], "mine")
    record = loaded.get("mine:latest")
    assert record.repo_tags == ("busybox:latest", "localhost:5000/x/y:v1", "mine:latest")
    assert [r.id for r in loaded.list()] == [IMAGE_ID]


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("x@sha256:" + "0" * 64, "refusing to create a tag with a digest reference"),
        ("Casetest-033/app", "invalid reference format: repository name must be lowercase"),
        ("casetest-033:a:b", "invalid reference format"),
        ("sha256:abc", "refusing to create an ambiguous tag using digest algorithm as name"),
    ],
)
def test_tag_refusals(loaded: ImageStore, target: str, message: str) -> None:
    with pytest.raises(InvalidReference) as info:
        loaded.tag("busybox", target)
    assert str(info.value) == message


def test_tag_of_missing_source(loaded: ImageStore) -> None:
    with pytest.raises(ImageNotFound, match="No such image: nosuch:latest"):
        loaded.tag("nosuch", "x")


def test_case_033_listing(loaded: ImageStore) -> None:
    for target in [
        "casetest-033",
        "docker.io/library/casetest-033:two",
        "index.docker.io/library/casetest-033:three",
        "casetest-ns/casetest-033:Mixed_Case-tag.1",
        "localhost:5000/casetest-033/app:v1",
        "localhost/casetest-033",
    ]:
        loaded.tag("busybox:latest", target)
    tags = sorted(t for t in loaded.get("busybox").repo_tags if "casetest-033" in t)
    assert tags == [
        "casetest-033:latest",
        "casetest-033:three",
        "casetest-033:two",
        "casetest-ns/casetest-033:Mixed_Case-tag.1",
        "localhost/casetest-033:latest",
        "localhost:5000/casetest-033/app:v1",
    ]
    assert loaded.get("index.docker.io/library/casetest-033:two").id == IMAGE_ID


# -- rmi ---------------------------------------------------------------------------------------


def test_rmi_with_several_tags_only_untags(loaded: ImageStore) -> None:
    loaded.tag("busybox", "other:1")
    assert loaded.remove("busybox") == [("Untagged", "busybox:latest")]
    assert loaded.get(IMAGE_ID).repo_tags == ("other:1",)


def test_rmi_last_tag_deletes_image_layers_and_blobs(loaded: ImageStore, data_root: Path) -> None:
    chains = chain_ids([sha(BASE), sha(TOP)])  # type: ignore[list-item]
    assert loaded.remove("busybox") == [
        ("Untagged", "busybox:latest"),
        ("Deleted", IMAGE_ID),
        ("Deleted", chains[1]),
        ("Deleted", chains[0]),
    ]
    assert loaded.list() == []
    assert list(loaded._content.walk()) == []
    assert not any((data_root / "layers").iterdir())


def test_rmi_keeps_layers_other_images_use(store: ImageStore, data_root: Path) -> None:
    small = config_json([BASE])
    archive = docker_archive([(CONFIG, [BASE, TOP], ["big:1"]), (small, [BASE], ["small:1"])])
    store.load(io.BytesIO(archive.build()))
    chains = chain_ids([sha(BASE), sha(TOP)])  # type: ignore[list-item]
    assert store.remove("big:1") == [
        ("Untagged", "big:1"),
        ("Deleted", IMAGE_ID),
        ("Deleted", chains[1]),
    ]
    assert store.get("small:1").id == sha(small)
    assert store._layers.exists(chains[0])
    assert store._content.has(sha(BASE))


def test_rmi_by_id_with_several_repositories_needs_force(loaded: ImageStore) -> None:
    loaded.tag("busybox", "other:1")
    with pytest.raises(Conflict) as info:
        loaded.remove(HEX[:12])
    assert str(info.value) == (
        f"conflict: unable to delete {HEX[:12]} (must be forced) - "
        "image is referenced in multiple repositories"
    )
    records = loaded.remove(HEX[:12], force=True)
    assert records[:3] == [
        ("Untagged", "busybox:latest"),
        ("Untagged", "other:1"),
        ("Deleted", IMAGE_ID),
    ]
    assert loaded.list() == []


def test_rmi_by_id_with_one_tag(loaded: ImageStore) -> None:
    assert loaded.remove(IMAGE_ID)[:2] == [("Untagged", "busybox:latest"), ("Deleted", IMAGE_ID)]


def test_rmi_missing(loaded: ImageStore) -> None:
    with pytest.raises(ImageNotFound, match="No such image: nosuch:latest"):
        loaded.remove("nosuch")


def test_rmi_with_containers(tmp_path: Path) -> None:
    users: list[tuple[str, bool]] = [("c" * 64, False)]
    from berth.content.store import LocalContentStore
    from berth.snapshot.layers import LayerStore

    root = tmp_path / "root"
    store = ImageStore(
        LocalContentStore(root / "content"),
        LayerStore(root / "layers", durable=False),
        root / "berth.db",
        image_users=lambda image_id: users,
    )
    try:
        store.load(io.BytesIO(docker_archive([(CONFIG, [BASE, TOP], ["busybox:latest"])]).build()))
        with pytest.raises(Conflict) as info:
            store.remove("busybox")
        assert str(info.value) == (
            'conflict: unable to remove repository reference "busybox" (must force) - '
            f"container {'c' * 12} is using its referenced image {HEX[:12]}"
        )
        with pytest.raises(Conflict, match="must be forced\\) - image is being used by stopped"):
            store.remove(IMAGE_ID)
        users[0] = ("d" * 64, True)
        with pytest.raises(Conflict, match="cannot be forced\\) - image is being used by running"):
            store.remove(IMAGE_ID, force=True)
        users[0] = ("d" * 64, False)
        records = store.remove(IMAGE_ID, force=True)
        assert records == [("Untagged", "busybox:latest"), ("Deleted", IMAGE_ID)]
        assert store._layers.exists(store_chain := chain_ids([sha(BASE)])[0])  # type: ignore[list-item]
        assert store_chain
    finally:
        store.close()


def test_reopened_store_sees_the_same_images(loaded: ImageStore, data_root: Path) -> None:
    before = listing(data_root)
    again = make_store(data_root)
    try:
        assert again.get("busybox").id == IMAGE_ID
    finally:
        again.close()
    assert listing(data_root) == before
