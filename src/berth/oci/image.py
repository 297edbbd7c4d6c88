"""Image manifests, indexes and configs as typed records, with JSON codecs (pure, no I/O).

Content that came from elsewhere is kept as the bytes it arrived as (its digest names those bytes);
these records are views for reading it. ``to_json`` is only for documents berth creates.
The image config's container part keeps Docker's PascalCase keys (``Env``, ``Cmd``...), which the
OCI spec adopted too; top-level keys are lowercase (``architecture``, ``rootfs``, ``history``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from berth.errors import InvalidArgument
from berth.oci.descriptor import (
    Descriptor,
    _opt_str,
    _str_map,
    _str_tuple,
)
from berth.oci.digest import DiffID, parse_digest

EPOCH = "0001-01-01T00:00:00Z"  # what Docker shows for a config without "created"


def decode_json_object(raw: bytes, what: str) -> Mapping[str, Any]:
    """Decode ``raw`` as one JSON object or raise InvalidArgument naming ``what``."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise InvalidArgument(f"invalid {what}: {err}") from err
    if not isinstance(data, dict):
        raise InvalidArgument(f"invalid {what}: not a JSON object")
    return data


def encode_json(data: Any) -> bytes:
    """Compact JSON bytes, the form Docker writes its configs and manifests in."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def _descriptors(data: Mapping[str, Any], key: str) -> tuple[Descriptor, ...]:
    value = data.get(key)
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidArgument(f"invalid JSON: {key!r} must be a list")
    return tuple(Descriptor.from_json(v) for v in value)


def _schema_version(data: Mapping[str, Any]) -> int:
    version = data.get("schemaVersion")
    if version != 2:
        raise InvalidArgument(f"unsupported manifest schemaVersion: {version!r}")
    return 2


@dataclass(frozen=True)
class Manifest:
    config: Descriptor
    layers: tuple[Descriptor, ...]
    media_type: str | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)
    subject: Descriptor | None = None
    artifact_type: str | None = None
    schema_version: int = 2

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"schemaVersion": self.schema_version}
        if self.media_type:
            out["mediaType"] = self.media_type
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        out["config"] = self.config.to_json()
        out["layers"] = [layer.to_json() for layer in self.layers]
        if self.subject is not None:
            out["subject"] = self.subject.to_json()
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Manifest:
        _schema_version(data)
        config = data.get("config")
        if config is None:
            raise InvalidArgument("invalid manifest: no config descriptor")
        subject = data.get("subject")
        return cls(
            config=Descriptor.from_json(config),
            layers=_descriptors(data, "layers"),
            media_type=_opt_str(data, "mediaType"),
            annotations=_str_map(data, "annotations"),
            subject=Descriptor.from_json(subject) if subject is not None else None,
            artifact_type=_opt_str(data, "artifactType"),
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> Manifest:
        return cls.from_json(decode_json_object(raw, "manifest"))


@dataclass(frozen=True)
class Index:
    manifests: tuple[Descriptor, ...]
    media_type: str | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)
    schema_version: int = 2

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"schemaVersion": self.schema_version}
        if self.media_type:
            out["mediaType"] = self.media_type
        out["manifests"] = [m.to_json() for m in self.manifests]
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Index:
        _schema_version(data)
        return cls(
            manifests=_descriptors(data, "manifests"),
            media_type=_opt_str(data, "mediaType"),
            annotations=_str_map(data, "annotations"),
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> Index:
        return cls.from_json(decode_json_object(raw, "image index"))


@dataclass(frozen=True)
class Healthcheck:
    """Docker's healthcheck; durations in nanoseconds, 0 meaning "inherit"."""

    test: tuple[str, ...] = ()
    interval: int = 0
    timeout: int = 0
    start_period: int = 0
    retries: int = 0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"Test": list(self.test)}
        for key, value in (
            ("Interval", self.interval),
            ("Timeout", self.timeout),
            ("StartPeriod", self.start_period),
            ("Retries", self.retries),
        ):
            if value:
                out[key] = value
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Healthcheck:
        return cls(
            test=_str_tuple(data, "Test"),
            interval=_int(data, "Interval"),
            timeout=_int(data, "Timeout"),
            start_period=_int(data, "StartPeriod"),
            retries=_int(data, "Retries"),
        )


def _int(data: Mapping[str, Any], key: str) -> int:
    value = data.get(key) or 0
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidArgument(f"invalid JSON: {key!r} must be an integer")
    return value


def _opt_tuple(data: Mapping[str, Any], key: str) -> tuple[str, ...] | None:
    # null and absent differ from [] for Cmd/Entrypoint: "CMD []" clears an inherited command.
    if data.get(key) is None:
        return None
    return _str_tuple(data, key)


