"""Finding images by name or ID, and reading them back as records (the read side of the store)."""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING

from berth.content.store import LocalContentStore
from berth.errors import ImageNotFound
from berth.image.records import ImageRecord
from berth.image.refs import ImageDB, ImageRow
from berth.oci.digest import ChainID
from berth.oci.image import EPOCH, Image, Manifest
from berth.reference import (
    DEFAULT_TAG,
    Reference,
    is_full_id,
    looks_like_id_prefix,
    parse_named,
    parse_reference,
)

if TYPE_CHECKING:
    from berth.image.store import LayerStoreLike


class Lookup:
    def __init__(self, content: LocalContentStore, layers: LayerStoreLike, db: ImageDB) -> None:
        self._content = content
        self._layers = layers
        self._db = db

    def resolve(self, name_or_id: str) -> str:
        """The image ID ``name_or_id`` names, as Docker's lookup does.

        Order: a full ID (64 hex, bare or ``sha256:``); a reference (``latest`` added); an ID
        prefix of at least one hex digit that matches exactly one image.
        """
        if is_full_id(name_or_id):
            image_id = "sha256:" + name_or_id.removeprefix("sha256:")
            if self._db.image(image_id) is not None:
                return image_id
            raise ImageNotFound(f"No such image: {image_id}")
        ref = parse_named(name_or_id)
        if ref.digest is not None:
            # a tag beside a digest is ignored, as Docker's reference store does
            ref = Reference(ref.domain, ref.path, None, ref.digest)
        elif ref.tag is None:
            ref = ref.with_tag(DEFAULT_TAG)
        found = self._db.resolve(ref.string())
        if found is not None:
            return found
        if looks_like_id_prefix(name_or_id):
            matches = self._db.ids_with_prefix(name_or_id.removeprefix("sha256:"))
            if len(matches) == 1:
                return matches[0]
        raise ImageNotFound(f"No such image: {ref.familiar_string()}")

    def get(self, name_or_id: str) -> ImageRecord:
        """The image named by a reference, a ``sha256:`` ID or a unique ID prefix."""
        image_id = self.resolve(name_or_id)
        row = self._db.image(image_id)
        if row is None:  # removed between the two reads
            raise ImageNotFound(f"No such image: {name_or_id}")
        return self._record(row)

    def exists(self, name_or_id: str) -> bool:
        try:
            self.resolve(name_or_id)
        except ImageNotFound:
            return False
        return True

    def list(self) -> builtins.list[ImageRecord]:
        """Every image, newest first."""
        return [self._record(row) for row in self._db.images()]

    def layer_chain(self, image_id: str) -> builtins.list[ChainID]:
        """Chain IDs of the image's layers, bottom first (the last one names the whole stack)."""
        row = self._db.image(self.resolve(image_id))
        if row is None:
            raise ImageNotFound(f"No such image: {image_id}")
        return list(row.chain)

    def config_bytes(self, image_id: str) -> bytes:
        """The config blob exactly as stored (its digest is the image ID)."""
        return self._content.read_blob(self.resolve(image_id))

    def manifest_bytes(self, image_id: str) -> bytes:
        """The manifest blob exactly as stored (as received, or schema2 written by berth)."""
        row = self._db.image(self.resolve(image_id))
        if row is None:
            raise ImageNotFound(f"No such image: {image_id}")
        return self._content.read_blob(row.manifest)

    # -- helpers shared by the store's modules ------------------------------------------------

    def _image(self, image_id: str) -> Image:
        return Image.from_bytes(self._content.read_blob(image_id))

    def _manifest_for(self, image_id: str) -> Manifest:
        return Manifest.from_bytes(self.manifest_bytes(image_id))

    def _familiar_refs(self, image_id: str, kind: str) -> builtins.list[str]:
        names = [
            parse_reference(r.ref).familiar_string()
            for r in self._db.refs_of(image_id)
            if r.kind == kind
        ]
        return sorted(names)

    def _record(self, row: ImageRow) -> ImageRecord:
        image = self._image(row.id)
        return ImageRecord(
            id=row.id,
            repo_tags=tuple(self._familiar_refs(row.id, "tag")),
            repo_digests=tuple(self._familiar_refs(row.id, "digest")),
            created=image.created or EPOCH,
            config=image.config,
            diff_ids=image.rootfs.diff_ids,
            size=row.size,
            architecture=image.architecture,
            os=image.os,
            variant=image.variant,
            os_version=image.os_version,
            author=image.author,
            comment=image.comment,
            docker_version=image.docker_version,
            parent=row.parent,
            manifest_digest=row.manifest,
            history=image.history,
        )
