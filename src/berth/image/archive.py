"""Image archives: reading what `docker save` and OCI tools write; writing what `docker load` reads.

Reading never extracts by member name: members are looked up by normalised path and streamed,
so a hostile name cannot write anywhere. Three layouts are understood:

- Docker 20.10 ``docker save``: ``manifest.json`` (``[{Config, RepoTags, Layers}]``), the config
  as ``<hex>.json`` and each layer as ``<v1-id>/layer.tar`` (uncompressed; maybe a symlink to an
  identical layer elsewhere in the archive);
- Docker 25+: the same ``manifest.json`` pointing into an OCI layout (``blobs/sha256/<hex>``),
  with ``index.json`` beside it; the OCI manifest is kept when it matches;
- a plain OCI image layout (``oci-layout``, ``index.json``, ``blobs/``), names taken from the
  ``io.containerd.image.name`` or ``org.opencontainers.image.ref.name`` annotations.
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
import posixpath
import re
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO

from berth.errors import DigestMismatch, InvalidArgument, InvalidReference
from berth.oci.descriptor import (
    ANNOTATION_CONTAINERD_NAME,
    ANNOTATION_REF_NAME,
    INDEX_TYPES,
    MANIFEST_TYPES,
    Descriptor,
)
from berth.oci.digest import Digest, parse_digest
from berth.oci.image import Index, Manifest, decode_json_object
from berth.reference import DEFAULT_TAG, Reference, parse_named

_MAX_DOCUMENT = 16 << 20  # configs and manifests are kilobytes; refuse to buffer huge ones
_TAG_ONLY_RE = re.compile(r"^[\w][\w.-]{0,127}$", re.ASCII)
_ARCH = {
    "x86_64": "amd64",
    "aarch64": "arm64",
    "armv7l": "arm",
    "i686": "386",
    "ppc64le": "ppc64le",
}


def host_platform() -> tuple[str, str]:
    machine = platform.machine()
    return "linux", _ARCH.get(machine, machine)


@dataclass(frozen=True)
class LayerSource:
    member: str  # normalised path inside the archive
    digest: Digest | None  # the blob's digest when the archive names it (OCI blobs)
    size: int | None


@dataclass(frozen=True)
class ImagePlan:
    config_member: str
    config_raw: bytes
    manifest_raw: bytes | None  # verified OCI/schema2 manifest to keep; None: berth writes one
    layers: tuple[LayerSource, ...]
    tags: tuple[Reference, ...]


def _norm(name: str) -> str:
    name = posixpath.normpath("/" + name).lstrip("/")
    return name


def _blob_member(digest: str) -> str:
    algorithm, _, encoded = parse_digest(digest).partition(":")
    return f"blobs/{algorithm}/{encoded}"


class ArchiveReader:
    """Random access to the members of one (uncompressed) image archive on disk."""

    def __init__(self, path: Path) -> None:
        try:
            self._tar = tarfile.open(path, mode="r:")
        except (tarfile.TarError, EOFError, OSError) as err:
            raise InvalidArgument(f"invalid archive: {err}") from err
        try:
            members = self._tar.getmembers()
        except (tarfile.TarError, EOFError, OSError) as err:
            self._tar.close()
            raise InvalidArgument(f"invalid archive: {err}") from err
        self._members: dict[str, tarfile.TarInfo] = {}
        for member in members:
            self._members[_norm(member.name)] = member

    def close(self) -> None:
        self._tar.close()

    def __enter__(self) -> ArchiveReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def has(self, name: str) -> bool:
        return _norm(name) in self._members

    def _lookup(self, name: str) -> tarfile.TarInfo:
        seen = 0
        key = _norm(name)
        while True:
            member = self._members.get(key)
            if member is None:
                raise InvalidArgument(f"invalid archive: {name} not found in the archive")
            if member.issym() and seen < 16:
                # docker save links identical layers: <id>/layer.tar -> ../<other>/layer.tar
                key = _norm(posixpath.join(posixpath.dirname(key), member.linkname))
            elif member.islnk() and seen < 16:
                key = _norm(member.linkname)
            elif member.isfile():
                return member
            else:
                raise InvalidArgument(f"invalid archive: {name} is not a regular file")
            seen += 1

    def open_member(self, name: str) -> tuple[IO[bytes], int]:
        member = self._lookup(name)
        stream = self._tar.extractfile(member)
        if stream is None:  # pragma: no cover - regular files always have a stream
            raise InvalidArgument(f"invalid archive: cannot read {name}")
        return stream, member.size

    def read_member(self, name: str, digest: str | None = None, size: int | None = None) -> bytes:
        """A small JSON document (manifest, index, config), checked against digest and size."""
        stream, actual_size = self.open_member(name)
        if actual_size > _MAX_DOCUMENT:
            stream.close()
            raise InvalidArgument(f"invalid archive: {name} is too large ({actual_size} bytes)")
        with stream:
            try:
                data = stream.read()
            except (tarfile.TarError, EOFError, OSError) as err:
                raise InvalidArgument(f"invalid archive: {err}") from err
        if size is not None and len(data) != size:
            raise DigestMismatch(
                f"size mismatch for {digest or name}: expected {size} bytes, got {len(data)}"
            )
        if digest is not None:
            algorithm, _, _ = parse_digest(digest).partition(":")
            actual = f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"
            if actual != digest:
                raise DigestMismatch(f"digest mismatch: expected {digest}, got {actual}")
        return data

    # -- planning ----------------------------------------------------------------------------

    def plans(self) -> list[ImagePlan]:
        if self.has("manifest.json"):
            return self._docker_plans()
        if self.has("index.json"):
            return _merge(self._oci_plans())
        raise InvalidArgument(
            "invalid archive: neither manifest.json nor an OCI image layout (index.json) found"
        )

    def _docker_plans(self) -> list[ImagePlan]:
        raw = self.read_member("manifest.json")
        try:
            entries = json.loads(raw)
        except ValueError as err:
            raise InvalidArgument(f"invalid archive: manifest.json: {err}") from err
        if not isinstance(entries, list):
            raise InvalidArgument("invalid archive: manifest.json is not a list")
        oci: dict[str, ImagePlan] = {}
        if self.has("index.json"):
            try:
                oci = {hashlib.sha256(p.config_raw).hexdigest(): p for p in self._oci_plans()}
            except (InvalidArgument, KeyError):
                oci = {}  # a broken OCI side does not matter when manifest.json is complete
        plans = []
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str):
                raise InvalidArgument("invalid archive: manifest.json entry without Config")
            layers = entry.get("Layers") or []
            tags = entry.get("RepoTags") or []
            if not isinstance(layers, list) or not all(isinstance(x, str) for x in layers):
                raise InvalidArgument("invalid archive: manifest.json Layers must be strings")
            if not isinstance(tags, list) or not all(isinstance(x, str) for x in tags):
                raise InvalidArgument("invalid archive: manifest.json RepoTags must be strings")
            config_member = _norm(entry["Config"])
            config_raw = self.read_member(config_member, _digest_from_path(config_member))
            refs = tuple(_repo_tag(t) for t in tags)
            same = oci.get(hashlib.sha256(config_raw).hexdigest())
            if same is not None and len(same.layers) == len(layers):
                plans.append(
                    ImagePlan(config_member, config_raw, same.manifest_raw, same.layers, refs)
                )
                continue
            sources = tuple(
                LayerSource(_norm(p), _digest_from_path(_norm(p)), None) for p in layers
            )
            plans.append(ImagePlan(config_member, config_raw, None, sources, refs))
        return plans

    def _oci_plans(self) -> list[ImagePlan]:
        index = Index.from_bytes(self.read_member("index.json"))
        plans: list[ImagePlan] = []
        for desc in index.manifests:
            plans.extend(self._walk(desc, _names(desc), depth=0))
        return plans

    def _walk(self, desc: Descriptor, names: tuple[Reference, ...], depth: int) -> list[ImagePlan]:
        if depth > 4:
            raise InvalidArgument("invalid archive: image indexes nested too deep")
        raw = self.read_member(_blob_member(desc.digest), desc.digest, desc.size)
        kind = desc.media_type or str(decode_json_object(raw, "manifest").get("mediaType", ""))
        if kind in INDEX_TYPES or (not kind and b'"manifests"' in raw):
            chosen = self._choose(Index.from_bytes(raw).manifests)
            return self._walk(chosen, names, depth + 1)
        if kind and kind not in MANIFEST_TYPES:
            return []  # artifacts and attestations are not images
        manifest = Manifest.from_bytes(raw)
        config_member = _blob_member(manifest.config.digest)
        config_raw = self.read_member(config_member, manifest.config.digest, manifest.config.size)
        layers = tuple(
            LayerSource(_blob_member(layer.digest), layer.digest, layer.size)
            for layer in manifest.layers
        )
        return [ImagePlan(config_member, config_raw, raw, layers, names)]

    def _choose(self, manifests: Iterable[Descriptor]) -> Descriptor:
        want_os, want_arch = host_platform()
        present = [m for m in manifests if self.has(_blob_member(m.digest))]
        for m in present:
            p = m.platform
            if p is not None and p.os == want_os and p.architecture == want_arch:
                return m
        untyped = [m for m in present if m.platform is None]
        if len(untyped) == 1:
            return untyped[0]
        raise InvalidArgument(
            f"no matching manifest for {want_os}/{want_arch} in the manifest list entries"
        )


def _digest_from_path(member: str) -> Digest | None:
    """``blobs/<algorithm>/<hex>`` names its digest; Docker 20.10 names are not checked."""
    parts = member.split("/")
    if len(parts) == 3 and parts[0] == "blobs":
        return parse_digest(f"{parts[1]}:{parts[2]}")
    return None


def _repo_tag(text: str) -> Reference:
    try:
        ref = parse_named(text)
    except InvalidReference as err:
        raise InvalidArgument(f"invalid archive: invalid tag {text!r}: {err}") from err
    if ref.tag is None or ref.digest is not None:
        raise InvalidArgument(f"invalid archive: invalid tag {text!r}")
    return ref


def _names(desc: Descriptor) -> tuple[Reference, ...]:
    for key in (ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME):
        text = desc.annotations.get(key)
        if not text or (key == ANNOTATION_REF_NAME and _TAG_ONLY_RE.match(text)):
            continue  # a bare tag ("latest") names no repository
        try:
            ref = parse_named(text)
        except InvalidReference:
            continue
        if ref.digest is not None:
            continue
        return (ref if ref.tag is not None else ref.with_tag(DEFAULT_TAG),)
    return ()


def _merge(plans: list[ImagePlan]) -> list[ImagePlan]:
    """One plan per config: the same image listed under several names gets all of them."""
    merged: dict[bytes, ImagePlan] = {}
    for plan in plans:
        key = hashlib.sha256(plan.config_raw).digest()
        old = merged.get(key)
        if old is None:
            merged[key] = plan
        else:
            tags = old.tags + tuple(t for t in plan.tags if t not in old.tags)
            merged[key] = ImagePlan(
                old.config_member, old.config_raw, old.manifest_raw, old.layers, tags
            )
    return list(merged.values())


# -- writing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SaveLayer:
    dir_name: str  # <v1-id> directory in the archive
    parent_dir: str | None
    open: Callable[[], tuple[BinaryIO, int]]  # the uncompressed layer tar and its size


@dataclass(frozen=True)
class SaveImage:
    config_hex: str
    config_raw: bytes
    repo_tags: tuple[str, ...]  # familiar
    layers: tuple[SaveLayer, ...]


def write_docker_archive(out: BinaryIO, images: list[SaveImage]) -> None:
    """The Docker 20.10 ``docker save`` layout, which Docker (all versions) and Podman load."""
    manifest: list[dict[str, Any]] = []
    repositories: dict[str, dict[str, str]] = {}
    written: set[str] = set()
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for image in images:
            for layer in image.layers:
                if layer.dir_name in written:
                    continue
                written.add(layer.dir_name)
                _add_dir(tar, layer.dir_name)
                _add_bytes(tar, f"{layer.dir_name}/VERSION", b"1.0")
                v1: dict[str, Any] = {"id": layer.dir_name}
                if layer.parent_dir:
                    v1["parent"] = layer.parent_dir
                _add_bytes(tar, f"{layer.dir_name}/json", json.dumps(v1).encode())
                stream, size = layer.open()
                with stream:
                    info = tarfile.TarInfo(f"{layer.dir_name}/layer.tar")
                    info.size = size
                    info.mode = 0o644
                    tar.addfile(info, stream)
            config_name = f"{image.config_hex}.json"
            if config_name not in written:
                written.add(config_name)
                _add_bytes(tar, config_name, image.config_raw)
            manifest.append(
                {
                    "Config": config_name,
                    "RepoTags": list(image.repo_tags) or None,
                    "Layers": [f"{layer.dir_name}/layer.tar" for layer in image.layers],
                }
            )
            top = image.layers[-1].dir_name if image.layers else ""
            for tag in image.repo_tags:
                repo, _, name = tag.rpartition(":")
                repositories.setdefault(repo, {})[name] = top
        _add_bytes(tar, "manifest.json", json.dumps(manifest, separators=(",", ":")).encode())
        if repositories:
            _add_bytes(tar, "repositories", json.dumps(repositories).encode())


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    tar.addfile(info)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))
