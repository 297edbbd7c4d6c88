"""The image store's metadata in SQLite (WAL), which may share the daemon's ``berth.db``.

Schema::

    images
      id        TEXT PRIMARY KEY   -- sha256:<hex>, the digest of the config blob (the image ID)
      manifest  TEXT NOT NULL      -- digest of the manifest blob in the content store
      parent    TEXT NOT NULL      -- parent image ID ('' when none; set by commit/build)
      created   TEXT NOT NULL      -- the config's "created" (RFC 3339)
      size      INTEGER NOT NULL   -- sum of the unpacked sizes of the image's layers
      chain     TEXT NOT NULL      -- JSON list of the layer chain IDs, bottom first
      added     REAL NOT NULL      -- when this store recorded the image (unix time)

    image_refs
      ref       TEXT PRIMARY KEY   -- full normalised reference: docker.io/library/busybox:latest
                                   --   or docker.io/library/busybox@sha256:...
      image_id  TEXT NOT NULL      -- images.id
      repo      TEXT NOT NULL      -- docker.io/library/busybox
      kind      TEXT NOT NULL      -- 'tag' or 'digest'

    pushed_blobs                   -- what a layer became when pushed compressed (dockerd's
                                   --   v2 metadata): a later push HEADs or mounts it instead
      diff_id    TEXT NOT NULL     -- the uncompressed layer
      registry   TEXT NOT NULL     -- host[:port] as in the reference (docker.io for the Hub)
      repo       TEXT NOT NULL     -- the repository path it was pushed to (library/busybox)
      digest     TEXT NOT NULL     -- the compressed blob the registry got
      size       INTEGER NOT NULL
      media_type TEXT NOT NULL
      added      REAL NOT NULL     -- when (unix time): the newest is tried first
      PRIMARY KEY (diff_id, registry, repo)

Every change is one transaction; a reference never names an image that is not recorded.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from berth.oci.digest import ChainID, DiffID, Digest
from berth.sqlite_db import SqliteDatabase

_SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY,
    manifest TEXT NOT NULL,
    parent TEXT NOT NULL DEFAULT '',
    created TEXT NOT NULL,
    size INTEGER NOT NULL,
    chain TEXT NOT NULL,
    added REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS image_refs (
    ref TEXT PRIMARY KEY,
    image_id TEXT NOT NULL,
    repo TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('tag', 'digest'))
);
CREATE INDEX IF NOT EXISTS image_refs_by_image ON image_refs(image_id);
CREATE INDEX IF NOT EXISTS images_by_parent ON images(parent);
CREATE TABLE IF NOT EXISTS pushed_blobs (
    diff_id TEXT NOT NULL,
    registry TEXT NOT NULL,
    repo TEXT NOT NULL,
    digest TEXT NOT NULL,
    size INTEGER NOT NULL,
    media_type TEXT NOT NULL,
    added REAL NOT NULL,
    PRIMARY KEY (diff_id, registry, repo)
);
"""


@dataclass(frozen=True)
class ImageRow:
    id: str
    manifest: Digest
    parent: str
    created: str
    size: int
    chain: tuple[ChainID, ...]


@dataclass(frozen=True)
class RefRow:
    ref: str
    image_id: str
    repo: str
    kind: str  # "tag" | "digest"


@dataclass(frozen=True)
class PushedBlob:
    diff_id: DiffID
    registry: str
    repo: str
    digest: Digest
    size: int
    media_type: str


