"""Typed OCI/Docker image documents: parse what others write, write what berth creates."""

from __future__ import annotations

import json

import pytest

from berth.errors import InvalidArgument
from berth.oci import descriptor as mt
from berth.oci.descriptor import Descriptor, Platform, layer_compression
from berth.oci.image import (
    Healthcheck,
    History,
    Image,
    ImageConfig,
    Index,
    Manifest,
    RootFS,
    encode_json,
)

D1 = "sha256:" + "a" * 64
D2 = "sha256:" + "b" * 64

DOCKER_CONFIG = {
    "architecture": "amd64",
    "author": "someone",
    "comment": "hi",
    "config": {
        "Hostname": "",
        "User": "app",
        "Env": ["PATH=/usr/bin", "A=b"],
        "Cmd": None,
        "Entrypoint": ["/bin/sh", "-c"],
        "WorkingDir": "/srv",
        "ExposedPorts": {"80/tcp": {}, "53/udp": {}},
        "Volumes": {"/data": {}},
        "Labels": {"k": "v"},
        "StopSignal": "SIGQUIT",
        "Healthcheck": {"Test": ["CMD", "true"], "Interval": 1000000000, "Retries": 3},
        "OnBuild": ["RUN echo hi"],
        "Shell": ["/bin/bash", "-c"],
        "ArgsEscaped": True,
    },
    "container": "abc",
    "created": "2024-01-02T03:04:05.123456789Z",
    "docker_version": "20.10.24",
    "history": [
        {"created": "2024-01-02T03:04:05Z", "created_by": "/bin/sh -c #(nop) ADD file"},
        {"created_by": "CMD", "empty_layer": True, "comment": "c", "author": "a"},
    ],
    "os": "linux",
    "rootfs": {"type": "layers", "diff_ids": [D1]},
    "variant": "v8",
    "os.version": "1",
}


def test_image_config_fields() -> None:
    image = Image.from_bytes(json.dumps(DOCKER_CONFIG).encode())
    c = image.config
    assert c.user == "app"
    assert c.env == ("PATH=/usr/bin", "A=b")
    assert c.cmd is None
    assert c.entrypoint == ("/bin/sh", "-c")
    assert c.working_dir == "/srv"
    assert c.exposed_ports == ("53/udp", "80/tcp")
    assert c.volumes == ("/data",)
    assert c.labels == {"k": "v"}
    assert c.stop_signal == "SIGQUIT"
    assert c.healthcheck == Healthcheck(("CMD", "true"), interval=1_000_000_000, retries=3)
    assert c.on_build == ("RUN echo hi",)
    assert c.shell == ("/bin/bash", "-c")
    assert c.args_escaped
    assert image.rootfs == RootFS((D1,))  # type: ignore[arg-type]
    assert image.history[1] == History(None, "CMD", "a", "c", True)
    assert (image.architecture, image.os, image.variant, image.os_version) == (
        "amd64",
        "linux",
        "v8",
        "1",
    )
    assert (image.author, image.comment, image.docker_version) == ("someone", "hi", "20.10.24")


def test_image_round_trip() -> None:
    image = Image.from_bytes(json.dumps(DOCKER_CONFIG).encode())
    assert Image.from_bytes(image.to_bytes()) == image


def test_cmd_empty_list_differs_from_absent() -> None:
    assert ImageConfig.from_json({"Cmd": []}).cmd == ()
    assert ImageConfig.from_json({}).cmd is None
    assert ImageConfig(cmd=()).to_json() == {"Cmd": []}
    assert ImageConfig().to_json() == {}


@pytest.mark.parametrize(
    "doc",
    [
        {"os": "linux"},
        {"rootfs": {"type": "other", "diff_ids": []}},
        {"rootfs": {"type": "layers", "diff_ids": ["sha256:zz"]}},
        {"rootfs": {"type": "layers"}, "history": "no"},
        {"rootfs": {"type": "layers"}, "config": {"Env": "PATH=/"}},
    ],
)
def test_bad_configs_are_invalid_argument(doc: dict[str, object]) -> None:
    with pytest.raises(InvalidArgument):
        Image.from_bytes(json.dumps(doc).encode())


def test_not_json_is_invalid_argument() -> None:
    with pytest.raises(InvalidArgument, match="invalid image config"):
        Image.from_bytes(b"\xff{")
    with pytest.raises(InvalidArgument):
        Image.from_bytes(b"[]")


def test_manifest_and_descriptor_codecs() -> None:
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_CONFIG, "digest": D1, "size": 10},
        "layers": [
            {
                "mediaType": mt.OCI_LAYER_GZIP,
                "digest": D2,
                "size": 20,
                "urls": ["https://x"],
                "annotations": {"a": "b"},
            }
        ],
        "annotations": {"org.opencontainers.image.created": "now"},
    }
    manifest = Manifest.from_bytes(json.dumps(doc).encode())
    assert manifest.config == Descriptor(mt.OCI_CONFIG, D1, 10)  # type: ignore[arg-type]
    assert manifest.layers[0].urls == ("https://x",)
    assert manifest.to_json() == doc
    assert Manifest.from_bytes(encode_json(manifest.to_json())) == manifest


def test_index_with_platforms() -> None:
    platform = {"architecture": "arm64", "os": "linux", "variant": "v8", "os.features": ["x"]}
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [
            {"mediaType": mt.OCI_MANIFEST, "digest": D1, "size": 1, "platform": platform}
        ],
    }
    index = Index.from_bytes(json.dumps(doc).encode())
    assert index.manifests[0].platform == Platform("arm64", "linux", None, ("x",), "v8")
    assert index.to_json() == doc


@pytest.mark.parametrize(
    "desc",
    [
        {"mediaType": "x", "digest": D1},
        {"mediaType": "x", "digest": D1, "size": -1},
        {"mediaType": "x", "digest": "sha256:../x", "size": 1},
        "not an object",
    ],
)
def test_bad_descriptors(desc: object) -> None:
    with pytest.raises(InvalidArgument):
        Descriptor.from_json(desc)


def test_schema_version_must_be_2() -> None:
    with pytest.raises(InvalidArgument, match="schemaVersion"):
        Manifest.from_json({"schemaVersion": 1, "config": {}})


@pytest.mark.parametrize(
    ("media_type", "kind"),
    [
        (mt.OCI_LAYER, ""),
        (mt.DOCKER_LAYER, ""),
        (mt.OCI_LAYER_GZIP, "gzip"),
        (mt.DOCKER_LAYER_GZIP, "gzip"),
        (mt.DOCKER_FOREIGN_LAYER_GZIP, "gzip"),
        (mt.OCI_LAYER_ZSTD, "zstd"),
        (mt.DOCKER_LAYER_ZSTD, "zstd"),
    ],
)
def test_layer_compression(media_type: str, kind: str) -> None:
    assert layer_compression(media_type) == kind
