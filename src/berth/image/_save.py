"""``docker save``: which images and tags a list of names selects, and the archive's layers."""

from __future__ import annotations

import functools
import hashlib
import tempfile
from typing import TYPE_CHECKING, BinaryIO, cast

from berth.errors import ImageNotFound
from berth.image._streams import compression_of, decompressed
from berth.image.archive import SaveImage, SaveLayer, write_docker_archive
from berth.oci.digest import ChainID, Digest
from berth.reference import Reference, is_full_id, parse_named, parse_reference

if TYPE_CHECKING:
    from berth.image.store import ImageStore


def _select(store: ImageStore, names: list[str]) -> list[tuple[str, list[str]]]:
    """Images in order of first mention, each with the familiar tags to write for it."""
    order: dict[str, list[str]] = {}

    def add(image_id: str, tag: str | None) -> None:
        tags = order.setdefault(image_id, [])
        if tag is not None and tag not in tags:
            tags.append(tag)

    for name in names:
        if is_full_id(name):
            add(store.resolve(name), None)
            continue
        ref = parse_named(name)
        if ref.familiar_name == "sha256":  # "sha256:<prefix>" names an ID
            add(store.resolve(name), None)
            continue
        if ref.tag is None and ref.digest is None:
            rows = [r for r in store._db.refs_in_repo(ref.name) if r.kind == "tag"]
            for r in rows:
                add(r.image_id, parse_reference(r.ref).familiar_string())
            if not rows:
                add(store.resolve(name), None)
            continue
        if ref.digest is not None:
            ref = Reference(ref.domain, ref.path, None, ref.digest)
        image_id = store._db.resolve(ref.string())
        if image_id is None:
            raise ImageNotFound("reference does not exist")
        add(image_id, ref.familiar_string() if ref.digest is None else None)
    return list(order.items())


def _dir_name(chain: ChainID) -> str:
    return hashlib.sha256(f"berth-layer {chain}".encode()).hexdigest()


def _opener(store: ImageStore, blob: Digest) -> tuple[BinaryIO, int]:
    with store._content.open_blob(blob) as f:
        kind = compression_of(f.read(6))
    if not kind:
        return store._content.open_blob(blob), store._content.size(blob)
    spooled = tempfile.TemporaryFile(dir=store._content.ingest_root)
    try:
        with store._content.open_blob(blob) as raw:
            source = decompressed(raw)
            while chunk := source.read(1 << 20):
                spooled.write(chunk)
        size = spooled.tell()
        spooled.seek(0)
    except BaseException:
        spooled.close()
        raise
    return cast(BinaryIO, spooled), size


def save(store: ImageStore, names: list[str], out: BinaryIO) -> None:
    images: list[SaveImage] = []
    for image_id, tags in _select(store, names):
        row = store._db.image(image_id)
        if row is None:
            raise ImageNotFound(f"No such image: {image_id}")
        manifest = store._manifest_for(image_id)
        layers: list[SaveLayer] = []
        parent: str | None = None
        for chain, desc in zip(row.chain, manifest.layers, strict=True):
            name = _dir_name(chain)
            blob = desc.digest
            layers.append(SaveLayer(name, parent, functools.partial(_opener, store, blob)))
            parent = name
        config_raw = store._content.read_blob(image_id)
        images.append(
            SaveImage(image_id.removeprefix("sha256:"), config_raw, tuple(tags), tuple(layers))
        )
    write_docker_archive(out, images)
