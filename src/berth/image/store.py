"""The image store: load/save/import/commit, names, lookups, removal and history.

Bytes live in the content store (configs, manifests and layer blobs as received), unpacked layers
in the LayerStore (once per chain ID), names and the list of images in SQLite (schema in
``berth.image.refs``). The image ID is the digest of the config. A load or import writes blobs
and layers first and records the image and its names last, in one transaction; if anything
fails before that, what it wrote is removed again, so the store is as it was.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import platform
import sqlite3
import tarfile
import threading
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Protocol, cast

from berth.content.store import LocalContentStore
from berth.errors import Internal, InvalidArgument, InvalidReference
from berth.image import _removal, _save, refs
from berth.image._changes import apply_changes
from berth.image._streams import Prefixed, compression_of, decompressed, spool
from berth.image.archive import ArchiveReader, ImagePlan, LayerSource
from berth.image.lookup import Lookup
from berth.image.records import HistoryEntry, format_time, parse_time
from berth.oci import descriptor as mt
from berth.oci.descriptor import Descriptor
from berth.oci.digest import ChainID, DiffID, Digest, chain_ids, parse_digest
from berth.oci.image import History, Image, ImageConfig, Manifest, RootFS, encode_json
from berth.reference import Reference, parse_named

log = logging.getLogger(__name__)

_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}
_FOREIGN = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile)


class LayerStoreLike(Protocol):
    """The part of ``berth.snapshot.layers.LayerStore`` the image store uses."""

    def exists(self, chain_id: ChainID) -> bool: ...
    def apply_layer(
        self, parent: ChainID | None, diff_id: DiffID, tar_stream: BinaryIO
    ) -> ChainID: ...
    def size(self, chain_id: ChainID) -> int: ...
    def remove(self, chain_id: ChainID) -> None: ...
    def chain_ids(self) -> list[ChainID]: ...


ImageUsers = Callable[[str], Sequence[tuple[str, bool]]]
"""image ID -> the containers using it, as (container ID, running)."""


class _Undo:
    """What one load/import created, removed again if it does not complete."""

    def __init__(self, content: LocalContentStore, layers: LayerStoreLike) -> None:
        self._content, self._layers = content, layers
        self.blobs: list[Digest] = []
        self.chains: list[ChainID] = []

    def rollback(self) -> None:
        for chain in reversed(self.chains):
            try:
                self._layers.remove(chain)
            except Exception:  # best effort: report, keep undoing the rest
                log.exception("could not remove layer %s while undoing a load", chain)
        for digest in self.blobs:
            try:
                self._content.delete(digest)
            except Exception:
                log.exception("could not remove blob %s while undoing a load", digest)


class ImageStore(Lookup):
    def __init__(
        self,
        content: LocalContentStore,
        layers: LayerStoreLike,
        refs_db: Path,
        *,
        image_users: ImageUsers | None = None,
        docker_version: str = "",
    ) -> None:
        super().__init__(content, layers, refs.ImageDB(refs_db))
        self._users: ImageUsers = image_users or (lambda _id: ())
        self._docker_version = docker_version
        # Loads, imports and removals are serialised: a removal must not delete a blob that a
        # concurrent load found present and decided not to write again.
        self._lock = threading.RLock()
        # chain IDs that running pulls need (a count per pull): not removed while leased
        self._leases: Counter[ChainID] = Counter()

    def close(self) -> None:
        self._db.close()

    # -- load ----------------------------------------------------------------------------------

    def load(self, stream: BinaryIO) -> list[str]:
        """Load a docker-archive or OCI layout tarball (gzip or not); Docker's output lines."""
        with self._lock:
            path, _, _ = spool(stream, self._content.ingest_root)
            undo = _Undo(self._content, self._layers)
            try:
                with ArchiveReader(path) as reader:
                    plans = reader.plans()
                    installed = [(self._install(reader, p, undo), p.tags) for p in plans]
                return self._commit_names(installed)
            except BaseException as err:
                undo.rollback()
                if isinstance(err, _FOREIGN):
                    raise InvalidArgument(f"invalid archive: {err}") from err
                raise
            finally:
                path.unlink(missing_ok=True)

    def _install(self, reader: ArchiveReader, plan: ImagePlan, undo: _Undo) -> refs.ImageRow:
        image = Image.from_bytes(plan.config_raw)
        if len(image.rootfs.diff_ids) != len(plan.layers):
            raise InvalidArgument(
                "invalid manifest, layers length mismatch: "
                f"expected {len(image.rootfs.diff_ids)}, got {len(plan.layers)}"
            )
        descriptors = [self._ingest_layer(reader, layer, undo) for layer in plan.layers]
        config_digest = self._write(plan.config_raw, undo)
        if plan.manifest_raw is not None:
            manifest_digest = self._write(plan.manifest_raw, undo)
        else:
            manifest_digest = self._write(
                _schema2(config_digest, plan.config_raw, descriptors), undo
            )
        chain = self._apply_layers(image.rootfs.diff_ids, [d.digest for d in descriptors], undo)
        return self._row(config_digest, manifest_digest, image, chain, parent="")

    def _ingest_layer(self, reader: ArchiveReader, src: LayerSource, undo: _Undo) -> Descriptor:
        stream, _ = reader.open_member(src.member)
        with stream:
            head = stream.read(6)
            info, new = self._content.ingest_new(
                cast(BinaryIO, Prefixed(head, cast(BinaryIO, stream))), src.digest, src.size
            )
        if new:
            undo.blobs.append(info.digest)
        kind = compression_of(head)
        media = {"gzip": mt.DOCKER_LAYER_GZIP, "zstd": mt.DOCKER_LAYER_ZSTD}.get(
            kind, mt.DOCKER_LAYER
        )
        return Descriptor(media, info.digest, info.size)

    def _write(self, data: bytes, undo: _Undo) -> Digest:
        digest = Digest("sha256:" + hashlib.sha256(data).hexdigest())
        if not self._content.has(digest):
            self._content.write_blob(data)
            undo.blobs.append(digest)
        return digest

    def _apply_layers(
        self, diff_ids: Sequence[DiffID], blobs: Sequence[Digest], undo: _Undo
    ) -> tuple[ChainID, ...]:
        chains = chain_ids(list(diff_ids))
        parent: ChainID | None = None
        for chain, diff_id, blob in zip(chains, diff_ids, blobs, strict=True):
            if not self._layers.exists(chain):
                with self._content.open_blob(blob) as raw:
                    got = self._layers.apply_layer(parent, diff_id, decompressed(raw))
                undo.chains.append(got)
            parent = chain
        return tuple(chains)

    def _row(
        self,
        image_id: Digest,
        manifest: Digest,
        image: Image,
        chain: tuple[ChainID, ...],
        parent: str,
    ) -> refs.ImageRow:
        size = sum(self._layers.size(c) for c in chain)
        return refs.ImageRow(image_id, manifest, parent, image.created or "", size, chain)

    def _commit_names(
        self, installed: Sequence[tuple[refs.ImageRow, tuple[Reference, ...]]]
    ) -> list[str]:
        lines: list[str] = []
        try:
            with self._db.transaction() as conn:
                for row, tags in installed:
                    refs.insert_image(conn, row)
                    for tag in tags:
                        old = refs.set_ref(conn, refs.RefRow(tag.string(), row.id, tag.name, "tag"))
                        if old is not None:
                            lines.append(
                                f"The image {tag.familiar_string()} already exists, renaming "
                                f"the old one with ID {old} to empty string"
                            )
                        lines.append(f"Loaded image: {tag.familiar_string()}")
                    if not tags:
                        lines.append(f"Loaded image ID: {row.id}")
        except sqlite3.Error as err:
            raise Internal(f"cannot record images: {err}") from err
        return lines

    def register_manifest(
        self, manifest_digest: str, tags: Sequence[str] = (), digest_names: Sequence[str] = ()
    ) -> str:
        """Record an image whose manifest, config and layers are already in content (a pull).

        Unpacks the layers (once per chain ID), then points ``tags`` (``busybox:latest``) and
        ``digest_names`` (``busybox``, recorded as ``busybox@<manifest digest>``) at it.
        Returns the image ID. On failure, layers it unpacked are removed; blobs stay (the
        caller fetched them).
        """
        targets = [self._tag_target(t) for t in tags]
        named = [parse_named(n) for n in digest_names]
        digest = parse_digest(manifest_digest)
        with self._lock:
            manifest = Manifest.from_bytes(self._content.read_blob(digest))
            image = Image.from_bytes(self._content.read_blob(manifest.config.digest))
            if len(image.rootfs.diff_ids) != len(manifest.layers):
                raise InvalidArgument(
                    "invalid manifest, layers length mismatch: "
                    f"expected {len(image.rootfs.diff_ids)}, got {len(manifest.layers)}"
                )
            undo = _Undo(self._content, self._layers)
            try:
                blobs = [d.digest for d in manifest.layers]
                chain = self._apply_layers(image.rootfs.diff_ids, blobs, undo)
                row = self._row(manifest.config.digest, digest, image, chain, parent="")
                with self._db.transaction() as conn:
                    refs.insert_image(conn, row)
                    for ref in targets:
                        refs.set_ref(conn, refs.RefRow(ref.string(), row.id, ref.name, "tag"))
                    for name in named:
                        full = Reference(name.domain, name.path, None, digest)
                        refs.set_ref(conn, refs.RefRow(full.string(), row.id, name.name, "digest"))
            except BaseException as err:
                undo.blobs.clear()
                undo.rollback()
                if isinstance(err, _FOREIGN):
                    raise InvalidArgument(f"invalid layer: {err}") from err
                raise
            return row.id

    @contextmanager
    def layer_lease(self, chains: Sequence[ChainID]) -> Iterator[None]:
        """Keep these layers from being removed (by ``rmi`` or a failed pull) meanwhile."""
        with self._lock:
            self._leases.update(chains)
        try:
            yield
        finally:
            with self._lock:
                self._leases.subtract(chains)
                self._leases = +self._leases  # drop the counts that reached zero

    def leased_layers(self) -> set[ChainID]:
        with self._lock:
            return set(self._leases)

    def drop_layers(self, chains: Sequence[ChainID]) -> None:
        """Remove layers a failed pull published, unless an image or a running pull uses them."""
        with self._lock:
            in_use = {c for row in self._db.images() for c in row.chain} | set(self._leases)
            for chain in reversed(chains):
                if chain not in in_use and self._layers.exists(chain):
                    self._layers.remove(chain)

    # -- what pushes compressed ----------------------------------------------------------------

    def pushed_blobs(self, diff_id: str) -> list[refs.PushedBlob]:
        """The compressed blobs this layer became when pushed, anywhere; the newest first."""
        return self._db.pushed_blobs(diff_id)

    def record_pushed_blob(self, blob: refs.PushedBlob) -> None:
        with self._db.transaction() as conn:
            refs.record_pushed_blob(conn, blob)

    # -- import and create ---------------------------------------------------------------------

    def import_rootfs(
        self, stream: BinaryIO, ref: str | None, changes: list[str], message: str = ""
    ) -> str:
        """A root filesystem tar (maybe compressed) as a one-layer image; returns its ID."""
        target = self._tag_target(ref) if ref else None
        config = apply_changes(ImageConfig(), changes)  # validate before the first side effect
        message = message or "Imported from -"
        now = format_time(datetime.now(UTC))
        with self._lock:
            path, diff_id, size = spool(stream, self._content.ingest_root)
            try:
                image_id = self._create(
                    None,
                    (path, DiffID(diff_id), size),
                    config,
                    History(created=now, comment=message),
                    comment=message,
                    created=now,
                )
            finally:
                path.unlink(missing_ok=True)
            if target is not None:
                self._set_tag(target, image_id)
            return image_id

    def create_image(
        self,
        parent_id: str | None,
        layer: Path | None,
        config: ImageConfig,
        history: History,
        *,
        author: str = "",
        comment: str = "",
    ) -> str:
        """A new image on top of ``parent_id`` (None: from scratch) with an optional layer tar.

        ``layer`` is an uncompressed tar (e.g. the diff of a container); it is copied into the
        content store. ``history`` is appended to the parent's history (``empty_layer`` is set
        when there is no layer). Returns the image ID.
        """
        with self._lock:
            parent = self.get(parent_id).id if parent_id else None
            spec = None
            if layer is not None:
                with layer.open("rb") as f:
                    path, diff_id, size = spool(f, self._content.ingest_root)
                spec = (path, DiffID(diff_id), size)
            try:
                return self._create(
                    parent,
                    spec,
                    config,
                    history,
                    author=author,
                    comment=comment,
                    created=history.created or format_time(datetime.now(UTC)),
                )
            finally:
                if spec is not None:
                    spec[0].unlink(missing_ok=True)

    def _create(
        self,
        parent: str | None,
        layer: tuple[Path, DiffID, int] | None,
        config: ImageConfig,
        history: History,
        *,
        comment: str = "",
        author: str = "",
        created: str,
    ) -> str:
        base = self._image(parent) if parent else None
        diff_ids = list(base.rootfs.diff_ids) if base else []
        blobs = [Digest(d) for d in diff_ids]
        entries = list(base.history) if base else []
        if layer is not None:
            diff_ids.append(layer[1])
            blobs.append(Digest(layer[1]))
        entries.append(
            History(
                history.created or created,
                history.created_by,
                history.author,
                history.comment,
                empty_layer=layer is None,
            )
        )
        image = Image(
            architecture=base.architecture
            if base
            else _ARCH.get(platform.machine(), platform.machine()),
            os=base.os if base else "linux",
            rootfs=RootFS(tuple(diff_ids)),
            config=config,
            created=created,
            author=author,
            history=tuple(entries),
            comment=comment,
            docker_version=self._docker_version,
            parent=parent or "",
            variant=base.variant if base else None,
        )
        undo = _Undo(self._content, self._layers)
        try:
            if layer is not None:
                existed = self._content.has(layer[1])
                self._content.ingest_file(layer[0], layer[1], layer[2])
                if not existed:
                    undo.blobs.append(Digest(layer[1]))
            raw = image.to_bytes()
            config_digest = self._write(raw, undo)
            manifest = self._manifest_for(parent) if parent else None
            descriptors = list(manifest.layers) if manifest else []
            if layer is not None:
                descriptors.append(Descriptor(mt.DOCKER_LAYER, Digest(layer[1]), layer[2]))
            manifest_digest = self._write(_schema2(config_digest, raw, descriptors), undo)
            chain = self._apply_layers(image.rootfs.diff_ids, [d.digest for d in descriptors], undo)
            row = self._row(config_digest, manifest_digest, image, chain, parent or "")
            with self._db.transaction() as conn:
                refs.insert_image(conn, row)
            return config_digest
        except BaseException:
            undo.rollback()
            raise

    # -- names ---------------------------------------------------------------------------------

    def _tag_target(self, target: str) -> Reference:
        ref = parse_named(target)
        if ref.digest is not None:
            raise InvalidReference("refusing to create a tag with a digest reference")
        if ref.familiar_name == "sha256":
            raise InvalidReference(
                "refusing to create an ambiguous tag using digest algorithm as name"
            )
        return ref if ref.tag is not None else ref.with_tag("latest")

    def _set_tag(self, ref: Reference, image_id: str) -> None:
        with self._db.transaction() as conn:
            refs.set_ref(conn, refs.RefRow(ref.string(), image_id, ref.name, "tag"))

    def tag(self, source: str, target: str) -> None:
        ref = self._tag_target(target)
        with self._lock:
            self._set_tag(ref, self.get(source).id)

    def add_digest_ref(self, name: str, manifest_digest: str, image_id: str) -> None:
        """Record ``name@digest`` (RepoDigests) for an image, e.g. after a pull."""
        ref = parse_named(name)
        full = Reference(ref.domain, ref.path, None, parse_digest(manifest_digest))
        with self._lock:
            # resolve before the transaction: the DB's lock is not re-entrant
            resolved = self.get(image_id).id
            with self._db.transaction() as conn:
                refs.set_ref(conn, refs.RefRow(full.string(), resolved, ref.name, "digest"))

    def remove(self, name: str, force: bool = False, prune: bool = True) -> list[tuple[str, str]]:
        """``docker rmi``: [("Untagged", "busybox:latest"), ("Deleted", "sha256:...")...]."""
        with self._lock:
            return _removal.remove(self, name, force, prune)

    def sweep_unreferenced(self, keep: Sequence[str] = ()) -> None:
        """Delete the blobs and layers no recorded image needs (what a load, pull, commit or
        build left when a crash cut it short). ``keep``: IDs of images removed while containers
        stood on them; their layers stay."""
        with self._lock:
            _removal.sweep_unreferenced(self, keep)

    # -- history and save ----------------------------------------------------------------------

    def history(self, name: str) -> list[HistoryEntry]:
        """``docker history``: newest first; IDs of ancestors where known, else ``<missing>``."""
        record = self.get(name)
        rows: list[HistoryEntry] = []
        chains = chain_ids(list(record.diff_ids))
        used = 0
        for h in record.history:
            size = 0
            if not h.empty_layer:
                if used >= len(chains):
                    raise InvalidArgument("too many non-empty layers in History section")
                size = self._layers.size(chains[used])
                used += 1
            rows.insert(
                0, HistoryEntry("<missing>", parse_time(h.created), h.created_by, h.comment, size)
            )
        image_id = record.id
        for i, entry in enumerate(rows):
            tags = tuple(self._familiar_refs(image_id, "tag"))
            rows[i] = HistoryEntry(
                image_id, entry.created, entry.created_by, entry.comment, entry.size, tags
            )
            row = self._db.image(image_id)
            if row is None or not row.parent or self._db.image(row.parent) is None:
                break
            image_id = row.parent
        return rows

    def save(self, names: list[str], out: BinaryIO) -> None:
        """``docker save``: the Docker 20.10 archive layout; loading it gives the same IDs."""
        _save.save(self, names, out)


def _schema2(config: Digest, config_raw: bytes, layers: Sequence[Descriptor]) -> bytes:
    manifest = Manifest(
        config=Descriptor(mt.DOCKER_CONFIG, config, len(config_raw)),
        layers=tuple(layers),
        media_type=mt.DOCKER_MANIFEST,
    )
    return encode_json(manifest.to_json())
