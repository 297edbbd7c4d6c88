"""User and group ID mappings of a user namespace (OCI ``linux.uidMappings``), and their math.

A mapping is a list of ranges ``(container_id, host_id, size)``: container ID ``c`` in a range
is host ID ``host_id + c - container_id``. With ``--userns-remap`` the daemon holds one
``IdentityMapping`` built from the remap user's ``/etc/subuid`` and group's ``/etc/subgid``
ranges, laid end to end from container ID 0 (dockerd's rule), so container root is the first
subordinate ID. Pure: no I/O; the ``/etc/sub?id`` text is parsed here, read elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass

from berth.errors import InvalidArgument

# /proc/<pid>/uid_map takes at most this many lines (Linux 4.15+).
MAX_RANGES = 340


@dataclass(frozen=True)
class IDMap:
    """One range: ``size`` IDs from ``container_id`` inside are ``host_id``... outside."""

    container_id: int
    host_id: int
    size: int


@dataclass(frozen=True)
class SubIDRange:
    """One ``name:start:count`` line of ``/etc/subuid`` or ``/etc/subgid``."""

    name: str
    start: int
    count: int

    @property
    def end(self) -> int:
        return self.start + self.count


class UnmappedID(InvalidArgument):
    """An ID with no counterpart on the other side of the mapping (dockerd's wording)."""


@dataclass(frozen=True)
class IdentityMapping:
    """The UID and GID mappings of remapped containers; empty means no remapping."""

    uids: tuple[IDMap, ...] = ()
    gids: tuple[IDMap, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.uids and not self.gids

    def root_pair(self) -> tuple[int, int]:
        """The host (uid, gid) of the container's root; (0, 0) without a mapping."""
        return self.to_host(0, 0) if not self.empty else (0, 0)

    def to_host(self, uid: int, gid: int) -> tuple[int, int]:
        """Container IDs → host IDs; ``UnmappedID`` when one falls outside every range."""
        if self.empty:
            return uid, gid
        return _to_host(self.uids, uid), _to_host(self.gids, gid)

    def to_container(self, uid: int, gid: int) -> tuple[int, int]:
        """Host IDs → container IDs; ``UnmappedID`` when one falls outside every range."""
        if self.empty:
            return uid, gid
        return _to_container(self.uids, uid), _to_container(self.gids, gid)

    def host_owns(self, uid: int, gid: int) -> bool:
        """Whether both host IDs lie inside the mapping (an entry already shifted)."""
        return self.is_host_uid(uid) and self.is_host_gid(gid)

    def is_host_uid(self, uid: int) -> bool:
        return _find_host(self.uids, uid) is not None

    def is_host_gid(self, gid: int) -> bool:
        return _find_host(self.gids, gid) is not None

    def uid_to_host(self, uid: int) -> int:
        return _to_host(self.uids, uid) if self.uids else uid

    def gid_to_host(self, gid: int) -> int:
        return _to_host(self.gids, gid) if self.gids else gid

    def proc_text(self, kind: str) -> str:
        """The ``/proc/<pid>/{uid,gid}_map`` text for ``kind`` "uid" or "gid"."""
        ranges = self.uids if kind == "uid" else self.gids
        return "".join(f"{r.container_id} {r.host_id} {r.size}\n" for r in ranges)

    def to_spec(self) -> dict[str, list[dict[str, int]]]:
        """OCI ``linux.uidMappings`` and ``linux.gidMappings``."""
        return {
            "uidMappings": [_spec_entry(r) for r in self.uids],
            "gidMappings": [_spec_entry(r) for r in self.gids],
        }


def _spec_entry(r: IDMap) -> dict[str, int]:
    return {"containerID": r.container_id, "hostID": r.host_id, "size": r.size}


def _to_host(ranges: tuple[IDMap, ...], cid: int) -> int:
    for r in ranges:
        if r.container_id <= cid < r.container_id + r.size:
            return r.host_id + cid - r.container_id
    raise UnmappedID(f"Container ID {cid} cannot be mapped to a host ID")


def _find_host(ranges: tuple[IDMap, ...], hid: int) -> IDMap | None:
    for r in ranges:
        if r.host_id <= hid < r.host_id + r.size:
            return r
    return None


def _to_container(ranges: tuple[IDMap, ...], hid: int) -> int:
    r = _find_host(ranges, hid)
    if r is None:
        raise UnmappedID(f"Host ID {hid} cannot be mapped to a container ID")
    return r.container_id + hid - r.host_id


def parse_subid(text: str, path: str = "/etc/subuid") -> tuple[SubIDRange, ...]:
    """Every range in a subordinate ID file; blank lines and ``#`` comments are skipped."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
            raise InvalidArgument(
                f"Cannot parse subuid/gid information: Format not correct for {path} file")
        out.append(SubIDRange(parts[0], int(parts[1]), int(parts[2])))
    return tuple(out)


def ranges_for(ranges: tuple[SubIDRange, ...], *names: str) -> tuple[SubIDRange, ...]:
    """The ranges whose owner is one of ``names`` (a name or a numeric ID, as shadow allows)."""
    return tuple(r for r in ranges if r.name in names)


def build_mapping(uid_ranges: tuple[SubIDRange, ...],
                  gid_ranges: tuple[SubIDRange, ...]) -> IdentityMapping:
    """dockerd's layout: the ranges sorted by start, laid end to end from container ID 0."""
    return IdentityMapping(_stack(uid_ranges), _stack(gid_ranges))


def _stack(ranges: tuple[SubIDRange, ...]) -> tuple[IDMap, ...]:
    out: list[IDMap] = []
    next_id = 0
    for r in sorted(ranges, key=lambda r: r.start)[:MAX_RANGES]:
        if r.count <= 0:
            continue
        out.append(IDMap(next_id, r.start, r.count))
        next_id += r.count
    return tuple(out)


def next_free_start(ranges: tuple[SubIDRange, ...], count: int, start: int = 100_000) -> int:
    """The lowest ID >= ``start`` whose ``count`` IDs overlap no existing range (dockerd
    allocates ``dockremap``'s range from 100000 this way)."""
    candidate = start
    for r in sorted(ranges, key=lambda r: r.start):
        if r.start < candidate + count and candidate < r.end:
            candidate = r.end
    return candidate