class ImageDB(SqliteDatabase):
    """Thread-safe access to the two tables; reads see the last committed state."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, _SCHEMA, "image")

    # -- reads -------------------------------------------------------------------------------

    def image(self, image_id: str) -> ImageRow | None:
        rows = self.query(_IMAGE_SELECT + " WHERE id = ?", (image_id,))
        return _image_row(rows[0]) if rows else None

    def images(self) -> list[ImageRow]:
        return [_image_row(r) for r in self.query(_IMAGE_SELECT + " ORDER BY created DESC")]

    def ids_with_prefix(self, hex_prefix: str) -> list[str]:
        # hex_prefix is validated hex by the caller, so LIKE wildcards cannot sneak in
        rows = self.query("SELECT id FROM images WHERE id LIKE ?", (f"sha256:{hex_prefix}%",))
        return [str(r[0]) for r in rows]

    def children(self, image_id: str) -> list[str]:
        return [
            str(r[0]) for r in self.query("SELECT id FROM images WHERE parent = ?", (image_id,))
        ]

    def resolve(self, ref: str) -> str | None:
        rows = self.query("SELECT image_id FROM image_refs WHERE ref = ?", (ref,))
        return str(rows[0][0]) if rows else None

    def refs_of(self, image_id: str) -> list[RefRow]:
        rows = self.query(
            "SELECT ref, image_id, repo, kind FROM image_refs WHERE image_id = ? ORDER BY ref",
            (image_id,),
        )
        return [RefRow(str(a), str(b), str(c), str(d)) for a, b, c, d in rows]

    def refs_in_repo(self, repo: str) -> list[RefRow]:
        rows = self.query(
            "SELECT ref, image_id, repo, kind FROM image_refs WHERE repo = ? ORDER BY ref", (repo,)
        )
        return [RefRow(str(a), str(b), str(c), str(d)) for a, b, c, d in rows]

    def pushed_blobs(self, diff_id: str) -> list[PushedBlob]:
        """Where the layer went compressed, on any registry; the newest first."""
        rows = self.query(
            "SELECT diff_id, registry, repo, digest, size, media_type FROM pushed_blobs"
            " WHERE diff_id = ? ORDER BY added DESC, registry, repo",
            (diff_id,),
        )
        return [
            PushedBlob(DiffID(str(a)), str(b), str(c), Digest(str(d)), int(e), str(f))
            for a, b, c, d, e, f in rows
        ]

    def all_refs(self) -> list[RefRow]:
        rows = self.query("SELECT ref, image_id, repo, kind FROM image_refs ORDER BY ref")
        return [RefRow(str(a), str(b), str(c), str(d)) for a, b, c, d in rows]


# -- writes, inside ``transaction()`` ----------------------------------------------------------


def insert_image(conn: sqlite3.Connection, row: ImageRow) -> None:
    conn.execute(
        "INSERT OR IGNORE INTO images (id, manifest, parent, created, size, chain, added)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            row.id,
            row.manifest,
            row.parent,
            row.created,
            row.size,
            json.dumps(row.chain),
            time.time(),
        ),
    )


def set_ref(conn: sqlite3.Connection, ref: RefRow) -> str | None:
    """Point ``ref`` at its image; returns the image it named before, if another."""
    old = conn.execute("SELECT image_id FROM image_refs WHERE ref = ?", (ref.ref,)).fetchone()
    conn.execute(
        "INSERT OR REPLACE INTO image_refs (ref, image_id, repo, kind) VALUES (?, ?, ?, ?)",
        (ref.ref, ref.image_id, ref.repo, ref.kind),
    )
    if old is None or old[0] == ref.image_id:
        return None
    return str(old[0])


def record_pushed_blob(conn: sqlite3.Connection, blob: PushedBlob) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO pushed_blobs"
        " (diff_id, registry, repo, digest, size, media_type, added) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (blob.diff_id, blob.registry, blob.repo, blob.digest, blob.size, blob.media_type,
         time.time()),
    )


def delete_ref(conn: sqlite3.Connection, ref: str) -> None:
    conn.execute("DELETE FROM image_refs WHERE ref = ?", (ref,))


def delete_image(conn: sqlite3.Connection, image_id: str) -> None:
    conn.execute("DELETE FROM image_refs WHERE image_id = ?", (image_id,))
    conn.execute("DELETE FROM images WHERE id = ?", (image_id,))


_IMAGE_SELECT = "SELECT id, manifest, parent, created, size, chain FROM images"


def _image_row(r: tuple[object, ...]) -> ImageRow:
    chain = json.loads(str(r[5]))
    return ImageRow(
        id=str(r[0]),
        manifest=Digest(str(r[1])),
        parent=str(r[2]),
        created=str(r[3]),
        size=int(str(r[4])),
        chain=tuple(ChainID(c) for c in chain),
    )
