"""The ``filters`` of ``POST /containers/prune``: ``until``, ``label`` and ``label!``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from berth.engine import logs
from berth.engine.events import parse_timestamp
from berth.engine.model import ContainerRecord, ContainerState
from berth.engine.stats import directory_size
from berth.errors import InvalidArgument

_KEYS = {"until", "label", "label!"}
_STOPPED = (ContainerState.EXITED, ContainerState.CREATED, ContainerState.DEAD)


def _has_label(labels: Mapping[str, str], wanted: str) -> bool:
    key, sep, value = wanted.partition("=")
    return key in labels and (not sep or labels[key] == value)


def container_prune_filter(service: Any, filters: Mapping[str, list[str]], now: float
                           ) -> tuple[Callable[[ContainerRecord], bool], dict[str, int]]:
    """(which stopped containers to prune, the writable-layer size of each candidate)."""
    for key in filters:
        if key not in _KEYS:
            raise InvalidArgument(f"invalid filter '{key}'")
    untils = [parse_timestamp(v, now) / 1e9 for v in filters.get("until", [])]
    labels = filters.get("label", [])
    not_labels = filters.get("label!", [])

    def match(record: ContainerRecord) -> bool:
        created = logs.parse_timestamp(record.created)
        if any(created >= until for until in untils):
            return False
        if not all(_has_label(record.config.labels, v) for v in labels):
            return False
        return not any(_has_label(record.config.labels, v) for v in not_labels)

    sizes: dict[str, int] = {}
    for record in service.all():
        if record.status.state in _STOPPED and match(record):
            upper = service.container_dir(record.id) / "upper"
            sizes[record.id] = directory_size(upper) if upper.is_dir() else 0
    return match, sizes
