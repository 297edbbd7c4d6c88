"""Content descriptors, platforms and media types (pure; OCI camelCase lives only in the codecs)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from berth.errors import InvalidArgument
from berth.oci.digest import Digest, parse_digest

# OCI image-spec media types.
OCI_DESCRIPTOR = "application/vnd.oci.descriptor.v1+json"
OCI_LAYOUT_HEADER = "application/vnd.oci.layout.header.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_NONDIST = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_LAYER_NONDIST_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_LAYER_NONDIST_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"

# Docker image manifest v2, schema 2.
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_ZSTD = "application/vnd.docker.image.rootfs.diff.tar.zstd"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar"
DOCKER_FOREIGN_LAYER_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
CONFIG_TYPES = frozenset({OCI_CONFIG, DOCKER_CONFIG})
LAYER_TYPES_PLAIN = frozenset({OCI_LAYER, OCI_LAYER_NONDIST, DOCKER_LAYER, DOCKER_FOREIGN_LAYER})
LAYER_TYPES_GZIP = frozenset(
    {OCI_LAYER_GZIP, OCI_LAYER_NONDIST_GZIP, DOCKER_LAYER_GZIP, DOCKER_FOREIGN_LAYER_GZIP}
)
LAYER_TYPES_ZSTD = frozenset({OCI_LAYER_ZSTD, OCI_LAYER_NONDIST_ZSTD, DOCKER_LAYER_ZSTD})
LAYER_TYPES = LAYER_TYPES_PLAIN | LAYER_TYPES_GZIP | LAYER_TYPES_ZSTD

# Annotation keys.
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_CREATED = "org.opencontainers.image.created"
ANNOTATION_CONTAINERD_NAME = "io.containerd.image.name"


def layer_compression(media_type: str) -> str:
    """``""`` (plain tar), ``"gzip"`` or ``"zstd"``; unknown types are assumed plain."""
    if media_type in LAYER_TYPES_GZIP or media_type.endswith("+gzip"):
        return "gzip"
    if media_type in LAYER_TYPES_ZSTD or media_type.endswith("+zstd"):
        return "zstd"
    return ""


@dataclass(frozen=True)
class Platform:
    architecture: str
    os: str
    os_version: str | None = None
    os_features: tuple[str, ...] = ()
    variant: str | None = None
    features: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.os_version:
            out["os.version"] = self.os_version
        if self.os_features:
            out["os.features"] = list(self.os_features)
        if self.variant:
            out["variant"] = self.variant
        if self.features:
            out["features"] = list(self.features)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Platform:
        return cls(
            architecture=_str(data, "architecture"),
            os=_str(data, "os"),
            os_version=_opt_str(data, "os.version"),
            os_features=_str_tuple(data, "os.features"),
            variant=_opt_str(data, "variant"),
            features=_str_tuple(data, "features"),
        )


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: Digest
    size: int
    urls: tuple[str, ...] = ()
    annotations: Mapping[str, str] = field(default_factory=dict)
    platform: Platform | None = None
    artifact_type: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            out["platform"] = self.platform.to_json()
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        return out

    @classmethod
    def from_json(cls, data: Any) -> Descriptor:
        if not isinstance(data, Mapping):
            raise InvalidArgument("invalid descriptor: not a JSON object")
        size = data.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidArgument(f"invalid descriptor size: {size!r}")
        platform = data.get("platform")
        return cls(
            media_type=_opt_str(data, "mediaType") or "",
            digest=parse_digest(_str(data, "digest")),
            size=size,
            urls=_str_tuple(data, "urls"),
            annotations=_str_map(data, "annotations"),
            platform=Platform.from_json(platform) if isinstance(platform, Mapping) else None,
            artifact_type=_opt_str(data, "artifactType"),
        )


# Small typed readers shared by the codecs of this package.


def _str(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise InvalidArgument(f"invalid JSON: {key!r} must be a string")
    return value


def _opt_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidArgument(f"invalid JSON: {key!r} must be a string")
    return value


def _str_tuple(data: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = data.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"invalid JSON: {key!r} must be a list of strings")
    return tuple(value)


def _str_map(data: Mapping[str, Any], key: str) -> dict[str, str]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
        raise InvalidArgument(f"invalid JSON: {key!r} must map strings to strings")
    return dict(value)
