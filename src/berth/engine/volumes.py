"""The volume service: create, list, inspect, remove and prune volumes; who uses which.

Records are in ``berth.volume.store``, data in the ``local`` driver. Which containers use a
volume is the container-mount table's answer (``berth.engine.mounts.MountTable``): a volume
any container refers to, running or not, cannot be removed.

The record decides whether a volume exists. Create makes the directory, then the record;
remove deletes the record, then the directory. A crash between the two leaves a directory
without a record, which ``recover`` deletes at the next start: a volume is whole or gone.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from berth.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from berth.volume.local import DRIVER, LocalDriver
from berth.volume.store import (
    VolumeRecord,
    VolumeStore,
    anonymous_name,
    now_rfc3339,
    validate_volume_name,
)

log = logging.getLogger(__name__)

EventSink = Callable[[str, str, dict[str, str]], object]  # (action, volume name, attributes)

Filters = Mapping[str, list[str]]
_LIST_FILTERS = ("dangling", "name", "label", "driver")
_PRUNE_FILTERS = ("label", "label!", "all")


class VolumeUsers(Protocol):
    def users(self, volume: str) -> list[str]: ...


class VolumeNotFound(NotFound):
    """``get NAME: no such volume``."""


@dataclass(frozen=True)
class PruneReport:
    deleted: tuple[str, ...]
    space_reclaimed: int


class VolumeService:
    def __init__(self, store: VolumeStore, driver: LocalDriver, users: VolumeUsers,
                 on_event: EventSink | None = None) -> None:
        self._store = store
        self._driver = driver
        self._users = users
        self._on_event = on_event or (lambda action, name, attrs: None)
        self._lock = threading.Lock()  # create-or-get and remove are check-then-act

    def close(self) -> None:
        for record in self._store.all():
            if record.options.get("type"):
                self._driver.unmount(record.name)
        self._store.close()

    def recover(self) -> None:
        """At start: delete the directories that belong to no volume record."""
        self._driver.sweep({r.name for r in self._store.all()})

    # -- lookup -----------------------------------------------------------------------------

    def get(self, name: str) -> VolumeRecord:
        record = self._store.get(name)
        if record is None:
            raise VolumeNotFound(f"get {name}: no such volume")
        return record

    def mountpoint(self, name: str) -> Path:
        return self._driver.path(name)

    def users(self, name: str) -> list[str]:
        return self._users.users(name)

    # -- create -----------------------------------------------------------------------------

    def create(self, name: str | None = None, driver: str = "", opts: Mapping[str, str] | None
               = None, labels: Mapping[str, str] | None = None, *,
               anonymous: bool = False) -> VolumeRecord:
        driver = driver or DRIVER
        opts = dict(opts or {})
        anonymous = anonymous or not name
        name = name or anonymous_name()
        validate_volume_name(name)
        if driver != DRIVER:
            raise NotFound(f'create {name}: error looking up volume plugin {driver}: '
                           f'plugin "{driver}" not found')
        with self._lock:
            existing = self._store.get(name)
            if existing is not None:
                return existing  # Docker: creating an existing volume is not an error
            self._driver.create(name, opts)
            record = VolumeRecord(name=name, driver=driver, created_at=now_rfc3339(),
                                  labels=dict(labels or {}), options=opts, anonymous=anonymous)
            try:
                self._store.insert(record)
            except AlreadyExists:
                return self.get(name)
        self._on_event("create", name, {"driver": driver})
        return record

    def get_or_create(self, name: str) -> VolumeRecord:
        record = self._store.get(name)
        return record if record is not None else self.create(name)

    # -- use by containers ------------------------------------------------------------------

    def mount(self, name: str) -> Path:
        """The host directory holding the volume's data, mounting it first if it has options."""
        record = self.get(name)
        return self._driver.mount(name, record.options)

    def is_empty(self, name: str) -> bool:
        return self._driver.is_empty(name)

    # -- list -------------------------------------------------------------------------------

    def list(self, filters: Filters | None = None) -> list[VolumeRecord]:
        filters = dict(filters or {})
        for key in filters:
            if key not in _LIST_FILTERS:
                raise InvalidArgument(f"Invalid filter '{key}'")
        records = sorted(self._store.all(), key=lambda r: r.name)
        out = []
        for record in records:
            if "dangling" in filters:
                want = _bool_filter(filters["dangling"], "dangling")
                if want != (not self._users.users(record.name)):
                    continue
            if "name" in filters and not any(n in record.name for n in filters["name"]):
                continue
            if "driver" in filters and record.driver not in filters["driver"]:
                continue
            if "label" in filters and not _labels_match(record.labels, filters["label"]):
                continue
            out.append(record)
        return out

    # -- remove -----------------------------------------------------------------------------

    def remove(self, name: str, force: bool = False) -> None:
        with self._lock:
            record = self._store.get(name)
            if record is None:
                if force:
                    return
                raise VolumeNotFound(f"get {name}: no such volume")
            users = self._users.users(name)
            if users:
                raise Conflict(f"remove {name}: volume is in use - [{', '.join(users)}]")
            # all or nothing across a crash: the record goes first, in one transaction; a
            # directory left without it is deleted at the next start (``recover``)
            self._driver.release(name)
            self._store.delete(name)
            self._driver.remove(name)
        self._on_event("destroy", name, {"driver": record.driver})

    def remove_if_unused(self, name: str) -> bool:
        try:
            self.remove(name)
        except Conflict:
            log.info("anonymous volume %s is still in use, not removed", name)
            return False
        except NotFound:
            return False
        return True

    def prune(self, filters: Filters | None = None) -> PruneReport:
        filters = dict(filters or {})
        for key in filters:
            if key not in _PRUNE_FILTERS:
                raise InvalidArgument(f"Invalid filter '{key}'")
        # API 1.41 (Docker 20.10) prunes every unused volume; ``all=false`` keeps named ones
        prune_all = _bool_filter(filters["all"], "all") if "all" in filters else True
        deleted: list[str] = []
        space = 0
        for record in self._store.all():
            if not prune_all and not record.anonymous:
                continue
            if "label" in filters and not _labels_match(record.labels, filters["label"]):
                continue
            if "label!" in filters and _labels_match(record.labels, filters["label!"],
                                                     any_of=True):
                continue
            if self._users.users(record.name):
                continue
            size = self._driver.size(record.name)
            if self.remove_if_unused(record.name):
                deleted.append(record.name)
                space += size
        return PruneReport(tuple(deleted), space)


def _bool_filter(values: list[str], key: str) -> bool:
    value = values[-1] if values else ""
    if value.lower() in ("1", "true"):
        return True
    if value.lower() in ("0", "false"):
        return False
    raise InvalidArgument(f"Invalid filter '{key}={value}'")


def _labels_match(labels: Mapping[str, str], wanted: list[str], any_of: bool = False) -> bool:
    def one(spec: str) -> bool:
        key, eq, value = spec.partition("=")
        if key not in labels:
            return False
        return not eq or labels[key] == value

    return any(one(w) for w in wanted) if any_of else all(one(w) for w in wanted)
