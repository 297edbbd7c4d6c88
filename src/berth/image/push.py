"""``docker push``: send an image's blobs and its manifest to a registry.

An image whose manifest came from elsewhere (pulled, or loaded with its manifest from an OCI
layout) goes byte for byte as the store keeps it, so a pull then push round trip changes no
digest. An image whose manifest berth wrote (loaded from a docker-archive, built, committed,
imported) has uncompressed layers: as dockerd, they are pushed gzip-compressed
(``berth.image._gzip``, pieces compressed on a thread pool while the upload streams) under a
schema2 manifest naming the compressed blobs. What each layer became is remembered per
registry and repository (``pushed_blobs``, dockerd's v2 metadata): a later push of that layer
HEADs the likeliest blob it became in the target repository (present: nothing to compress or
send), else mounts it from the nearest other repository of the registry (``rank_pushed``:
dockerd's order), else compresses it again; the compression is deterministic, so the manifest
and its digest come out the same every time.

Per blob as stored: HEAD (present: skip), else a cross-repository mount from another repository
of the same registry that has the image (the mount falls back to a normal upload session, which
is then used), else an upload. Layers go concurrently (dockerd's five); the config follows; the
manifest goes last, by tag, and the digest the registry reports must be the one of the bytes
sent.
"""

from __future__ import annotations

import builtins
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol, cast

from berth.content.store import LocalContentStore
from berth.errors import InvalidArgument, NotFound
from berth.image._gzip import GzipReader
from berth.image.progress import ProgressSink, progress_bar, short_id
from berth.image.records import ImageRecord
from berth.image.refs import PushedBlob
from berth.oci import descriptor as mt
from berth.oci.descriptor import Descriptor
from berth.oci.digest import DiffID, Digest
from berth.oci.image import Image, Manifest, decode_json_object, encode_json
from berth.reference import Reference, parse_named
from berth.registry.auth import decode_registry_auth, repository_scope
from berth.registry.client import RegistryClient, Repository

log = logging.getLogger(__name__)

Progress = Callable[[Mapping[str, Any]], None]
_UPLOAD_WORKERS = 5  # dockerd's max-concurrent-uploads default
_CHUNKED_ABOVE = 256 << 20  # bigger blobs go in chunks, so one request never carries it all
_CHUNK_SIZE = 64 << 20
_REPORT_EVERY = 512 * 1024
_PLAIN_TO_GZIP = {mt.DOCKER_LAYER: mt.DOCKER_LAYER_GZIP, mt.OCI_LAYER: mt.OCI_LAYER_GZIP}


class ImageSource(Protocol):
    """The part of ``ImageStore`` a push needs."""

    def get(self, name_or_id: str) -> ImageRecord: ...
    def list(self) -> list[ImageRecord]: ...
    def manifest_bytes(self, image_id: str) -> bytes: ...
    def config_bytes(self, image_id: str) -> bytes: ...
    def add_digest_ref(self, name: str, manifest_digest: str, image_id: str) -> None: ...
    def pushed_blobs(self, diff_id: str) -> builtins.list[PushedBlob]: ...
    def record_pushed_blob(self, blob: PushedBlob) -> None: ...


@dataclass(frozen=True)
class _Blob:
    desc: Descriptor
    ident: str  # what the progress shows: the layer's diff ID, shortened
    layer: bool
    diff_id: DiffID | None = None
    index: int = -1  # the position in the manifest's layers


