"""What the image store hands out: plain frozen records, snake_case, no wire spellings."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from berth.oci.digest import DiffID, Digest
from berth.oci.image import EPOCH, History, ImageConfig


@dataclass(frozen=True)
class ImageRecord:
    id: str  # sha256:<hex>, the digest of the config
    repo_tags: tuple[str, ...]  # familiar: "busybox:latest"
    repo_digests: tuple[str, ...]  # familiar: "busybox@sha256:..."
    created: str  # RFC 3339 as in the config; EPOCH when absent
    config: ImageConfig
    diff_ids: tuple[DiffID, ...]
    size: int  # sum of the unpacked sizes of every layer
    architecture: str
    os: str
    variant: str | None = None
    os_version: str | None = None
    author: str = ""
    comment: str = ""
    docker_version: str = ""
    parent: str = ""  # parent image ID, "" when none
    manifest_digest: Digest | None = None
    history: tuple[History, ...] = field(default=())

    @property
    def created_unix(self) -> int:
        return parse_time(self.created)

    @property
    def short_id(self) -> str:
        return self.id.removeprefix("sha256:")[:12]


@dataclass(frozen=True)
class HistoryEntry:
    """One row of ``docker history``: ``id`` is an image ID or ``<missing>``."""

    id: str
    created: int  # unix seconds; 0 when unknown
    created_by: str
    comment: str
    size: int
    tags: tuple[str, ...] = ()


_TIME_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|z|[+-]\d{2}:\d{2})$"
)


def parse_time(text: str | None) -> int:
    """Unix seconds of an RFC 3339 time (nanosecond fractions allowed); 0 when absent or bad."""
    if not text or text == EPOCH:
        return 0
    match = _TIME_RE.match(text)
    if match is None:
        return 0
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    zone = match.group(8)
    try:
        when = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        return 0
    offset = 0
    if zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        offset = sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return int(when.timestamp()) - offset


def format_time(when: datetime) -> str:
    """RFC 3339 with nanoseconds, as Go's time.RFC3339Nano writes UTC times."""
    text = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    frac = f"{when.microsecond:06d}000".rstrip("0")
    return f"{text}.{frac}Z" if frac else f"{text}Z"
