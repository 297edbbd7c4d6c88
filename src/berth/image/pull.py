"""``docker pull``: resolve a reference on its registry, fetch blobs into content, record the image.

The walk: manifest by tag or digest → (index or manifest list: the entry for the wanted
platform, fetched by digest) → config → layers (``berth.image._fetch``: downloaded
concurrently, each unpacked while it streams in and verified against its digest before it is
named, published bottom first). Blobs and layers already here are not fetched again. Then the
image store records the image and its names. If the pull fails, the blobs and layers it added
are removed again: the store is as it was. While a pull runs, the layers it needs are leased
from the image store, so no ``rmi`` or failing pull takes them away meanwhile.

``all_tags`` (``docker pull -a``, or ``POST /images/create`` without a tag): the tags as the
registry lists them (``Link`` pages followed), pulled one after another, each with its own
``Pulling from`` and ``Digest:`` lines, then one ``Status:`` line for the repository.

Progress goes out as Docker's JSON messages (``Pulling fs layer``, ``Waiting``, ``Downloading``,
``Verifying Checksum``, ``Download complete``, ``Extracting``, ``Pull complete``, ``Digest:``,
``Status:``).
"""

from __future__ import annotations

import http.client
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol, cast

from berth.content.store import LocalContentStore
from berth.errors import BerthError, DigestMismatch, InvalidArgument, NotFound, Unavailable
from berth.image._fetch import Fetched, LayerFetcher, LayerTarget
from berth.image.archive import host_platform
from berth.image.progress import ProgressSink
from berth.oci import descriptor as mt
from berth.oci.descriptor import Descriptor, Platform
from berth.oci.digest import ChainID, chain_ids
from berth.oci.image import Image, Index, Manifest
from berth.reference import DEFAULT_TAG, Reference, parse_named
from berth.registry.auth import AuthConfig, decode_registry_auth
from berth.registry.client import RegistryClient, RemoteManifest, Repository

log = logging.getLogger(__name__)

Progress = Callable[[Mapping[str, Any]], None]
_DOWNLOAD_WORKERS = 3  # dockerd's max-concurrent-downloads default
_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm",
                 "armel": "arm", "i386": "386"}


class ImageRecorder(Protocol):
    """The part of ``ImageStore`` a pull needs."""

    def resolve(self, name_or_id: str) -> str: ...
    def layer_lease(self, chains: Sequence[ChainID]) -> AbstractContextManager[None]: ...
    def drop_layers(self, chains: Sequence[ChainID]) -> None: ...
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

    def __init__(self, images: ImageRecorder, content: LocalContentStore, layers: LayerTarget,
                 client: RegistryClient, workers: int = _DOWNLOAD_WORKERS) -> None:
        self._images = images
        self._content = content
        self._layers = layers
        self._client = client
        self._workers = workers

    def pull(self, ref: str, auth: str | None, progress: Progress,
             platform: str | None = None, all_tags: bool = False) -> None:
        """Pull ``ref``; with ``all_tags``, every tag of the repository ``ref`` names."""
        want = parse_platform(platform)
        credentials = decode_registry_auth(auth)
        sink = ProgressSink(progress)
        if all_tags:
            name = parse_named(ref)
            if name.tag is not None or name.digest is not None:
                raise InvalidArgument("tag can't be used with --all-tags/-a")
            repo, tags = self._tags(name, credentials)
            pulled_new = False
            for tag in tags:
                target = _Target(name.with_tag(tag), name.with_tag(tag).familiar_string())
                top = self._fetch_manifest(repo, target)
                pulled_new = self._pull_one(repo, target, top, want, sink) or pulled_new
            shown = name.familiar_name
        else:
            target = _target(ref)
            repo, top = self._resolve(target, credentials)
            pulled_new = self._pull_one(repo, target, top, want, sink)
            shown = target.familiar
        state = "Downloaded newer image for" if pulled_new else "Image is up to date for"
        sink.send({"status": f"Status: {state} {shown}"})

    def _pull_one(self, repo: Repository, target: _Target, top: RemoteManifest, want: Platform,
                  sink: ProgressSink) -> bool:
        """One tag or digest; True when something was downloaded or a name moved."""
        remote = top
        if media_type_of(top) in mt.INDEX_TYPES:
            entry = select_manifest(Index.from_bytes(top.data), want)
            remote = self._fetch_manifest(repo, target, entry.digest)
        kind = media_type_of(remote)
        if kind not in mt.MANIFEST_TYPES:
            raise InvalidArgument(f"unsupported manifest media type {kind or 'unknown'} for "
                                  f"{target.familiar}")
        manifest = Manifest.from_bytes(remote.data)
        sink.send({"status": f"Pulling from {target.ref.path}",
                   "id": target.ref.tag or target.ref.digest})
        before = self._existing(target)
        done = Fetched()
        try:
            self._fetch_config(repo, manifest.config, done)
            image = Image.from_bytes(self._content.read_blob(manifest.config.digest))
            chains = chain_ids(list(image.rootfs.diff_ids))
            with self._images.layer_lease(chains):
                if not self._known(manifest.config.digest):
                    # as dockerd: an image it has already gets no per-layer lines
                    fetcher = LayerFetcher(self._content, self._layers, repo, sink,
                                           self._workers)
                    fetcher.fetch(manifest.layers, image.rootfs.diff_ids, done)
                if not self._content.has(remote.digest):
                    # exact bytes as received: their digest is the one the registry named
                    self._content.write_blob(remote.data)
                    done.blobs.append(remote.digest)
                tags = [target.ref.string()] if target.ref.tag else []
                names = [target.ref.name] if remote is top else []
                image_id = self._images.register_manifest(remote.digest, tags, names)
                if remote is not top:
                    self._images.add_digest_ref(target.ref.name, top.digest, image_id)
        except BaseException:
            self._rollback(done)
            raise
        sink.send({"status": f"Digest: {top.digest}"})
        return before != image_id or bool(done.blobs or done.chains)

    def _tags(self, name: Reference, credentials: AuthConfig) -> tuple[Repository, list[str]]:
        """The tags of ``name`` from the first mirror that lists them, else from the registry."""
        for mirror in self._client.mirrors(name.domain, name.path, credentials):
            try:
                return mirror, mirror.list_tags()
            except BerthError as err:
                log.info("mirror %s: %s; trying the next source", mirror.endpoint.host, err)
        repo = self._client.repository(name.domain, name.path, credentials, "pull")
        try:
            return repo, repo.list_tags()
        except NotFound as err:
            raise NotFound(f"repository {name.familiar_name} not found: {err.message}") from err

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

    def _fetch_config(self, repo: Repository, desc: Descriptor, done: Fetched) -> None:
        if self._content.has(desc.digest):
            return
        with repo.open_blob(desc.digest) as resp:
            try:
                info, new = self._content.ingest_new(cast(BinaryIO, resp), desc.digest,
                                                     desc.size)
            except DigestMismatch as err:
                raise DigestMismatch(f"image config verification failed for digest "
                                     f"{desc.digest}") from err
            except (OSError, http.client.HTTPException) as err:
                raise Unavailable(f"failed to download {desc.digest}: {err}") from err
        if new:
            done.blobs.append(info.digest)

    def _rollback(self, done: Fetched) -> None:
        """Take back what a failed pull added: its layers (unless now in use), its blobs."""
        try:
            self._images.drop_layers(done.chains)
        except Exception:
            log.exception("could not remove the layers of a failed pull")
        for digest in done.blobs:
            try:
                self._content.delete(digest)
            except NotFound:
                pass
            except OSError:
                log.exception("could not remove blob %s after a failed pull", digest)
