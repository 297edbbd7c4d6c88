"""The metadata database for containers (SQLite in WAL mode, ``<data-root>/berth.db``).

Schema::

    containers
      id     TEXT PRIMARY KEY   -- 64 hex
      name   TEXT UNIQUE        -- without the leading slash
      record TEXT NOT NULL      -- ContainerRecord as JSON (berth.engine.records)

Every change is one transaction, so a crash leaves a container either fully recorded or absent.
The image store keeps its own tables in the same file.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from berth.engine.model import ContainerRecord
from berth.engine.records import from_plain, to_plain
from berth.errors import AlreadyExists, Internal
from berth.sqlite_db import SqliteDatabase

_SCHEMA = """
CREATE TABLE IF NOT EXISTS containers (
    id TEXT PRIMARY KEY,
    name TEXT UNIQUE NOT NULL,
    record TEXT NOT NULL
);
"""


class ContainerDB(SqliteDatabase):
    """Container records, safe to use from the event loop thread and from worker threads."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, _SCHEMA, "container")

    def insert(self, record: ContainerRecord) -> None:
        try:
            with self.transaction() as conn:
                conn.execute("INSERT INTO containers (id, name, record) VALUES (?, ?, ?)",
                             (record.id, record.name, _dump(record)))
        except sqlite3.IntegrityError as err:
            raise AlreadyExists(f"container {record.name} exists already") from err

    def update(self, record: ContainerRecord) -> None:
        with self.transaction() as conn:
            cur = conn.execute("UPDATE containers SET name = ?, record = ? WHERE id = ?",
                               (record.name, _dump(record), record.id))
            if cur.rowcount != 1:
                raise Internal(f"container {record.id} vanished from the database")

    def delete(self, container_id: str) -> None:
        with self.transaction() as conn:
            conn.execute("DELETE FROM containers WHERE id = ?", (container_id,))

    def get(self, container_id: str) -> ContainerRecord | None:
        rows = self.query("SELECT record FROM containers WHERE id = ?", (container_id,))
        return _load(rows[0][0]) if rows else None

    def by_name(self, name: str) -> ContainerRecord | None:
        rows = self.query("SELECT record FROM containers WHERE name = ?", (name,))
        return _load(rows[0][0]) if rows else None

    def by_id_prefix(self, prefix: str) -> list[ContainerRecord]:
        rows = self.query("SELECT record FROM containers WHERE substr(id, 1, ?) = ?",
                          (len(prefix), prefix))
        return [_load(r[0]) for r in rows]

    def all(self) -> list[ContainerRecord]:
        return [_load(r[0]) for r in self.query("SELECT record FROM containers")]


def _dump(record: ContainerRecord) -> str:
    return json.dumps(to_plain(record), separators=(",", ":"))


def _load(text: str) -> ContainerRecord:
    return from_plain(ContainerRecord, json.loads(text))
