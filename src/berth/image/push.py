"""``docker push``: send an image's blobs and its manifest, byte for byte, to a registry.

The manifest pushed is the one the store keeps (as pulled or loaded, or the schema2 berth
wrote), so a pull then push round trip changes no digest. Per blob: HEAD (present: skip), else a
cross-repository mount from another repository of the same registry that has the image (the
mount falls back to a normal upload session, which is then used), else an upload. Layers go
concurrently; the config follows; the manifest goes last, by tag, and the digest the registry
reports must be the one of the bytes sent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from berth.content.store import LocalContentStore
from berth.errors import InvalidArgument, NotFound
from berth.image.progress import ProgressSink, progress_bar, short_id
from berth.image.records import ImageRecord
from berth.oci import descriptor as mt
from berth.oci.descriptor import Descriptor
from berth.oci.image import Image, Manifest, decode_json_object
from berth.reference import Reference, parse_named
from berth.registry.auth import decode_registry_auth, repository_scope
from berth.registry.client import RegistryClient, Repository

log = logging.getLogger(__name__)

Progress = Callable[[Mapping[str, Any]], None]
_UPLOAD_WORKERS = 5  # dockerd's max-concurrent-uploads default
_CHUNKED_ABOVE = 256 << 20  # bigger blobs go in chunks, so one request never carries it all
_CHUNK_SIZE = 64 << 20


class ImageSource(Protocol):
    """The part of ``ImageStore`` a push needs."""

    def get(self, name_or_id: str) -> ImageRecord: ...
    def list(self) -> list[ImageRecord]: ...
    def manifest_bytes(self, image_id: str) -> bytes: ...
    def config_bytes(self, image_id: str) -> bytes: ...
    def add_digest_ref(self, name: str, manifest_digest: str, image_id: str) -> None: ...


@dataclass(frozen=True)
class _Blob:
    desc: Descriptor
    ident: str  # what the progress shows: the layer's diff ID, shortened
    layer: bool


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
        scopes = [repository_scope(s, "pull") for s in sources]
        sink = ProgressSink(progress)
        sink.send({"status": f"The push refers to repository [{repo_ref.name}]"})
        repo = self._client.repository(repo_ref.domain, repo_ref.path, credentials,
                                       "push,pull", scopes)
        for ref, record in targets:
            self._push_one(repo, ref, record, sources, sink)

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
                  sources: Sequence[str], sink: ProgressSink) -> None:
        raw = self._images.manifest_bytes(record.id)
        manifest = Manifest.from_bytes(raw)
        image = Image.from_bytes(self._images.config_bytes(record.id))
        diff_ids = list(image.rootfs.diff_ids)
        layers = [
            _Blob(d, short_id(diff_ids[i] if i < len(diff_ids) else d.digest), True)
            for i, d in enumerate(manifest.layers)
            if not (d.urls and d.media_type in (mt.DOCKER_FOREIGN_LAYER,
                                                mt.DOCKER_FOREIGN_LAYER_GZIP))
        ]
        for blob in reversed(layers):  # docker lists the top layer first
            sink.send({"status": "Preparing", "progressDetail": {}, "id": blob.ident})
        with ThreadPoolExecutor(max_workers=self._workers,
                                thread_name_prefix="berth-push") as pool:
            futures = [pool.submit(self._push_blob, repo, blob, sources, sink)
                       for blob in reversed(layers)]
            errors = [f.exception() for f in futures]
        failed = next((e for e in errors if e is not None), None)
        if failed is not None:
            raise failed
        self._push_blob(repo, _Blob(manifest.config, "", False), sources, sink)
        media_type = manifest.media_type or _declared_type(raw)
        digest = repo.put_manifest(ref.tag or "latest", media_type, raw)
        self._images.add_digest_ref(ref.name, digest, record.id)
        sink.send({"status": f"{ref.tag}: digest: {digest} size: {len(raw)}"})
        sink.send({"progressDetail": {},
                   "aux": {"Tag": ref.tag, "Digest": digest, "Size": len(raw)}})

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
            # http.client reads 8 KiB at a time: report every 512 KiB and at the end
            if blob.layer and (done - last[0] >= 512 * 1024 or done >= size):
                last[0] = done
                sink.send({"status": "Pushing",
                           "progressDetail": {"current": done, "total": size},
                           "progress": progress_bar(done, size), "id": blob.ident})

        with self._content.open_blob(digest) as stream:
            repo.upload_blob(digest, size, stream, location=location,
                             chunk_size=_CHUNK_SIZE if size > _CHUNKED_ABOVE else None,
                             progress=report)
        say("Pushed")


def _declared_type(raw: bytes) -> str:
    data = decode_json_object(raw, "manifest")
    value = data.get("mediaType")
    return value if isinstance(value, str) and value else mt.OCI_MANIFEST
