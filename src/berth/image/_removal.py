"""``docker rmi`` with Docker 20.10's rules (untag vs delete, conflicts, parent pruning).

- By name: the name is untagged; the image is deleted only when no other name is left (digest
  names of the same repository go with the last tag). A container using the image forbids
  removing its last name unless forced.
- By ID: an image with one name (or one tag and digests of that repository) loses it and is
  deleted; with names in several repositories it needs ``force``.
- Hard conflicts (child images, running containers) cannot be forced; soft ones (other names,
  stopped containers) can. After a delete, untagged parents without other children go too.

``sweep_unreferenced`` is the start-up half: blobs and layers that no recorded image needs are
what an interrupted load, pull or commit wrote before it could record its image.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from berth.errors import Conflict, NotFound
from berth.image import refs
from berth.oci.digest import ChainID, Digest, chain_ids
from berth.oci.image import Manifest
from berth.reference import DEFAULT_TAG, Reference, parse_named, parse_reference

if TYPE_CHECKING:
    from berth.image.store import ImageStore

_CHILD, _RUNNING, _ACTIVE_REF, _STOPPED = 1, 2, 4, 8
_HARD = _CHILD | _RUNNING
_SOFT = _ACTIVE_REF | _STOPPED

log = logging.getLogger(__name__)

Records = list[tuple[str, str]]


class _ImageConflict(Conflict):
    def __init__(self, image_id: str, message: str, hard: bool, used: bool) -> None:
        how = "cannot be forced" if hard else "must be forced"
        super().__init__(f"conflict: unable to delete {_short(image_id)} ({how}) - {message}")
        self.used = used


def _short(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


def _is_id_prefix(image_id: str, text: str) -> bool:
    return image_id.startswith(text) or image_id.removeprefix("sha256:").startswith(text)


def _is_single_reference(rows: list[refs.RefRow]) -> bool:
    """One tag, or one tag plus digests of that same repository (or digests of one repo)."""
    if len(rows) <= 1:
        return len(rows) == 1
    digest_repos = {r.repo for r in rows if r.kind == "digest"}
    tags = [r for r in rows if r.kind == "tag"]
    if len(tags) > 1:
        return False
    single = tags[0] if tags else rows[0]
    return len(digest_repos) == 1 and single.repo in digest_repos


def _familiar(ref: str) -> str:
    return parse_reference(ref).familiar_string()


def _untag(store: ImageStore, ref: str, records: Records) -> None:
    with store._db.transaction() as conn:
        refs.delete_ref(conn, ref)
    records.append(("Untagged", _familiar(ref)))


def remove(store: ImageStore, name: str, force: bool, prune: bool) -> Records:
    image_id = store.resolve(name)
    records: Records = []
    repo_refs = store._db.refs_of(image_id)
    quiet = False
    if not _is_id_prefix(image_id, name):
        named = parse_named(name)
        if named.digest is not None:
            named = Reference(named.domain, named.path, None, named.digest)
        elif named.tag is None:
            named = named.with_tag(DEFAULT_TAG)
        users = store._users(image_id)
        if not force and _is_single_reference(repo_refs) and users:
            raise Conflict(
                f'conflict: unable to remove repository reference "{name}" (must force) - '
                f"container {users[0][0][:12]} is using its referenced image {_short(image_id)}"
            )
        _untag(store, named.string(), records)
        repo_refs = store._db.refs_of(image_id)
        if named.digest is None and not any(
            r.kind == "tag" and r.repo == named.name for r in repo_refs
        ):
            # the last tag of a repository takes that repository's digest names with it
            for r in [r for r in repo_refs if r.kind == "digest" and r.repo == named.name]:
                _untag(store, r.ref, records)
            repo_refs = store._db.refs_of(image_id)
        if repo_refs:
            return records
        quiet = True
    elif _is_single_reference(repo_refs):
        mask = _HARD if force else _HARD | (_SOFT & ~_ACTIVE_REF)
        conflict = _check(store, image_id, mask)
        if conflict is not None:
            raise conflict
        for r in sorted(repo_refs, key=lambda r: _familiar(r.ref)):
            _untag(store, r.ref, records)
    _delete(store, image_id, records, force, prune, quiet)
    return records


def _check(store: ImageStore, image_id: str, mask: int) -> _ImageConflict | None:
    if mask & _CHILD and store._db.children(image_id):
        return _ImageConflict(image_id, "image has dependent child images", True, False)
    users = store._users(image_id)
    running = [cid for cid, is_running in users if is_running]
    if mask & _RUNNING and running:
        message = f"image is being used by running container {running[0][:12]}"
        return _ImageConflict(image_id, message, True, True)
    if mask & _ACTIVE_REF and store._db.refs_of(image_id):
        return _ImageConflict(
            image_id, "image is referenced in multiple repositories", False, False
        )
    stopped = [cid for cid, is_running in users if not is_running]
    if mask & _STOPPED and stopped:
        message = f"image is being used by stopped container {stopped[0][:12]}"
        return _ImageConflict(image_id, message, False, True)
    return None


def _delete(
    store: ImageStore, image_id: str, records: Records, force: bool, prune: bool, quiet: bool
) -> None:
    conflict = _check(store, image_id, _HARD if force else _HARD | _SOFT)
    if conflict is not None:
        dangling = not store._db.refs_of(image_id) and not store._db.children(image_id)
        if quiet and (not dangling or conflict.used):
            return  # pruning a parent stops quietly at the first image still needed
        raise conflict
    row = store._db.image(image_id)
    if row is None:
        raise NotFound(f"No such image: {image_id}")
    manifest = store._manifest_for(image_id)
    for name in sorted(_familiar(r.ref) for r in store._db.refs_of(image_id)):
        records.append(("Untagged", name))
    with store._db.transaction() as conn:
        refs.delete_image(conn, image_id)
    records.append(("Deleted", image_id))
    if not store._users(image_id):  # a container's rootfs still stands on these layers
        _release(store, row, manifest, records)
    if prune and row.parent:
        _delete(store, row.parent, records, False, True, True)


def _release(store: ImageStore, row: refs.ImageRow, manifest: Manifest, records: Records) -> None:
    """Drop the layers and blobs no remaining image uses, top layer first (as Docker lists)."""
    remaining = store._db.images()
    chains_in_use = {c for other in remaining for c in other.chain} | store.leased_layers()
    for chain in reversed(row.chain):
        if chain in chains_in_use or not store._layers.exists(chain):
            continue
        store._layers.remove(chain)
        records.append(("Deleted", chain))
    blobs_in_use: set[str] = set()
    for other in remaining:
        blobs_in_use.update((other.id, other.manifest))
        try:
            blobs_in_use.update(d.digest for d in store._manifest_for(other.id).layers)
        except NotFound:
            continue
    mine: list[Digest] = [Digest(row.id), row.manifest, *(d.digest for d in manifest.layers)]
    for digest in mine:
        if digest not in blobs_in_use and store._content.has(digest):
            store._content.delete(digest)


def sweep_unreferenced(store: ImageStore, keep: Sequence[str]) -> None:
    blobs: set[str] = set()
    chains: set[ChainID] = set()
    for row in store._db.images():
        blobs.update((row.id, row.manifest))
        chains.update(row.chain)
        try:
            blobs.update(d.digest for d in store._manifest_for(row.id).layers)
        except NotFound:
            continue
    for image_id in keep:
        if image_id in blobs:
            continue
        try:
            image = store._image(image_id)
        except NotFound:
            continue
        blobs.add(image_id)
        chains.update(chain_ids(list(image.rootfs.diff_ids)))
    for chain in store._layers.chain_ids():
        if chain not in chains:
            log.info("removing layer %s, which no image uses", chain)
            store._layers.remove(chain)
    for info in list(store._content.walk()):
        if info.digest not in blobs:
            log.info("removing blob %s, which no image uses", info.digest)
            store._content.delete(info.digest)
