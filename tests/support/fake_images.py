"""An in-memory image store with the API routes' view of ``berth.image.store.ImageStore``.

Records are the real ``ImageRecord``/``HistoryEntry`` dataclasses; names are kept familiar
(``busybox:latest``, ``me/bb:1.0``) the way the real store reports them.
"""

from __future__ import annotations

import builtins
import hashlib
import threading
from collections.abc import Iterable
from dataclasses import replace
from typing import BinaryIO

from berth.errors import Conflict, ImageNotFound, InvalidArgument
from berth.image.records import HistoryEntry, ImageRecord
from berth.oci.digest import DiffID
from berth.oci.image import ImageConfig


def familiar(ref: str) -> str:
    """docker.io/library/busybox → busybox:latest (enough of the real rules for tests)."""
    for prefix in ("docker.io/library/", "docker.io/"):
        if ref.startswith(prefix):
            ref = ref[len(prefix):]
            break
    last = ref.rsplit("/", 1)[-1]
    if ":" not in last and "@" not in last:
        ref += ":latest"
    return ref


def make_image(seed: str, tags: Iterable[str] = (), created: str = "2026-12-03T12:26:40.96442457Z",
               parent: str = "", labels: dict[str, str] | None = None,
               cmd: tuple[str, ...] | None = ("sh",)) -> ImageRecord:
    image_id = "sha256:" + hashlib.sha256(seed.encode()).hexdigest()
    return ImageRecord(
        id=image_id,
        repo_tags=tuple(tags),
        repo_digests=(),
        created=created,
        config=ImageConfig(cmd=cmd, labels=labels or {}),
        diff_ids=(DiffID("sha256:" + hashlib.sha256(b"layer" + seed.encode()).hexdigest()),),
        size=1984459,
        architecture="amd64",
        os="linux",
        comment="Imported from -",
        parent=parent,
    )


class FakeImageStore:
    def __init__(self, images: Iterable[ImageRecord] = ()) -> None:
        self._lock = threading.Lock()
        self._images: dict[str, ImageRecord] = {}
        self.loaded: list[bytes] = []
        self.imports: builtins.list[tuple[bytes, str | None, builtins.list[str], str]] = []
        for img in images:
            self._images[img.id] = img

    # -- lookups ---------------------------------------------------------------------------------

    def list(self) -> list[ImageRecord]:
        with self._lock:
            return list(self._images.values())

    def get(self, name: str) -> ImageRecord:
        with self._lock:
            return self._find(name)

    def _find(self, name: str) -> ImageRecord:
        wanted = familiar(name)
        for img in self._images.values():
            if wanted in img.repo_tags:
                return img
        hex_part = name.removeprefix("sha256:")
        matches = [img for img in self._images.values()
                   if len(hex_part) >= 4 and img.id.removeprefix("sha256:").startswith(hex_part)]
        if len(matches) == 1:
            return matches[0]
        raise ImageNotFound(f"No such image: {name}")

    # -- names -----------------------------------------------------------------------------------

    def tag(self, src: str, target: str) -> None:
        with self._lock:
            img = self._find(src)
            name = familiar(target)
            for other in list(self._images.values()):
                if name in other.repo_tags:
                    self._images[other.id] = replace(
                        other, repo_tags=tuple(t for t in other.repo_tags if t != name))
            img = self._images[img.id]
            self._images[img.id] = replace(img, repo_tags=(*img.repo_tags, name))

    def remove(self, name: str, force: bool = False, prune: bool = True
               ) -> builtins.list[tuple[str, str]]:
        with self._lock:
            img = self._find(name)
            wanted = familiar(name)
            if wanted in img.repo_tags:
                rest = tuple(t for t in img.repo_tags if t != wanted)
                self._images[img.id] = replace(img, repo_tags=rest)
                out = [("Untagged", wanted)]
                if not rest:
                    del self._images[img.id]
                    out.append(("Deleted", img.id))
                return out
            if len(img.repo_tags) > 1 and not force:
                raise Conflict(f"conflict: unable to delete {img.id[7:19]} (must be forced) - "
                               "image is referenced in multiple repositories")
            del self._images[img.id]
            return [("Untagged", t) for t in img.repo_tags] + [("Deleted", img.id)]

    def history(self, name: str) -> builtins.list[HistoryEntry]:
        img = self.get(name)
        return [HistoryEntry(img.id, 1796300800, "", img.comment, img.size, img.repo_tags)]

    # -- archives --------------------------------------------------------------------------------

    def load(self, stream: BinaryIO) -> builtins.list[str]:
        data = stream.read()
        if not data.startswith(b"TAR"):
            raise InvalidArgument("invalid tar header")
        self.loaded.append(data)
        img = make_image(data.decode(errors="replace"), tags=("busybox:latest",))
        with self._lock:
            self._images[img.id] = img
        return ["Loaded image: busybox:latest"]

    def save(self, names: builtins.list[str], out: BinaryIO) -> None:
        images = [self.get(n) for n in names]  # every name resolves before output starts
        for img in images:
            out.write(b"TAR:" + img.id.encode() + b"\n")
            out.write(b"\0" * 70000)  # larger than one socket write, to exercise streaming

    def import_rootfs(self, stream: BinaryIO, ref: str | None, changes: builtins.list[str],
                      message: str = "") -> str:
        data = stream.read()
        self.imports.append((data, ref, builtins.list(changes), message))
        img = make_image(data.decode(errors="replace"), tags=(familiar(ref),) if ref else ())
        with self._lock:
            self._images[img.id] = img
        return img.id
