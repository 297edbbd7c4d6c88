"""Image references, parsed and normalised as Docker does (pure, no I/O).

The grammar is distribution's reference grammar as vendored by Docker 20.10::

    reference       := name [ ":" tag ] [ "@" digest ]
    name            := [ domain "/" ] path-component ( "/" path-component )*
    domain          := host [ ":" port ]      host: DNS labels joined by ".", or "[ipv6]"
    path-component  := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
    tag             := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
    digest          := algorithm ":" hex       (validated as sha256/sha512 of the right length)

Normalisation (``ParseNormalizedNamed``): the first path component is a registry only if it
contains ``.`` or ``:`` or is exactly ``localhost``; otherwise the name lives on Docker Hub
(``docker.io``), and a one-component Hub name gets the ``library/`` namespace. The legacy
``index.docker.io`` is the same registry as ``docker.io``. Listings show the *familiar* form,
which strips what normalisation added.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from berth.errors import InvalidReference

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_NAMESPACE = "library"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"

_REFERENCE_RE = re.compile(rf"^({_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?$", re.ASCII)
_DOMAIN_RE = re.compile(rf"^{_DOMAIN}$", re.ASCII)
_TAG_RE = re.compile(rf"^{_TAG}$", re.ASCII)
_ANCHORED_ID_RE = re.compile(r"^[a-f0-9]{64}$")
_ID_PREFIX_RE = re.compile(r"^(?:sha256:)?[a-f0-9]{1,64}$")
_DIGEST_LENGTHS = {"sha256": 64, "sha512": 128}

ERR_FORMAT = "invalid reference format"
ERR_UPPERCASE = "invalid reference format: repository name must be lowercase"
ERR_TOO_LONG = f"repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"


class Reference(NamedTuple):
    """A normalised reference: ``domain`` is never empty, ``path`` has its Hub namespace.

    A NamedTuple rather than a dataclass: the CLI parses references too, and importing
    ``dataclasses`` costs it ~10 ms of start-up."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """The repository in full: ``docker.io/library/busybox``."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_name(self) -> str:
        """The repository as listed: ``busybox``, ``user/app``, ``reg:5000/a``."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        prefix = OFFICIAL_NAMESPACE + "/"
        rest = self.path[len(prefix) :]
        if self.path.startswith(prefix) and "/" not in rest:
            return rest
        return self.path

    def _suffix(self) -> str:
        text = f":{self.tag}" if self.tag is not None else ""
        return text + (f"@{self.digest}" if self.digest is not None else "")

    def string(self) -> str:
        """``docker.io/library/busybox:latest``."""
        return self.name + self._suffix()

    def familiar_string(self) -> str:
        """``busybox:latest``, ``user/app@sha256:...``."""
        return self.familiar_name + self._suffix()

    def with_tag(self, tag: str) -> Reference:
        if not _TAG_RE.match(tag):
            raise InvalidReference("invalid tag format")
        return Reference(self.domain, self.path, tag, None)

    def name_only(self) -> Reference:
        return Reference(self.domain, self.path)

    def __str__(self) -> str:
        return self.string()


def _split_domain(text: str) -> tuple[str, str]:
    slash = text.find("/")
    first = text[:slash] if slash >= 0 else ""
    if slash < 0 or (not any(c in first for c in ".:") and first != "localhost"):
        domain, remainder = DEFAULT_DOMAIN, text
    else:
        domain, remainder = first, text[slash + 1 :]
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = f"{OFFICIAL_NAMESPACE}/{remainder}"
    return domain, remainder


def _validate_digest(digest: str) -> None:
    algorithm, _, encoded = digest.partition(":")
    want = _DIGEST_LENGTHS.get(algorithm)
    if want is None:
        raise InvalidReference("unsupported digest algorithm")
    if len(encoded) != want:
        raise InvalidReference("invalid checksum digest length")
    if encoded != encoded.lower():
        raise InvalidReference("invalid checksum digest format")


def _parse_full(text: str) -> Reference:
    """Distribution's ``Parse`` on an already normalised string."""
    match = _REFERENCE_RE.match(text)
    if match is None:
        if text and _REFERENCE_RE.match(text.lower()):
            raise InvalidReference(ERR_UPPERCASE)
        raise InvalidReference(ERR_FORMAT)
    name, tag, digest = match.group(1), match.group(2), match.group(3)
    if len(name) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidReference(ERR_TOO_LONG)
    if digest is not None:
        _validate_digest(digest)
    domain, _, path = name.partition("/")
    return Reference(domain, path, tag, digest)


def parse_named(text: str) -> Reference:
    """Parse and normalise; no tag is added (distribution's ``ParseNormalizedNamed``)."""
    if _ANCHORED_ID_RE.match(text):
        raise InvalidReference(
            f"invalid repository name ({text}), cannot specify 64-byte hexadecimal strings"
        )
    domain, remainder = _split_domain(text)
    colon = remainder.find(":")
    remote = remainder[:colon] if colon >= 0 else remainder
    if remote.lower() != remote:
        raise InvalidReference(ERR_UPPERCASE)
    return _parse_full(f"{domain}/{remainder}")


def parse_reference(text: str) -> Reference:
    """Parse, normalise and add the ``latest`` tag unless a tag or digest was given."""
    ref = parse_named(text)
    if ref.tag is None and ref.digest is None:
        return Reference(ref.domain, ref.path, DEFAULT_TAG, None)
    return ref


def is_name_only(ref: Reference) -> bool:
    return ref.tag is None and ref.digest is None


def looks_like_id_prefix(text: str) -> bool:
    """True for what may name an image by ID: 1-64 lowercase hex, optionally after ``sha256:``."""
    return bool(_ID_PREFIX_RE.match(text))


def is_full_id(text: str) -> bool:
    """True for a 64-hex image ID, bare or with ``sha256:``."""
    return bool(_ANCHORED_ID_RE.match(text.removeprefix("sha256:")))


def validate_domain(domain: str) -> bool:
    return bool(_DOMAIN_RE.match(domain))