class RegistryPusher:
    def __init__(self, images: ImageSource, content: LocalContentStore,
                 client: RegistryClient, workers: int = _UPLOAD_WORKERS) -> None:
        self._images = images
        self._content = content
        self._client = client
        self._workers = workers

    def push(self, name: str, tag: str | None, auth: str | None, progress: Progress) -> None:
        """Push ``name:tag``, or every tag of the repository ``name`` when no tag is given."""
        repo_ref = parse_named(name)
        if repo_ref.digest is not None:
            raise InvalidArgument("cannot push a digest reference")
        if repo_ref.tag is not None and not tag:
            tag = repo_ref.tag
        targets = self._targets(repo_ref.name_only(), tag)
        credentials = decode_registry_auth(auth)
        sources = sorted({src for _, img in targets for src in self._mount_sources(
            repo_ref, img)})
        scopes = [repository_scope(s, "pull") for s in sorted(
            {*sources, *self._pushed_elsewhere(repo_ref, [img for _, img in targets])})]
        sink = ProgressSink(progress)
        sink.send({"status": f"The push refers to repository [{repo_ref.name}]"})
        repo = self._client.repository(repo_ref.domain, repo_ref.path, credentials,
                                       "push,pull", scopes)
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2,
                                thread_name_prefix="berth-gzip") as gzip_pool:
            for ref, record in targets:
                self._push_one(repo, ref, record, sources, sink, gzip_pool)

    def _pushed_elsewhere(self, repo: Reference, records: Sequence[ImageRecord]) -> set[str]:
        """The repositories of this registry the layers would be mounted from (their scopes)."""
        out: set[str] = set()
        for record in records:
            for diff_id in record.diff_ids:
                ranked = rank_pushed(self._images.pushed_blobs(diff_id), repo.domain, repo.path)
                source = next((b for b in ranked if b.registry == repo.domain
                               and b.repo != repo.path), None)
                if source is not None:
                    out.add(source.repo)
        return out

    def _targets(self, repo: Reference, tag: str | None) -> list[tuple[Reference, ImageRecord]]:
        if tag:
            ref = repo.with_tag(tag)
            try:
                return [(ref, self._images.get(ref.string()))]
            except NotFound as err:
                raise NotFound(f"An image does not exist locally with the tag: "
                               f"{repo.familiar_name}") from err
        found: list[tuple[Reference, ImageRecord]] = []
        for record in self._images.list():
            for text in record.repo_tags:
                ref = parse_named(text)
                if ref.name == repo.name and ref.tag:
                    found.append((ref, record))
        if not found:
            raise NotFound(f"An image does not exist locally with the tag: {repo.familiar_name}")
        return sorted(found, key=lambda pair: pair[0].tag or "")

    def _mount_sources(self, repo: Reference, record: ImageRecord) -> list[str]:
        """Other repositories of the same registry that hold this image (mount candidates)."""
        out = []
        for text in (*record.repo_tags, *record.repo_digests):
            ref = parse_named(text)
            if ref.domain == repo.domain and ref.path != repo.path:
                out.append(ref.path)
        return out

    def _push_one(self, repo: Repository, ref: Reference, record: ImageRecord,
                  sources: Sequence[str], sink: ProgressSink, gzip_pool: Executor) -> None:
        raw = self._images.manifest_bytes(record.id)
        manifest = Manifest.from_bytes(raw)
        image = Image.from_bytes(self._images.config_bytes(record.id))
        diff_ids = list(image.rootfs.diff_ids)
        compress = _written_here(raw, manifest)
        layers = [
            _Blob(d, short_id(diff_ids[i] if i < len(diff_ids) else d.digest), True,
                  diff_ids[i] if i < len(diff_ids) else None, i)
            for i, d in enumerate(manifest.layers)
            if not (d.urls and d.media_type in (mt.DOCKER_FOREIGN_LAYER,
                                                mt.DOCKER_FOREIGN_LAYER_GZIP))
        ]
        for blob in reversed(layers):  # docker lists the top layer first
            sink.send({"status": "Preparing", "progressDetail": {}, "id": blob.ident})
        for blob in list(reversed(layers))[self._workers:]:
            sink.send({"status": "Waiting", "progressDetail": {}, "id": blob.ident})
        with ThreadPoolExecutor(max_workers=self._workers,
                                thread_name_prefix="berth-push") as pool:
            futures = [(blob, pool.submit(self._push_layer, repo, blob, sources, sink,
                                          compress, gzip_pool))
                       for blob in reversed(layers)]
            errors = [f.exception() for _, f in futures]
        failed = next((e for e in errors if e is not None), None)
        if failed is not None:
            raise failed
        pushed = list(manifest.layers)
        for blob, future in futures:
            pushed[blob.index] = future.result()
        self._push_blob(repo, _Blob(manifest.config, "", False), sources, sink)
        if pushed != list(manifest.layers):
            # the layers went compressed: the manifest names what the registry got
            raw = encode_json(Manifest(config=manifest.config, layers=tuple(pushed),
                                       media_type=mt.DOCKER_MANIFEST).to_json())
            media_type = mt.DOCKER_MANIFEST
        else:
            media_type = manifest.media_type or _declared_type(raw)
        digest = repo.put_manifest(ref.tag or "latest", media_type, raw)
        self._images.add_digest_ref(ref.name, digest, record.id)
        sink.send({"status": f"{ref.tag}: digest: {digest} size: {len(raw)}"})
        sink.send({"progressDetail": {},
                   "aux": {"Tag": ref.tag, "Digest": digest, "Size": len(raw)}})

    def _push_layer(self, repo: Repository, blob: _Blob, sources: Sequence[str],
                    sink: ProgressSink, compress: bool, gzip_pool: Executor) -> Descriptor:
        """Push one layer; the descriptor the manifest must name for it."""
        if compress and blob.diff_id is not None and blob.desc.media_type in _PLAIN_TO_GZIP:
            return self._push_compressed(repo, blob, blob.diff_id, sink, gzip_pool)
        self._push_blob(repo, blob, sources, sink)
        return blob.desc

    def _push_compressed(self, repo: Repository, blob: _Blob, diff_id: DiffID,
                         sink: ProgressSink, gzip_pool: Executor) -> Descriptor:
        """A stored uncompressed layer, pushed as gzip (or found where it went before)."""
        media_type = _PLAIN_TO_GZIP[blob.desc.media_type]

        def say(status: str) -> None:
            sink.send({"status": status, "progressDetail": {}, "id": blob.ident})

        def remember(digest: Digest, size: int) -> Descriptor:
            self._images.record_pushed_blob(PushedBlob(diff_id, repo.domain, repo.path,
                                                       digest, size, media_type))
            return Descriptor(media_type, digest, size)

        known = [b for b in rank_pushed(self._images.pushed_blobs(diff_id), repo.domain,
                                        repo.path) if b.media_type == media_type]
        # as dockerd: the likeliest blob it became is looked for here (it may have got there
        # from anywhere), then mounted from the likeliest other repository of this registry
        if known and repo.has_blob(known[0].digest):
            say("Layer already exists")
            if (known[0].registry, known[0].repo) != (repo.domain, repo.path):
                return remember(known[0].digest, known[0].size)
            return Descriptor(media_type, known[0].digest, known[0].size)
        location: str | None = None
        source = next((b for b in known if b.registry == repo.domain and b.repo != repo.path),
                      None)
        if source is not None:
            location = repo.mount_blob(source.digest, source.repo)
            if location is None:
                say(f"Mounted from {source.repo}")
                return remember(source.digest, source.size)
            # the failed mount opened an upload session: it is used below
        if not self._content.has(blob.desc.digest):
            raise NotFound(f"blob {blob.desc.digest} of the image is missing from the "
                           "content store")
        size = blob.desc.size
        with self._content.open_blob(blob.desc.digest) as stream:
            gz = GzipReader(stream, gzip_pool, ahead=(os.cpu_count() or 2) + 1)
            digest = repo.upload_stream(
                cast(BinaryIO, _Progress(gz, lambda: gz.consumed, size, blob.ident, sink)),
                lambda: gz.digest, location)
        say("Pushed")
        return remember(Digest(digest), gz.size)

    def _push_blob(self, repo: Repository, blob: _Blob, sources: Sequence[str],
                   sink: ProgressSink) -> None:
        digest, size = blob.desc.digest, blob.desc.size

        def say(status: str) -> None:
            if blob.layer:
                sink.send({"status": status, "progressDetail": {}, "id": blob.ident})

        if repo.has_blob(digest):
            say("Layer already exists")
            return
        if not self._content.has(digest):
            raise NotFound(f"blob {digest} of the image is missing from the content store")
        location: str | None = None
        for source in sources:
            location = repo.mount_blob(digest, source)
            if location is None:
                say(f"Mounted from {source}")
                return
            break  # the failed mount opened an upload session: use it

        last = [0]

        def report(done: int) -> None:
            # http.client reads a block at a time: report every 512 KiB and at the end
            if blob.layer and (done - last[0] >= _REPORT_EVERY or done >= size):
                last[0] = done
                sink.send({"status": "Pushing",
                           "progressDetail": {"current": done, "total": size},
                           "progress": progress_bar(done, size), "id": blob.ident})

        with self._content.open_blob(digest) as stream:
            repo.upload_blob(digest, size, stream, location=location,
                             chunk_size=_CHUNK_SIZE if size > _CHUNKED_ABOVE else None,
                             progress=report)
        say("Pushed")


