"""The daemon's event bus: what ``GET /events`` replays and streams.

Services publish (type, action, actor, attributes); the bus stamps the time, keeps the last
``capacity`` events for ``since`` replays (dockerd keeps 256 in memory; nothing survives a
restart) and hands each one to the subscribers. Publishing is thread-safe: image operations run
in the API's worker threads, container operations on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from berth.engine.logs import parse_since
from berth.errors import BerthError, InvalidArgument

log = logging.getLogger(__name__)

DEFAULT_CAPACITY = 1024
SUBSCRIBER_QUEUE = 4096  # a subscriber this far behind loses events rather than the daemon memory

EVENT_TYPES = ("container", "image", "volume", "network", "daemon", "plugin", "service", "node",
               "secret", "config")
FILTER_KEYS = {"config", "container", "daemon", "event", "image", "label", "network", "node",
               "plugin", "scope", "secret", "service", "type", "volume"}


@dataclass(frozen=True)
class Event:
    type: str
    action: str
    actor_id: str
    attributes: Mapping[str, str] = field(default_factory=dict)
    time_nano: int = 0
    scope: str = "local"


class Subscription:
    """Events published after ``EventBus.subscribe`` opened it, in order, until closed."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue: asyncio.Queue[Event] = asyncio.Queue(SUBSCRIBER_QUEUE)
        self.dropped = 0

    def _offer(self, event: Event) -> None:
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1

    def deliver(self, event: Event) -> None:
        """Called from any thread."""
        try:
            if threading.current_thread() is threading.main_thread() and \
                    _running_loop() is self._loop:
                self._offer(event)
            else:
                self._loop.call_soon_threadsafe(self._offer, event)
        except RuntimeError:  # the loop is closed: the daemon is going down
            pass

    async def get(self) -> Event:
        return await self._queue.get()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class EventBus:
    def __init__(self, capacity: int = DEFAULT_CAPACITY,
                 clock: Callable[[], int] = time.time_ns) -> None:
        self._history: deque[Event] = deque(maxlen=capacity)
        self._subscribers: list[Subscription] = []
        self._lock = threading.Lock()
        self._clock = clock

    def publish(self, type: str, action: str, actor_id: str,
                attributes: Mapping[str, str] | None = None) -> Event:
        with self._lock:
            now = self._clock()
            if self._history and now <= self._history[-1].time_nano:
                now = self._history[-1].time_nano + 1  # keep the order strict for since/until
            event = Event(type, action, actor_id, dict(attributes or {}), now)
            self._history.append(event)
            subscribers = list(self._subscribers)
        for sub in subscribers:
            sub.deliver(event)
        return event

    def history(self, since_nano: int | None = None,
                until_nano: int | None = None) -> list[Event]:
        with self._lock:
            events = list(self._history)
        return [e for e in events if (since_nano is None or e.time_nano >= since_nano)
                and (until_nano is None or e.time_nano <= until_nano)]

    @contextmanager
    def subscribe(self, since_nano: int | None = None
                  ) -> Iterator[tuple[list[Event], Subscription]]:
        """(the past events from ``since_nano``, a subscription to what follows), atomically,
        so no event is both replayed and delivered, or lost between the two."""
        sub = Subscription(asyncio.get_running_loop())
        with self._lock:
            past = [e for e in self._history if since_nano is not None
                    and e.time_nano >= since_nano]
            self._subscribers.append(sub)
        try:
            yield past, sub
        finally:
            with self._lock:
                self._subscribers.remove(sub)


# -- container events ---------------------------------------------------------------------------


class ContainerEvents:
    """The container service's ``on_event`` sink: adds what Docker puts on every container
    event (the image, the name, the container's labels) and publishes it.

    Attributes are remembered per container, since ``destroy`` comes after the record is gone.
    """

    def __init__(self, bus: EventBus) -> None:
        self._bus = bus
        self._lookup: Callable[[str], Any] | None = None
        self._known: dict[str, dict[str, str]] = {}
        self._listeners: list[Callable[[str, str], None]] = []

    def bind(self, lookup: Callable[[str], Any]) -> None:
        """``lookup(id)`` → the container record (the service, built after this sink)."""
        self._lookup = lookup

    def on_action(self, listener: Callable[[str, str], None]) -> None:
        """Also tell ``listener(action, container_id)`` (the exec service forgets on destroy)."""
        self._listeners.append(listener)

    def _base(self, container_id: str) -> dict[str, str]:
        base = self._known.get(container_id)
        if base is not None or self._lookup is None:
            return dict(base or {})
        try:
            record = self._lookup(container_id)
        except BerthError:
            return {}
        base = dict(record.config.labels)
        base["image"] = record.config.image
        base["name"] = record.name
        self._known[container_id] = base
        return dict(base)

    def __call__(self, action: str, container_id: str, attrs: dict[str, str]) -> None:
        attributes = self._base(container_id)
        attributes.update(attrs)
        if action == "rename" and "name" in attrs and container_id in self._known:
            self._known[container_id]["name"] = attrs["name"]
        self._bus.publish("container", action, container_id, attributes)
        if action == "destroy":
            self._known.pop(container_id, None)
        for listener in self._listeners:
            try:
                listener(action, container_id)
            except Exception:  # noqa: BLE001 - a listener must not break the service's work
                log.exception("event listener failed for %s %s", action, container_id)


