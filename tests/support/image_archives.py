"""Builders for image archives in the layouts Docker and OCI tools write (tests only).

Everything is made in memory with ``tarfile``: layer tars from a dict of path -> bytes, image
configs, ``docker save`` archives (20.10 and 25+ layouts) and OCI image layouts.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from berth.content.store import LocalContentStore
from berth.image.store import ImageStore
from berth.snapshot.layers import LayerStore


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_tar(files: dict[str, bytes | None]) -> bytes:
    """A layer tar: ``None`` makes a directory; names ending in ``/`` too."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name.rstrip("/"))
            info.mtime = 1_600_000_000
            if data is None or name.endswith("/"):
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            else:
                info.size = len(data)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def config_json(
    layers: list[bytes],
    *,
    cmd: list[str] | None = None,
    env: list[str] | None = None,
    history: list[dict[str, Any]] | None = None,
    created: str = "2024-01-02T03:04:05.123456789Z",
    diff_ids: list[str] | None = None,
) -> bytes:
    config: dict[str, Any] = {"Env": env or ["PATH=/bin"]}
    if cmd is not None:
        config["Cmd"] = cmd
    doc = {
        "architecture": "amd64",
        "config": config,
        "created": created,
        "history": history
        if history is not None
        else [{"created": created, "created_by": f"ADD layer{i}"} for i in range(len(layers))],
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids or [sha(x) for x in layers]},
    }
    return json.dumps(doc, separators=(",", ":")).encode()


@dataclass
class TarBuilder:
    """An archive being built; ``entries`` in the order they will be written."""

    entries: list[tarfile.TarInfo] = field(default_factory=list)
    data: dict[str, bytes] = field(default_factory=dict)

    def add(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = 0o644
        self.entries.append(info)
        self.data[name] = data

    def symlink(self, name: str, target: str) -> None:
        info = tarfile.TarInfo(name)
        info.type = tarfile.SYMTYPE
        info.linkname = target
        self.entries.append(info)

    def build(self, compress: bool = False) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for info in self.entries:
                if info.issym():
                    tar.addfile(info)
                else:
                    info.size = len(self.data[info.name])
                    tar.addfile(info, io.BytesIO(self.data[info.name]))
        raw = buf.getvalue()
        return gzip.compress(raw) if compress else raw


def docker_archive(
    images: list[tuple[bytes, list[bytes], list[str]]],
    *,
    gzip_layers: bool = False,
    link_duplicates: bool = True,
) -> TarBuilder:
    """``docker save`` 20.10: ``images`` are (config, layer tars, repo tags)."""
    b = TarBuilder()
    manifest = []
    seen: dict[str, str] = {}
    for config, layers, tags in images:
        paths = []
        for i, layer in enumerate(layers):
            blob = gzip.compress(layer) if gzip_layers else layer
            v1 = hashlib.sha256(b"v1 %d" % i + blob + config).hexdigest()
            path = f"{v1}/layer.tar"
            if link_duplicates and sha(blob) in seen:
                b.symlink(path, f"../{seen[sha(blob)]}")
            else:
                b.add(path, blob)
                seen[sha(blob)] = path
            paths.append(path)
        config_name = sha(config).split(":")[1] + ".json"
        b.add(config_name, config)
        manifest.append({"Config": config_name, "RepoTags": tags or None, "Layers": paths})
    b.add("manifest.json", json.dumps(manifest).encode())
    return b


def _manifest(config: bytes, blobs: list[bytes], media: str) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha(config),
                "size": len(config),
            },
            "layers": [{"mediaType": media, "digest": sha(x), "size": len(x)} for x in blobs],
        }
    ).encode()


def oci_layout(
    config: bytes,
    layers: list[bytes],
    *,
    ref_name: str | None = None,
    containerd_name: str | None = None,
    gzip_layers: bool = True,
    docker_manifest_tags: list[str] | None = None,
) -> tuple[TarBuilder, bytes]:
    """An OCI image layout (and Docker 25's manifest.json when tags are given), and its manifest."""
    b = TarBuilder()
    blobs = [gzip.compress(x, mtime=0) if gzip_layers else x for x in layers]
    media = "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if gzip_layers else "")
    manifest = _manifest(config, blobs, media)
    b.add("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
    for blob in [*blobs, config, manifest]:
        name = "blobs/sha256/" + sha(blob).split(":")[1]
        if name not in b.data:
            b.add(name, blob)
    annotations = {}
    if ref_name:
        annotations["org.opencontainers.image.ref.name"] = ref_name
    if containerd_name:
        annotations["io.containerd.image.name"] = containerd_name
    desc: dict[str, Any] = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": sha(manifest),
        "size": len(manifest),
    }
    if annotations:
        desc["annotations"] = annotations
    b.add("index.json", json.dumps({"schemaVersion": 2, "manifests": [desc]}).encode())
    if docker_manifest_tags is not None:
        entry = {
            "Config": "blobs/sha256/" + sha(config).split(":")[1],
            "RepoTags": docker_manifest_tags,
            "Layers": ["blobs/sha256/" + sha(x).split(":")[1] for x in blobs],
        }
        b.add("manifest.json", json.dumps([entry]).encode())
    return b, manifest


def listing(root: Path) -> dict[str, int]:
    """Every path under a data root with its size (-1 for directories), database files aside."""
    return {
        str(p.relative_to(root)): p.stat().st_size if p.is_file() else -1
        for p in sorted(root.rglob("*"))
        if not p.name.startswith("berth.db")
    }


def make_store(root: Path) -> ImageStore:
    """An image store on real files under ``root``, as the daemon lays it out."""
    return ImageStore(
        LocalContentStore(root / "content"),
        LayerStore(root / "layers", durable=False),
        root / "berth.db",
    )
