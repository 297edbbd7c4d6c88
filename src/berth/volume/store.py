"""Volume records: what a volume is called, which driver holds it, its labels and options.

Records live in the metadata database (``<data-root>/berth.db``)::

    volumes
      name   TEXT PRIMARY KEY   -- Docker's name rule, or 64 hex for an anonymous volume
      record TEXT NOT NULL      -- VolumeRecord as JSON

Every change is one transaction. The volume's data is the driver's business (``local.py``).
"""

from __future__ import annotations

import json
import re
import secrets
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from berth.errors import AlreadyExists, InvalidArgument

# Docker's rule for local volume names: an alphanumeric first character, then one or more.
_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS volumes (
    name TEXT PRIMARY KEY,
    record TEXT NOT NULL
);
"""


def validate_volume_name(name: str) -> None:
    """Raise Docker's error for a name the local driver refuses."""
    if not _NAME_RE.match(name):
        raise InvalidArgument(
            f'create {name}: "{name}" includes invalid characters for a local volume name, '
            'only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host '
            "directory, use absolute path")


def anonymous_name() -> str:
    return secrets.token_hex(32)


def now_rfc3339() -> str:
    """Docker's CreatedAt for volumes: seconds precision with the local offset (UTC here)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class VolumeRecord:
    name: str
    driver: str = "local"
    created_at: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, str] = field(default_factory=dict)
    anonymous: bool = False

    def to_json(self) -> str:
        return json.dumps({"name": self.name, "driver": self.driver,
                           "created_at": self.created_at, "labels": dict(self.labels),
                           "options": dict(self.options), "anonymous": self.anonymous},
                          separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> VolumeRecord:
        data: dict[str, Any] = json.loads(text)
        return cls(name=str(data["name"]), driver=str(data.get("driver", "local")),
                   created_at=str(data.get("created_at", "")),
                   labels=dict(data.get("labels") or {}),
                   options=dict(data.get("options") or {}),
                   anonymous=bool(data.get("anonymous", False)))


class VolumeStore:
    """Volume records, safe to use from the event loop thread and from worker threads."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA busy_timeout=5000")
        self._conn.executescript(_SCHEMA)

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def insert(self, record: VolumeRecord) -> None:
        try:
            with self._tx() as conn:
                conn.execute("INSERT INTO volumes (name, record) VALUES (?, ?)",
                             (record.name, record.to_json()))
        except sqlite3.IntegrityError as err:
            raise AlreadyExists(f"volume {record.name} exists already") from err

    def delete(self, name: str) -> None:
        with self._tx() as conn:
            conn.execute("DELETE FROM volumes WHERE name = ?", (name,))

    def get(self, name: str) -> VolumeRecord | None:
        with self._lock:
            row = self._conn.execute("SELECT record FROM volumes WHERE name = ?",
                                     (name,)).fetchone()
        return VolumeRecord.from_json(row[0]) if row else None

    def all(self) -> list[VolumeRecord]:
        with self._lock:
            rows = self._conn.execute("SELECT record FROM volumes").fetchall()
        return [VolumeRecord.from_json(r[0]) for r in rows]
