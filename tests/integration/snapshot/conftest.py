"""Fixtures for the snapshot integration tests: the real test images, built once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tests.support.images import TestImages, build_test_images

IMAGE_CACHE = Path(os.environ.get("BERTH_TEST_IMAGES", "/var/tmp/berth-test-images"))


@pytest.fixture(scope="session")
def snapshot_images() -> TestImages:
    """busybox and layered images made by umoci and skopeo (cached across sessions)."""
    return build_test_images(IMAGE_CACHE)
