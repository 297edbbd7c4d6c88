"""An image store on real files: content store, real LayerStore, SQLite, all under tmp_path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.image_archives import make_store

from berth.image.store import ImageStore


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    return tmp_path / "root"


@pytest.fixture
def store(data_root: Path) -> Iterator[ImageStore]:
    image_store = make_store(data_root)
    yield image_store
    image_store.close()
