"""The metadata database's connection, shared by the stores that keep tables in ``berth.db``.

One connection per store, used from the event loop thread and from worker threads alike: a lock
serialises access, every change is one ``BEGIN IMMEDIATE`` transaction, reads see the last
committed state. WAL lets the stores (containers, images, volumes) share the file.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from berth.errors import Internal


class SqliteDatabase:
    def __init__(self, path: Path, schema: str, what: str) -> None:
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA busy_timeout=5000")
            self._conn.executescript(schema)
        except sqlite3.Error as err:
            raise Internal(f"cannot open {what} database {path}: {err}") from err

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def query(self, sql: str, args: Iterable[object] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return list(self._conn.execute(sql, tuple(args)))
