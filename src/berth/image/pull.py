"""``docker pull``: resolve a reference on its registry, fetch blobs into content, record the image.

The walk: manifest by tag or digest → (index or manifest list: the entry for the wanted
platform, fetched by digest) → config → layers, downloaded concurrently, each verified against
its digest while it streams into the content store (a blob gets its name only once verified, so
an interrupted or corrupt download leaves nothing behind). Blobs already in content are not
fetched again. Then the image store unpacks the layers once per chain ID and records the names.
If the pull fails, blobs it wrote are removed again: the store is as it was.

Progress goes out as Docker's JSON messages (``Pulling fs layer``, ``Downloading``, ``Verifying
Checksum``, ``Download complete``, ``Extracting``, ``Pull complete``, ``Digest:``, ``Status:``).
"""

from __future__ import annotations

import http.client
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol, cast

from berth.content.store import LocalContentStore
from berth.errors import BerthError, DigestMismatch, InvalidArgument, NotFound, Unavailable
from berth.image.archive import host_platform
from berth.image.progress import ProgressSink, progress_bar, short_id
from berth.oci import descriptor as mt
from berth.oci.descriptor import Descriptor, Platform
from berth.oci.digest import Digest
from berth.oci.image import Index, Manifest
from berth.reference import DEFAULT_TAG, Reference, parse_named
from berth.registry.auth import AuthConfig, decode_registry_auth
from berth.registry.client import RegistryClient, RemoteManifest, Repository

log = logging.getLogger(__name__)

Progress = Callable[[Mapping[str, Any]], None]
_DOWNLOAD_WORKERS = 3  # dockerd's max-concurrent-downloads default
_REPORT_EVERY = 512 * 1024
_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm",
                 "armel": "arm", "i386": "386"}


class ImageRecorder(Protocol):
    """The part of ``ImageStore`` a pull needs."""

    def resolve(self, name_or_id: str) -> str: ...
    def register_manifest(self, manifest_digest: str, tags: Sequence[str] = (),
                          digest_names: Sequence[str] = ()) -> str: ...
    def add_digest_ref(self, name: str, manifest_digest: str, image_id: str) -> None: ...


def parse_platform(text: str | None) -> Platform:
    """``linux/arm64/v8`` (os/arch[/variant]); empty means the daemon's own platform."""
    if not text:
        os_name, arch = host_platform()
        return Platform(architecture=arch, os=os_name)
    parts = text.lower().split("/")
    if len(parts) > 3 or not all(parts):
        raise InvalidArgument(f'"{text}": unknown operating system or architecture: '
                              "invalid argument")
    if len(parts) == 1:
        return Platform(architecture=_ARCH_ALIASES.get(parts[0], parts[0]), os="linux")
    arch = _ARCH_ALIASES.get(parts[1], parts[1])
    variant = parts[2] if len(parts) == 3 else None
    if arch == "arm64" and variant == "v8":
        variant = None  # normalised, as containerd's platforms package does
    return Platform(architecture=arch, os=parts[0], variant=variant)


def platform_string(p: Platform) -> str:
    return "/".join(x for x in (p.os, p.architecture, p.variant) if x)


def select_manifest(index: Index, want: Platform) -> Descriptor:
    """The index entry for ``want``; Docker's error when there is none."""
    fallback: Descriptor | None = None
    for entry in index.manifests:
        p = entry.platform
        if p is None or p.os == "unknown" or p.architecture == "unknown":
            continue  # attestation manifests and the like
        if entry.media_type and entry.media_type not in mt.MANIFEST_TYPES:
            continue
        if p.os != want.os or _ARCH_ALIASES.get(p.architecture, p.architecture) != \
                want.architecture:
            continue
        variant = None if (p.architecture == "arm64" and p.variant == "v8") else p.variant
        if want.variant is None or variant == want.variant:
            if variant is None or want.variant is not None:
                return entry
            fallback = fallback or entry
        elif variant is None:
            fallback = fallback or entry
    if fallback is not None:
        return fallback
    raise NotFound(f"no matching manifest for {platform_string(want)} "
                   "in the manifest list entries")


@dataclass(frozen=True)
class _Target:
    ref: Reference  # with the tag or digest being pulled
    familiar: str  # as Docker prints it: localhost:5000/x:1.0, busybox:latest


