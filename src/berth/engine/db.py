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
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from berth.engine.model import ContainerRecord
from berth.engine.records import from_plain, to_plain
from berth.errors import AlreadyExists, Internal

_SCHEMA = """
CREATE TABLE IF NOT EXISTS containers (
    id TEXT PRIMARY KEY,
    name TEXT UNIQUE NOT NULL,
    record TEXT NOT NULL
);
"""


class ContainerDB:
    """Container records, safe to use from the event loop thread and from worker threads."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
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

    def insert(self, record: ContainerRecord) -> None:
        try:
            with self._tx() as conn:
                conn.execute("INSERT INTO containers (id, name, record) VALUES (?, ?, ?)",
                             (record.id, record.name, _dump(record)))
        except sqlite3.IntegrityError as err:
            raise AlreadyExists(f"container {record.name} exists already") from err

    def update(self, record: ContainerRecord) -> None:
        with self._tx() as conn:
            cur = conn.execute("UPDATE containers SET name = ?, record = ? WHERE id = ?",
                               (record.name, _dump(record), record.id))
            if cur.rowcount != 1:
                raise Internal(f"container {record.id} vanished from the database")

    def delete(self, container_id: str) -> None:
        with self._tx() as conn:
            conn.execute("DELETE FROM containers WHERE id = ?", (container_id,))

    def get(self, container_id: str) -> ContainerRecord | None:
        with self._lock:
            row = self._conn.execute("SELECT record FROM containers WHERE id = ?",
                                     (container_id,)).fetchone()
        return _load(row[0]) if row else None

    def by_name(self, name: str) -> ContainerRecord | None:
        with self._lock:
            row = self._conn.execute("SELECT record FROM containers WHERE name = ?",
                                     (name,)).fetchone()
        return _load(row[0]) if row else None

    def by_id_prefix(self, prefix: str) -> list[ContainerRecord]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT record FROM containers WHERE substr(id, 1, ?) = ?",
                (len(prefix), prefix)).fetchall()
        return [_load(r[0]) for r in rows]

    def all(self) -> list[ContainerRecord]:
        with self._lock:
            rows = self._conn.execute("SELECT record FROM containers").fetchall()
        return [_load(r[0]) for r in rows]


def _dump(record: ContainerRecord) -> str:
    return json.dumps(to_plain(record), separators=(",", ":"))


def _load(text: str) -> ContainerRecord:
    return from_plain(ContainerRecord, json.loads(text))