# -- wire shape and filters ---------------------------------------------------------------------


def to_wire(event: Event) -> dict[str, Any]:
    """Docker's JSON for one event, with the pre-1.22 ``status``/``id``/``from`` fields that
    dockerd still sends for container and image events."""
    out: dict[str, Any] = {}
    if event.type in ("container", "image"):
        out["status"] = event.action
        out["id"] = event.actor_id
        if event.type == "container" and "image" in event.attributes:
            out["from"] = event.attributes["image"]
    out.update({
        "Type": event.type, "Action": event.action,
        "Actor": {"ID": event.actor_id, "Attributes": dict(event.attributes)},
        "scope": event.scope, "time": event.time_nano // 1_000_000_000,
        "timeNano": event.time_nano,
    })
    return out


def check_filters(filters: Mapping[str, list[str]]) -> None:
    for key, values in filters.items():
        if key not in FILTER_KEYS:
            raise InvalidArgument(f"invalid filter '{key}'")
        if key == "type":
            for v in values:
                if v not in EVENT_TYPES:
                    raise InvalidArgument(f"unknown event type {v!r}")


def _image_names(value: str) -> set[str]:
    names = {value}
    if value.startswith("docker.io/library/"):
        value = value[len("docker.io/library/"):]
        names.add(value)
    last = value.rsplit("/", 1)[-1]
    if ":" not in last and "@" not in last:
        names.add(value + ":latest")
    elif value.endswith(":latest"):
        names.add(value[: -len(":latest")])
    return names


def matches(event: Event, filters: Mapping[str, list[str]]) -> bool:
    """dockerd's event filter: every key must match one of its values."""
    attrs = event.attributes
    for key, values in filters.items():
        if not values:
            continue
        if key == "type":
            ok = event.type in values
        elif key == "event":
            action = event.action.split(":", 1)[0]
            ok = event.action in values or action in values
        elif key == "container":
            ok = event.type == "container" and any(
                v in (event.actor_id, attrs.get("name")) or
                (len(v) >= 1 and event.actor_id.startswith(v)) for v in values)
        elif key == "image":
            candidates = {attrs.get("image", ""), attrs.get("name", "")} \
                if event.type in ("container", "image") else set()
            if event.type == "image":
                candidates.add(event.actor_id)
            candidates.discard("")
            wanted = set().union(*(_image_names(v) for v in values))
            ok = any(_image_names(c) & wanted for c in candidates)
        elif key == "label":
            ok = all(_label_match(attrs, v) for v in values)
        elif key in ("volume", "network", "daemon", "plugin", "service", "node", "secret",
                     "config"):
            ok = event.type == key and any(
                v in (event.actor_id, attrs.get("name")) for v in values)
        elif key == "scope":
            ok = event.scope in values
        else:
            ok = False
        if not ok:
            return False
    return True


def _label_match(attrs: Mapping[str, str], wanted: str) -> bool:
    key, sep, value = wanted.partition("=")
    return key in attrs and (not sep or attrs[key] == value)


def parse_timestamp(value: str, now: float) -> int:
    """``since``/``until``: Unix seconds (with an optional ``.nanoseconds`` part), RFC 3339,
    or a Go duration before now (``10m``) → nanoseconds."""
    value = value.strip()
    if not value:
        raise InvalidArgument("empty timestamp")
    if value.replace(".", "", 1).isdigit():
        secs, _, frac = value.partition(".")
        return int(secs) * 1_000_000_000 + int((frac + "000000000")[:9])
    try:
        seconds = parse_since(value, now)
    except (ValueError, BerthError) as err:
        raise InvalidArgument(f"failed to parse value {value} as a time") from err
    return int(seconds * 1_000_000_000)