def _target(text: str) -> _Target:
    ref = parse_named(text)
    if ref.digest is not None:
        ref = Reference(ref.domain, ref.path, None, ref.digest)
    elif ref.tag is None:
        ref = ref.with_tag(DEFAULT_TAG)
    return _Target(ref, ref.familiar_string())


def media_type_of(remote: RemoteManifest) -> str:
    if remote.media_type in mt.MANIFEST_TYPES | mt.INDEX_TYPES:
        return remote.media_type
    try:
        data = json.loads(remote.data)
    except ValueError:
        data = None
    if isinstance(data, dict):
        declared = data.get("mediaType")
        if isinstance(declared, str) and declared:
            return declared
        if "manifests" in data:
            return mt.OCI_INDEX
        if "layers" in data:
            return mt.OCI_MANIFEST
    return remote.media_type


class RegistryPuller:
    """Pulls images from registries into the image store (``ImagePuller`` of the API)."""

    def __init__(self, images: ImageRecorder, content: LocalContentStore,
                 client: RegistryClient, workers: int = _DOWNLOAD_WORKERS) -> None:
        self._images = images
        self._content = content
        self._client = client
        self._workers = workers

    def pull(self, ref: str, auth: str | None, progress: Progress,
             platform: str | None = None) -> None:
        target = _target(ref)
        want = parse_platform(platform)
        credentials = decode_registry_auth(auth)
        repo, top = self._resolve(target, credentials)
        remote = top
        if media_type_of(top) in mt.INDEX_TYPES:
            entry = select_manifest(Index.from_bytes(top.data), want)
            remote = self._fetch_manifest(repo, target, entry.digest)
        kind = media_type_of(remote)
        if kind not in mt.MANIFEST_TYPES:
            raise InvalidArgument(f"unsupported manifest media type {kind or 'unknown'} for "
                                  f"{target.familiar}")
        manifest = Manifest.from_bytes(remote.data)
        sink = ProgressSink(progress)
        sink.send({"status": f"Pulling from {target.ref.path}",
                   "id": target.ref.tag or target.ref.digest})
        before = self._existing(target)
        written: list[Digest] = []
        try:
            self._fetch_blob(repo, manifest.config, written, sink, quiet=True)
            if not self._known(manifest.config.digest):
                # as dockerd: an image it has already gets no per-layer lines
                self._fetch_layers(repo, manifest.layers, written, sink)
            if not self._content.has(remote.digest):
                # exact bytes as received: their digest is the one the registry named
                self._content.write_blob(remote.data)
                written.append(remote.digest)
            tags = [target.ref.string()] if target.ref.tag else []
            names = [target.ref.name] if remote is top else []
            image_id = self._images.register_manifest(remote.digest, tags, names)
            if remote is not top:
                self._images.add_digest_ref(target.ref.name, top.digest, image_id)
        except BaseException:
            self._rollback(written)
            raise
        for layer in manifest.layers:
            if layer.digest in written:
                ident = short_id(layer.digest)
                sink.send({"status": "Extracting", "progressDetail":
                           {"current": layer.size, "total": layer.size},
                           "progress": progress_bar(layer.size, layer.size), "id": ident})
                sink.send({"status": "Pull complete", "progressDetail": {}, "id": ident})
        sink.send({"status": f"Digest: {top.digest}"})
        state = "Image is up to date for" if before == image_id and not written else \
            "Downloaded newer image for"
        sink.send({"status": f"Status: {state} {target.familiar}"})

    def _resolve(self, target: _Target, credentials: AuthConfig
                 ) -> tuple[Repository, RemoteManifest]:
        """The manifest from the first mirror that has it, else from the registry itself."""
        ref = target.ref
        for mirror in self._client.mirrors(ref.domain, ref.path, credentials):
            try:
                return mirror, self._fetch_manifest(mirror, target)
            except BerthError as err:
                log.info("mirror %s: %s; trying the next source", mirror.endpoint.host, err)
        repo = self._client.repository(ref.domain, ref.path, credentials, "pull")
        return repo, self._fetch_manifest(repo, target)

    def _known(self, image_id: str) -> bool:
        try:
            return self._images.resolve(image_id) == image_id
        except NotFound:
            return False

    def _existing(self, target: _Target) -> str | None:
        try:
            return self._images.resolve(target.ref.string())
        except NotFound:
            return None

    def _fetch_manifest(self, repo: Repository, target: _Target,
                        digest: str | None = None) -> RemoteManifest:
        reference = digest or target.ref.tag or target.ref.digest or DEFAULT_TAG
        try:
            if digest is None and target.ref.digest is None:
                # as dockerd 20.10: HEAD the tag, then GET what it names by digest
                reference = repo.resolve_tag(reference) or reference
            return repo.get_manifest(reference)
        except NotFound as err:
            if err.message.startswith("name unknown"):
                raise NotFound(f"repository {target.ref.familiar_name} not found: "
                               f"{err.message}") from err
            raise NotFound(f"manifest for {target.familiar} not found: {err.message}") from err

    def _fetch_layers(self, repo: Repository, layers: Sequence[Descriptor],
                      written: list[Digest], sink: ProgressSink) -> None:
        todo: list[Descriptor] = []
        for layer in layers:
            ident = short_id(layer.digest)
            if self._content.has(layer.digest) or layer in todo:
                sink.send({"status": "Already exists", "progressDetail": {}, "id": ident})
            else:
                sink.send({"status": "Pulling fs layer", "progressDetail": {}, "id": ident})
                todo.append(layer)
        if not todo:
            return
        with ThreadPoolExecutor(max_workers=self._workers,
                                thread_name_prefix="berth-pull") as pool:
            futures = [pool.submit(self._fetch_blob, repo, layer, written, sink)
                       for layer in todo]
            errors: list[BaseException] = []
            for future in futures:
                err = future.exception()
                if err is not None:
                    errors.append(err)
        if errors:
            # a wrong digest says the most; else the first failure
            raise next((e for e in errors if isinstance(e, DigestMismatch)), errors[0])

    def _fetch_blob(self, repo: Repository, desc: Descriptor, written: list[Digest],
                    sink: ProgressSink, quiet: bool = False) -> None:
        if self._content.has(desc.digest):
            return
        if desc.urls and desc.media_type in (mt.DOCKER_FOREIGN_LAYER,
                                             mt.DOCKER_FOREIGN_LAYER_GZIP):
            raise InvalidArgument(f"foreign layer {desc.digest} is not supported")
        ident = short_id(desc.digest)
        with repo.open_blob(desc.digest) as resp:
            reader = _Reporting(cast(BinaryIO, resp), desc.size,
                                None if quiet else lambda done: sink.send({
                                    "status": "Downloading",
                                    "progressDetail": {"current": done, "total": desc.size},
                                    "progress": progress_bar(done, desc.size), "id": ident}))
            try:
                info, new = self._content.ingest_new(cast(BinaryIO, reader), desc.digest,
                                                     desc.size)
            except DigestMismatch as err:
                log.warning("blob %s from %s: %s", desc.digest, repo.path, err)
                raise DigestMismatch(
                    f"filesystem layer verification failed for digest {desc.digest}") from err
            except Unavailable as err:
                raise Unavailable(f"failed to download {desc.digest}: {err.message}") from err
            except (OSError, http.client.HTTPException) as err:
                raise Unavailable(f"failed to download {desc.digest}: {err}") from err
        if new:
            written.append(info.digest)
        if not quiet:
            sink.send({"status": "Verifying Checksum", "progressDetail": {}, "id": ident})
            sink.send({"status": "Download complete", "progressDetail": {}, "id": ident})

    def _rollback(self, written: Sequence[Digest]) -> None:
        for digest in written:
            try:
                self._content.delete(digest)
            except NotFound:
                pass
            except OSError:
                log.exception("could not remove blob %s after a failed pull", digest)


class _Reporting:
    """Counts bytes read and reports every ``_REPORT_EVERY`` bytes and at the end."""

    def __init__(self, source: BinaryIO, total: int,
                 report: Callable[[int], None] | None) -> None:
        self._source = source
        self._total = total
        self._report = report
        self._done = 0
        self._last = 0

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        if not data and size != 0 and self._done < self._total:
            # http.client returns short reads when the connection drops: say what happened
            raise Unavailable("unexpected EOF")
        self._done += len(data)
        if self._report is not None and data and (
                self._done - self._last >= _REPORT_EVERY or self._done >= self._total):
            self._last = self._done
            self._report(self._done)
        return data
