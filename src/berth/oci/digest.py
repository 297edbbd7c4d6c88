"""Content digests and the layer identities built from them (pure, no I/O).

Keeps containerd's words: a *diff ID* is the digest of an uncompressed layer tar, a *chain ID*
names a stack of layers: ``chain(L0) = diff(L0)``,
``chain(L0..n) = sha256(chain(L0..n-1) + " " + diff(Ln))``.
"""

from __future__ import annotations

import hashlib
import re
from typing import NewType

from berth.errors import InvalidArgument

Digest = NewType("Digest", str)
DiffID = NewType("DiffID", str)
ChainID = NewType("ChainID", str)

_DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$|^sha512:[a-f0-9]{128}$")


def parse_digest(text: str) -> Digest:
    """Validate ``algorithm:hex``; only sha256 and sha512 are accepted (as Docker)."""
    if not _DIGEST_RE.match(text):
        raise InvalidArgument(f"invalid digest: {text!r}")
    return Digest(text)


def sha256_digest(data: bytes) -> Digest:
    return Digest("sha256:" + hashlib.sha256(data).hexdigest())


def digest_hex(digest: str) -> str:
    """The hex part of a digest, safe to use as a file name once the digest was parsed."""
    return parse_digest(digest).split(":", 1)[1]


def chain_ids(diff_ids: list[DiffID]) -> list[ChainID]:
    """The chain ID of every prefix of ``diff_ids``, bottom layer first."""
    chains: list[ChainID] = []
    for diff_id in diff_ids:
        if not chains:
            chains.append(ChainID(diff_id))
        else:
            text = f"{chains[-1]} {diff_id}".encode()
            chains.append(ChainID(sha256_digest(text)))
    return chains
