"""docker import, images made by commit/build (create_image), and docker history."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import pytest
from tests.support.image_archives import config_json, docker_archive, layer_tar, listing, sha

from berth.errors import Conflict, InvalidArgument
from berth.image.store import ImageStore
from berth.oci.image import Healthcheck, History, ImageConfig

ROOTFS = layer_tar({"bin/": None, "bin/sh": b"x" * 1000, "etc/": None, "etc/hostname": b"h\n"})


@pytest.mark.parametrize("compress", [False, True])
def test_import_rootfs(store: ImageStore, compress: bool) -> None:
    data = gzip.compress(ROOTFS) if compress else ROOTFS
    changes = [
        'CMD ["sh", "-c", "echo hi"]',
        'ENV A=b C="d e"',
        "ENV PATH /usr/bin:/bin",
        "WORKDIR /srv",
        "WORKDIR app",
        "USER nobody",
        "EXPOSE 80 53/udp 8000-8001",
        "LABEL a=b 'c d'=e",
        "ENTRYPOINT /entry.sh",
        'VOLUME ["/data"]',
        "STOPSIGNAL SIGQUIT",
        "HEALTHCHECK CMD true",
    ]
    image_id = store.import_rootfs(io.BytesIO(data), "imported:v1", changes, "")
    record = store.get("imported:v1")
    assert record.id == image_id
    assert record.diff_ids == (sha(ROOTFS),)
    assert record.comment == "Imported from -"
    assert record.history[0].comment == "Imported from -"
    c = record.config
    assert c.cmd == ("sh", "-c", "echo hi")
    assert c.env == ("A=b", "C=d e", "PATH=/usr/bin:/bin")
    assert c.working_dir == "/srv/app"
    assert c.user == "nobody"
    assert c.exposed_ports == ("53/udp", "80/tcp", "8000/tcp", "8001/tcp")
    assert c.labels == {"a": "b", "c d": "e"}
    assert c.entrypoint == ("/bin/sh", "-c", "/entry.sh")
    assert c.volumes == ("/data",)
    assert c.stop_signal == "SIGQUIT"
    assert c.healthcheck == Healthcheck(("CMD-SHELL", "true"))
    assert record.size > 1000
    hist = store.history("imported:v1")
    assert [(h.id, h.comment, h.tags) for h in hist] == [
        (image_id, "Imported from -", ("imported:v1",))
    ]
    assert hist[0].size == record.size


def test_import_untagged_with_message(store: ImageStore) -> None:
    image_id = store.import_rootfs(io.BytesIO(ROOTFS), None, [], "my message")
    record = store.get(image_id)
    assert (record.repo_tags, record.comment) == ((), "my message")


@pytest.mark.parametrize(
    ("change", "message"),
    [("RUN echo", "run is not a valid change command"), ("FROM x", "from is not a valid")],
)
def test_import_rejects_bad_changes_before_writing(
    store: ImageStore, data_root: Path, change: str, message: str
) -> None:
    before = listing(data_root)
    with pytest.raises(InvalidArgument, match=message):
        store.import_rootfs(io.BytesIO(ROOTFS), "x", [change], "")
    assert listing(data_root) == before


def test_import_of_a_hostile_tar_leaves_nothing(store: ImageStore, data_root: Path) -> None:
    before = listing(data_root)
    with pytest.raises(InvalidArgument):
        store.import_rootfs(io.BytesIO(layer_tar({"../../x": b"1"})), "x", [], "")
    assert listing(data_root) == before
    assert store.list() == []


def test_import_refuses_digest_reference(store: ImageStore) -> None:
    with pytest.raises(InvalidArgument, match="refusing to create a tag with a digest"):
        store.import_rootfs(io.BytesIO(ROOTFS), "x@sha256:" + "0" * 64, [], "")


def _build_chain(store: ImageStore, tmp_path: Path) -> tuple[str, str, str]:
    base = store.import_rootfs(io.BytesIO(ROOTFS), "base:1", [], "")
    empty = store.create_image(
        base,
        None,
        ImageConfig(env=("A=1",)),
        History(created="2024-05-01T00:00:00Z", created_by="/bin/sh -c #(nop)  ENV A=1"),
    )
    layer = tmp_path / "diff.tar"
    layer.write_bytes(layer_tar({"new": b"n" * 500}))
    top = store.create_image(
        empty,
        layer,
        ImageConfig(env=("A=1",), cmd=("sh",)),
        History(created="2024-05-02T00:00:00Z", created_by="/bin/sh -c echo > /new"),
        author="me",
        comment="built",
    )
    return base, empty, top


def test_create_image_on_a_parent_and_history(store: ImageStore, tmp_path: Path) -> None:
    base, empty, top = _build_chain(store, tmp_path)
    record = store.get(top)
    assert record.parent == empty
    assert store.get(empty).parent == base
    assert len(record.diff_ids) == 2
    assert (record.author, record.comment) == ("me", "built")
    assert record.config.cmd == ("sh",)
    assert len(store.layer_chain(top)) == 2
    hist = store.history(top)
    assert [h.id for h in hist] == [top, empty, base]
    assert [h.created_by for h in hist][:2] == [
        "/bin/sh -c echo > /new",
        "/bin/sh -c #(nop)  ENV A=1",
    ]
    assert hist[0].size == 500
    assert hist[1].size == 0
    assert hist[2].tags == ("base:1",)
    assert hist[0].created == 1714608000


def test_history_of_a_loaded_image_shows_missing(store: ImageStore) -> None:
    a, b = layer_tar({"a": b"1"}), layer_tar({"b": b"22"})
    history: list[dict[str, object]] = [
        {"created": "2024-01-01T00:00:00Z", "created_by": "ADD a"},
        {"created": "2024-01-01T00:00:01Z", "created_by": "CMD", "empty_layer": True},
        {"created": "2024-01-01T00:00:02Z", "created_by": "ADD b", "comment": "c"},
    ]
    config = config_json([a, b], history=history)
    store.load(io.BytesIO(docker_archive([(config, [a, b], ["h:1"])]).build()))
    rows = store.history("h:1")
    assert [(r.id, r.created_by, r.size) for r in rows] == [
        (sha(config), "ADD b", 2),
        ("<missing>", "CMD", 0),
        ("<missing>", "ADD a", 1),
    ]
    assert rows[0].tags == ("h:1",)
    assert rows[0].comment == "c"


def test_parent_with_children_cannot_be_deleted(store: ImageStore, tmp_path: Path) -> None:
    base, empty, top = _build_chain(store, tmp_path)
    with pytest.raises(Conflict) as info:
        store.remove(empty, force=True)
    assert str(info.value) == (
        f"conflict: unable to delete {empty[7:19]} (cannot be forced) - "
        "image has dependent child images"
    )
    # deleting the top prunes the untagged parent, then stops at the tagged base
    records = store.remove(top)
    deleted = [r[1] for r in records if r[0] == "Deleted"]
    assert deleted.index(top) < deleted.index(empty)
    assert len(deleted) == 3  # top, its own layer, the empty parent
    assert store.get("base:1").id == base
    assert [r.id for r in store.list()] == [base]