def _key_set(data: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = data.get(key)
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raise InvalidArgument(f"invalid JSON: {key!r} must be an object")
    return tuple(sorted(str(k) for k in value))


@dataclass(frozen=True)
class ImageConfig:
    """The container defaults an image carries (the ``config`` object of the image config)."""

    user: str = ""
    exposed_ports: tuple[str, ...] = ()  # "80/tcp"
    env: tuple[str, ...] = ()  # "KEY=value"
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    volumes: tuple[str, ...] = ()
    working_dir: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    stop_signal: str = ""
    healthcheck: Healthcheck | None = None
    on_build: tuple[str, ...] = ()
    shell: tuple[str, ...] = ()
    args_escaped: bool = False

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.user:
            out["User"] = self.user
        if self.exposed_ports:
            out["ExposedPorts"] = {p: {} for p in self.exposed_ports}
        if self.env:
            out["Env"] = list(self.env)
        if self.entrypoint is not None:
            out["Entrypoint"] = list(self.entrypoint)
        if self.cmd is not None:
            out["Cmd"] = list(self.cmd)
        if self.healthcheck is not None:
            out["Healthcheck"] = self.healthcheck.to_json()
        if self.args_escaped:
            out["ArgsEscaped"] = True
        if self.volumes:
            out["Volumes"] = {v: {} for v in self.volumes}
        if self.working_dir:
            out["WorkingDir"] = self.working_dir
        if self.on_build:
            out["OnBuild"] = list(self.on_build)
        if self.labels:
            out["Labels"] = dict(self.labels)
        if self.stop_signal:
            out["StopSignal"] = self.stop_signal
        if self.shell:
            out["Shell"] = list(self.shell)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> ImageConfig:
        if data is None:
            return cls()
        health = data.get("Healthcheck")
        return cls(
            user=_opt_str(data, "User") or "",
            exposed_ports=_key_set(data, "ExposedPorts"),
            env=_str_tuple(data, "Env"),
            entrypoint=_opt_tuple(data, "Entrypoint"),
            cmd=_opt_tuple(data, "Cmd"),
            volumes=_key_set(data, "Volumes"),
            working_dir=_opt_str(data, "WorkingDir") or "",
            labels=_str_map(data, "Labels"),
            stop_signal=_opt_str(data, "StopSignal") or "",
            healthcheck=Healthcheck.from_json(health) if isinstance(health, Mapping) else None,
            on_build=_str_tuple(data, "OnBuild"),
            shell=_str_tuple(data, "Shell"),
            args_escaped=bool(data.get("ArgsEscaped")),
        )


@dataclass(frozen=True)
class RootFS:
    diff_ids: tuple[DiffID, ...] = ()
    type: str = "layers"

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "diff_ids": list(self.diff_ids)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RootFS:
        kind = _opt_str(data, "type") or ""
        if kind != "layers":
            raise InvalidArgument(f"invalid image config: rootfs type {kind!r} is not 'layers'")
        return cls(tuple(DiffID(parse_digest(d)) for d in _str_tuple(data, "diff_ids")), kind)


@dataclass(frozen=True)
class History:
    created: str | None = None
    created_by: str = ""
    author: str = ""
    comment: str = ""
    empty_layer: bool = False

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.created:
            out["created"] = self.created
        if self.author:
            out["author"] = self.author
        if self.created_by:
            out["created_by"] = self.created_by
        if self.comment:
            out["comment"] = self.comment
        if self.empty_layer:
            out["empty_layer"] = True
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> History:
        return cls(
            created=_opt_str(data, "created"),
            created_by=_opt_str(data, "created_by") or "",
            author=_opt_str(data, "author") or "",
            comment=_opt_str(data, "comment") or "",
            empty_layer=bool(data.get("empty_layer")),
        )


@dataclass(frozen=True)
class Image:
    """The whole image config document; its digest is the image ID."""

    architecture: str
    os: str
    rootfs: RootFS
    config: ImageConfig = field(default_factory=ImageConfig)
    created: str | None = None
    author: str = ""
    history: tuple[History, ...] = ()
    variant: str | None = None
    os_version: str | None = None
    # Docker's own top-level fields.
    comment: str = ""
    docker_version: str = ""
    parent: str = ""
    container: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"architecture": self.architecture}
        if self.author:
            out["author"] = self.author
        if self.comment:
            out["comment"] = self.comment
        out["config"] = self.config.to_json()
        if self.container:
            out["container"] = self.container
        if self.created:
            out["created"] = self.created
        if self.docker_version:
            out["docker_version"] = self.docker_version
        if self.history:
            out["history"] = [h.to_json() for h in self.history]
        out["os"] = self.os
        if self.os_version:
            out["os.version"] = self.os_version
        if self.parent:
            out["parent"] = self.parent
        out["rootfs"] = self.rootfs.to_json()
        if self.variant:
            out["variant"] = self.variant
        return out

    def to_bytes(self) -> bytes:
        return encode_json(self.to_json())

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Image:
        rootfs = data.get("rootfs")
        if not isinstance(rootfs, Mapping):
            raise InvalidArgument("invalid image config: no rootfs")
        config = data.get("config")
        history = data.get("history") or []
        if not isinstance(history, list) or not all(isinstance(h, Mapping) for h in history):
            raise InvalidArgument("invalid image config: history must be a list of objects")
        return cls(
            architecture=_opt_str(data, "architecture") or "",
            os=_opt_str(data, "os") or "",
            rootfs=RootFS.from_json(rootfs),
            config=ImageConfig.from_json(config if isinstance(config, Mapping) else None),
            created=_opt_str(data, "created"),
            author=_opt_str(data, "author") or "",
            history=tuple(History.from_json(h) for h in history),
            variant=_opt_str(data, "variant"),
            os_version=_opt_str(data, "os.version"),
            comment=_opt_str(data, "comment") or "",
            docker_version=_opt_str(data, "docker_version") or "",
            parent=_opt_str(data, "parent") or "",
            container=_opt_str(data, "container") or "",
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> Image:
        return cls.from_json(decode_json_object(raw, "image config"))


__all__ = [
    "EPOCH",
    "Healthcheck",
    "History",
    "Image",
    "ImageConfig",
    "Index",
    "Manifest",
    "RootFS",
    "decode_json_object",
    "encode_json",
]