class _Progress:
    """Docker's ``Pushing`` lines while a stream is read (every 512 KiB and at the end)."""

    def __init__(self, source: GzipReader, done: Callable[[], int], total: int, ident: str,
                 sink: ProgressSink) -> None:
        self._source = source
        self._done = done
        self._total = total
        self._ident = ident
        self._sink = sink
        self._last = 0

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        done = self._done()
        if done - self._last >= _REPORT_EVERY or (not data and done != self._last):
            self._last = done
            self._sink.send({"status": "Pushing",
                             "progressDetail": {"current": done, "total": self._total},
                             "progress": progress_bar(done, self._total), "id": self._ident})
        return data


def rank_pushed(blobs: Sequence[PushedBlob], registry: str, path: str) -> list[PushedBlob]:
    """dockerd's order of what a layer became: this registry's first, among them the
    repositories sharing most leading path components with ``path``, then the newest (``blobs``
    come newest first)."""
    parts = path.split("/")

    def shared(repo: str) -> int:
        n = 0
        for a, b in zip(repo.split("/"), parts, strict=False):
            if a != b:
                break
            n += 1
        return n

    return sorted(blobs, key=lambda b: (b.registry != registry,
                                        -shared(b.repo) if b.registry == registry else 0))


def _written_here(raw: bytes, manifest: Manifest) -> bool:
    """Whether ``raw`` is a schema2 manifest as berth writes them (not one from elsewhere)."""
    if manifest.media_type != mt.DOCKER_MANIFEST or manifest.config.media_type != \
            mt.DOCKER_CONFIG:
        return False
    again = Manifest(config=manifest.config, layers=manifest.layers,
                     media_type=mt.DOCKER_MANIFEST)
    return encode_json(again.to_json()) == raw


def _declared_type(raw: bytes) -> str:
    data = decode_json_object(raw, "manifest")
    value = data.get("mediaType")
    return value if isinstance(value, str) and value else mt.OCI_MANIFEST
