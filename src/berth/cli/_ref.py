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
