"""The event bus, its filters and Docker's JSON shape for events."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field

import pytest

from berth.engine.events import (
    ContainerEvents,
    Event,
    EventBus,
    check_filters,
    matches,
    parse_timestamp,
    to_wire,
)
from berth.errors import ContainerNotFound, InvalidArgument


def ticking_bus() -> EventBus:
    clock = itertools.count(1_000_000_000_000_000_000, 1_000_000_000)
    return EventBus(capacity=8, clock=lambda: next(clock))


def test_history_window_and_capacity() -> None:
    bus = ticking_bus()
    for i in range(10):
        bus.publish("container", f"a{i}", "id")
    events = bus.history()
    assert [e.action for e in events] == [f"a{i}" for i in range(2, 10)]
    start = events[2].time_nano
    assert [e.action for e in bus.history(start, start + 2_000_000_000)] == ["a4", "a5", "a6"]


def test_time_is_strictly_increasing_with_a_coarse_clock() -> None:
    bus = EventBus(clock=lambda: 5)
    times = [bus.publish("image", "tag", "x").time_nano for _ in range(3)]
    assert times == [5, 6, 7]


def test_subscribe_replays_then_delivers() -> None:
    async def main() -> tuple[list[str], str]:
        bus = ticking_bus()
        first = bus.publish("container", "create", "c1")
        with bus.subscribe(since_nano=first.time_nano) as (past, sub):
            bus.publish("container", "start", "c1")
            live = await asyncio.wait_for(sub.get(), 5)
        return [e.action for e in past], live.action

    assert asyncio.run(main()) == (["create"], "start")


def test_publish_from_a_thread_reaches_the_loop() -> None:
    async def main() -> str:
        bus = ticking_bus()
        with bus.subscribe() as (past, sub):
            assert past == []
            await asyncio.to_thread(bus.publish, "image", "load", "sha256:ab")
            return (await asyncio.wait_for(sub.get(), 5)).action

    assert asyncio.run(main()) == "load"


def test_wire_shape_of_a_container_event() -> None:
    event = Event("container", "start", "abc", {"image": "busybox", "name": "web"},
                  1_796_300_925_530_896_454)
    assert to_wire(event) == {
        "status": "start", "id": "abc", "from": "busybox", "Type": "container",
        "Action": "start", "Actor": {"ID": "abc", "Attributes": {"image": "busybox",
                                                                  "name": "web"}},
        "scope": "local", "time": 1_796_300_925, "timeNano": 1_796_300_925_530_896_454}


def test_wire_shape_of_a_volume_event_has_no_legacy_fields() -> None:
    wire = to_wire(Event("volume", "create", "v1", {"driver": "local"}, 1))
    assert "status" not in wire and "id" not in wire and wire["Type"] == "volume"


C = Event("container", "exec_create: sh -c true", "0123abcd" * 8,
          {"image": "busybox", "name": "web", "tier": "front"}, 1)
IMG = Event("image", "tag", "sha256:feed", {"name": "me/app:1"}, 1)


@pytest.mark.parametrize(("event", "filters", "expected"), [
    (C, {}, True),
    (C, {"type": ["container"]}, True),
    (C, {"type": ["image"]}, False),
    (C, {"event": ["exec_create"]}, True),
    (C, {"event": ["start", "die"]}, False),
    (C, {"container": ["web"]}, True),
    (C, {"container": ["0123abcd"]}, True),
    (C, {"container": ["other"]}, False),
    (C, {"image": ["busybox:latest"]}, True),
    (C, {"image": ["docker.io/library/busybox"]}, True),
    (C, {"image": ["alpine"]}, False),
    (C, {"label": ["tier=front"]}, True),
    (C, {"label": ["tier"]}, True),
    (C, {"label": ["tier=back"]}, False),
    (C, {"type": ["container"], "container": ["web"], "event": ["die"]}, False),
    (IMG, {"image": ["me/app:1"]}, True),
    (IMG, {"image": ["sha256:feed"]}, True),
    (IMG, {"container": ["sha256:feed"]}, False),
])
def test_filters(event: Event, filters: dict[str, list[str]], expected: bool) -> None:
    assert matches(event, filters) is expected


def test_bad_filters() -> None:
    with pytest.raises(InvalidArgument, match="invalid filter 'colour'"):
        check_filters({"colour": ["red"]})
    with pytest.raises(InvalidArgument):
        check_filters({"type": ["spaceship"]})


def test_parse_timestamp() -> None:
    now = 1_000.0
    assert parse_timestamp("1796300907", now) == 1_796_300_907_000_000_000
    assert parse_timestamp("1796300907.5", now) == 1_796_300_907_500_000_000
    assert parse_timestamp("10m", now) == 400_000_000_000
    assert parse_timestamp("2026-12-03T12:28:45Z", now) // 10**9 == 1_796_300_925
    with pytest.raises(InvalidArgument):
        parse_timestamp("yesterday", now)


@dataclass
class _Config:
    image: str
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class _Record:
    name: str
    config: _Config


def test_container_events_keep_attributes_until_destroy() -> None:
    bus = ticking_bus()
    records = {"c1": _Record("web", _Config("busybox", {"tier": "front"}))}

    def lookup(cid: str) -> _Record:
        if cid not in records:
            raise ContainerNotFound(f"No such container: {cid}")
        return records[cid]

    sink = ContainerEvents(bus)
    sink.bind(lookup)
    seen: list[tuple[str, str]] = []
    sink.on_action(lambda action, cid: seen.append((action, cid)))
    sink("create", "c1", {"name": "web", "image": "busybox"})
    del records["c1"]  # removed: destroy comes after the record is gone
    sink("destroy", "c1", {"name": "web"})
    destroy = bus.history()[-1]
    assert destroy.attributes == {"tier": "front", "image": "busybox", "name": "web"}
    assert seen == [("create", "c1"), ("destroy", "c1")]
