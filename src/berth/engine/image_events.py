"""Image events (load, tag, untag, delete, import, pull, push) around the image service.

``EventedImages`` stands where the API expects the image service and publishes what dockerd
logs after each operation that succeeded: the actor is the image ID (the reference for pull
and push), ``name`` the reference in its familiar form, plus the image's labels.
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, BinaryIO

from berth.engine.events import EventBus
from berth.errors import BerthError
from berth.reference import parse_reference

log = logging.getLogger(__name__)

Progress = Callable[[Mapping[str, Any]], None]

_LOADED = "Loaded image: "
_LOADED_ID = "Loaded image ID: "


def familiar(ref: str) -> str:
    try:
        return parse_reference(ref).familiar_string()
    except BerthError:
        return ref


class EventedImages:
    """The image service with events; every other attribute is the service's own."""

    def __init__(self, images: Any, bus: EventBus) -> None:
        self._images = images
        self._bus = bus

    def __getattr__(self, name: str) -> Any:
        return getattr(self._images, name)

    def _publish(self, action: str, image_id: str, name: str) -> None:
        attrs: dict[str, str] = {}
        try:
            config = self._images.get(image_id).config
            attrs.update(config.labels if config is not None else {})
        except BerthError:
            pass  # deleted: no labels to add
        attrs["name"] = name
        self._bus.publish("image", action, image_id, attrs)

    # -- the ImageBackend of berth.api.routes.images ----------------------------------------

    def list(self) -> Sequence[Any]:
        return self._images.list()  # type: ignore[no-any-return]

    def get(self, name: str) -> Any:
        return self._images.get(name)

    def history(self, name: str) -> Sequence[Any]:
        return self._images.history(name)  # type: ignore[no-any-return]

    def save(self, names: builtins.list[str], out: BinaryIO) -> None:
        self._images.save(names, out)

    def tag(self, src: str, target: str) -> None:
        self._images.tag(src, target)
        self._publish("tag", self._images.get(target).id, familiar(target))

    def remove(self, name: str, force: bool = False,
               prune: bool = True) -> Sequence[tuple[str, str]]:
        image_id = self._images.get(name).id
        items: Sequence[tuple[str, str]] = self._images.remove(name, force, prune)
        for kind, value in items:
            if kind == "Untagged":
                self._publish("untag", image_id, image_id)
            elif kind == "Deleted":
                self._publish("delete", value, value)
        return items

    def load(self, stream: BinaryIO) -> Sequence[str]:
        lines: Sequence[str] = self._images.load(stream)
        for line in lines:
            if line.startswith(_LOADED_ID):
                image_id = line[len(_LOADED_ID):].strip()
                self._publish("load", image_id, image_id)
            elif line.startswith(_LOADED):
                ref = line[len(_LOADED):].strip()
                try:
                    image_id = self._images.get(ref).id
                except BerthError:
                    continue
                self._publish("load", image_id, familiar(ref))
        return lines

    def import_rootfs(self, stream: BinaryIO, ref: str | None, changes: builtins.list[str],
                      message: str) -> str:
        image_id: str = self._images.import_rootfs(stream, ref, changes, message)
        self._publish("import", image_id, image_id)
        return image_id


class EventedPuller:
    """A puller that reports ``pull`` once the image is in."""

    def __init__(self, puller: Any, bus: EventBus) -> None:
        self._puller = puller
        self._bus = bus

    def pull(self, ref: str, auth: str | None, progress: Progress,
             platform: str | None = None, all_tags: bool = False) -> None:
        options: dict[str, Any] = {}
        if platform is not None:
            options["platform"] = platform
        if all_tags:
            options["all_tags"] = True
        self._puller.pull(ref, auth, progress, **options)
        name = familiar(ref)
        self._bus.publish("image", "pull", name, {"name": name})


class EventedPusher:
    def __init__(self, pusher: Any, bus: EventBus) -> None:
        self._pusher = pusher
        self._bus = bus

    def push(self, name: str, tag: str | None, auth: str | None, progress: Progress) -> None:
        self._pusher.push(name, tag, auth, progress)
        ref = familiar(f"{name}:{tag}" if tag else name)
        self._bus.publish("image", "push", ref, {"name": ref})
