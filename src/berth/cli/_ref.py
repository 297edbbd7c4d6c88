"""The little of image-reference handling the CLI needs (split, familiar and qualified names).

``berth.reference`` is the full parser; this stays import-free for the CLI's start-up, and
only splits strings the daemon will validate anyway.
"""

from __future__ import annotations

DEFAULT_DOMAIN = "docker.io"


def split(ref: str) -> tuple[str, str, str]:
    """``host:5000/a/b:tag@sha256:x`` → (``host:5000/a/b``, ``tag``, ``sha256:x``)."""
    name, _, digest = ref.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    tag = ""
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
    return name, tag, digest


def _domain_split(repo: str) -> tuple[str, str]:
    first, sep, rest = repo.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        return first, rest
    return DEFAULT_DOMAIN, repo


def qualified_repo(repo: str) -> str:
    """``me/bb`` → ``docker.io/me/bb``; ``busybox`` → ``docker.io/library/busybox``."""
    domain, path = _domain_split(repo)
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = "library/" + path
    return f"{domain}/{path}"


def familiar_repo(repo: str) -> str:
    domain, path = _domain_split(repo)
    if domain in (DEFAULT_DOMAIN, "index.docker.io"):
        return path[len("library/") :] if path.startswith("library/") else path
    return f"{domain}/{path}"


def with_default_tag(ref: str) -> str:
    """``busybox`` → ``busybox:latest`` (digest references are left alone)."""
    repo, tag, digest = split(ref)
    if digest:
        return ref
    return f"{familiar_repo(repo)}:{tag or 'latest'}"


def registry_of(repo: str) -> str:
    domain, _ = _domain_split(repo)
    return domain


_LOWER_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_TAG_CHARS = _LOWER_ALNUM | frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ_.-")


def plainly_valid(ref: str) -> bool:
    """True for the everyday ``name[:tag]`` forms that are certainly valid references.

    A conservative subset of ``berth.reference``'s grammar (no registry port, no digest, one
    separator between alphanumerics), so that the CLI can accept ``-t app:1.0`` without
    importing the full parser; anything else goes to that parser for its verdict and wording.
    """
    name, colon, tag = ref.rpartition(":")
    if not colon:
        name, tag = ref, ""
    elif not tag or "/" in tag or tag[0] in ".-" or not set(tag) <= _TAG_CHARS:
        return False
    if len(ref) > 128 or len(name) == 64:  # 64 characters could be a refused image ID
        return False
    components = name.split("/")
    if len(components) > 1 and "." in components[0] and "_" in components[0]:
        return False  # a registry host, where "_" is not allowed
    for component in components:
        if not component or component[0] not in _LOWER_ALNUM or \
                component[-1] not in _LOWER_ALNUM:
            return False
        after_separator = False
        for char in component:
            if char in _LOWER_ALNUM:
                after_separator = False
            elif char in "._-" and not after_separator:
                after_separator = True
            else:
                return False
    return True
