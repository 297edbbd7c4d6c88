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
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from berth.errors import AlreadyExists, InvalidArgument
from berth.sqlite_db import SqliteDatabase

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


class VolumeStore(SqliteDatabase):
    """Volume records, safe to use from the event loop thread and from worker threads."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, _SCHEMA, "volume")

    def insert(self, record: VolumeRecord) -> None:
        try:
            with self.transaction() as conn:
                conn.execute("INSERT INTO volumes (name, record) VALUES (?, ?)",
                             (record.name, record.to_json()))
        except sqlite3.IntegrityError as err:
            raise AlreadyExists(f"volume {record.name} exists already") from err

    def delete(self, name: str) -> None:
        with self.transaction() as conn:
            conn.execute("DELETE FROM volumes WHERE name = ?", (name,))

    def get(self, name: str) -> VolumeRecord | None:
        rows = self.query("SELECT record FROM volumes WHERE name = ?", (name,))
        return VolumeRecord.from_json(rows[0][0]) if rows else None

    def all(self) -> list[VolumeRecord]:
        return [VolumeRecord.from_json(r[0]) for r in self.query("SELECT record FROM volumes")]
