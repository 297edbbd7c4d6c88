"""Images made by umoci and skopeo (tests/support/images.py) load with the config digest as ID."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
from tests.support.image_archives import make_store

from berth.image.store import ImageStore


def _config_digest(layout: Path) -> str:
    index = json.loads((layout / "index.json").read_text())
    digest = index["manifests"][0]["digest"].split(":")[1]
    manifest = json.loads((layout / "blobs" / "sha256" / digest).read_text())
    config = (layout / "blobs" / "sha256" / manifest["config"]["digest"].split(":")[1]).read_bytes()
    assert manifest["config"]["digest"] == "sha256:" + hashlib.sha256(config).hexdigest()
    return str(manifest["config"]["digest"])


@pytest.mark.parametrize("name", ["busybox", "layered"])
def test_real_images_load_from_both_formats(
    store: ImageStore, test_images: Any, tmp_path: Path, name: str
) -> None:
    expected = _config_digest(getattr(test_images, f"{name}_oci_dir"))
    with getattr(test_images, f"{name}_docker_tar").open("rb") as f:
        assert store.load(f) == [f"Loaded image: {name}:latest"]
    with getattr(test_images, f"{name}_oci_tar").open("rb") as f:
        assert store.load(f) == [f"Loaded image ID: {expected}"]
    record = store.get(f"{name}:latest")
    assert record.id == expected
    assert record.config.cmd == ("sh",)
    chain = store.layer_chain(record.id)
    assert len(chain) == len(record.diff_ids)
    assert record.size == sum(store._layers.size(c) for c in chain)

    out = io.BytesIO()
    store.save([f"{name}:latest"], out)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        assert "manifest.json" in tar.getnames()
    other = make_store(tmp_path / "other")
    try:
        assert other.load(io.BytesIO(out.getvalue())) == [f"Loaded image: {name}:latest"]
        assert other.get(f"{name}:latest").id == expected
    finally:
        other.close()
