"""Registry credentials and challenges: what the client sends, and what it must answer.

- ``AuthConfig``: the credentials one request carries (from the Engine API's ``X-Registry-Auth``
  header, base64url JSON, or from ``POST /auth``'s body).
- ``parse_challenges``: ``WWW-Authenticate`` (``Bearer realm="..",service="..",scope=".."`` or
  ``Basic realm=".."``) as typed records.
- ``TokenCache``: bearer tokens per (realm, service, scopes) until they expire, shared by every
  request of one daemon, so a pull's many blob requests reuse one token.

The CLI keeps its own ``config.json`` code (it may not import this package); the daemon never
reads a config file, as dockerd does not.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

INDEX_SERVER = "https://index.docker.io/v1/"
HUB_DOMAIN = "docker.io"
HUB_API_HOST = "registry-1.docker.io"
HUB_TOKEN_REALM = "https://auth.docker.io/token"
HUB_TOKEN_SERVICE = "registry.docker.io"

_MIN_TOKEN_SECONDS = 60  # the token spec's default and minimum lifetime


@dataclass(frozen=True)
class AuthConfig:
    username: str = ""
    password: str = ""
    identity_token: str = ""  # an OAuth refresh token from an earlier login
    registry_token: str = ""  # a bearer token to send as is
    server_address: str = ""

    @property
    def has_credentials(self) -> bool:
        return bool(self.username and self.password) or bool(self.identity_token)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AuthConfig:
        def text(*keys: str) -> str:
            for key in keys:
                value = data.get(key)
                if isinstance(value, str) and value:
                    return value
            return ""

        username, password = text("username"), text("password")
        encoded = text("auth")
        if encoded and not username:
            # docker's config.json form: base64("user:password")
            try:
                username, _, password = base64.b64decode(encoded).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                username, password = "", ""
        return cls(
            username=username,
            password=password,
            identity_token=text("identitytoken", "IdentityToken"),
            registry_token=text("registrytoken", "RegistryToken"),
            server_address=text("serveraddress", "ServerAddress"),
        )


def decode_registry_auth(header: str | None) -> AuthConfig:
    """The ``X-Registry-Auth`` header (base64url JSON, padding optional).

    A header that does not decode means "no credentials", as for dockerd's pull and push."""
    if not header:
        return AuthConfig()
    text = header.strip()
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        data = json.loads(raw)
    except (binascii.Error, ValueError):
        return AuthConfig()
    if not isinstance(data, dict):
        return AuthConfig()
    return AuthConfig.from_json(data)


def basic_header(auth: AuthConfig) -> str:
    pair = f"{auth.username}:{auth.password}".encode()
    return "Basic " + base64.b64encode(pair).decode()


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lower case: "bearer" or "basic"
    params: Mapping[str, str] = field(default_factory=dict)


def parse_challenges(header: str) -> list[Challenge]:
    """``WWW-Authenticate`` → challenges; quoted values may hold commas and escaped quotes."""
    out: list[Challenge] = []
    i, n = 0, len(header)
    current: dict[str, str] | None = None
    while i < n:
        while i < n and header[i] in " \t,":
            i += 1
        start = i
        while i < n and header[i] not in " \t,=":
            i += 1
        token = header[start:i]
        if not token:
            break
        j = i
        while j < n and header[j] in " \t":
            j += 1
        if j < n and header[j] == "=":
            i = j + 1
            while i < n and header[i] in " \t":
                i += 1
            if i < n and header[i] == '"':
                i += 1
                chars: list[str] = []
                while i < n and header[i] != '"':
                    if header[i] == "\\" and i + 1 < n:
                        i += 1
                    chars.append(header[i])
                    i += 1
                i += 1
                value = "".join(chars)
            else:
                start = i
                while i < n and header[i] not in ",":
                    i += 1
                value = header[start:i].strip()
            if current is not None:
                current[token.lower()] = value
        else:
            current = {}
            out.append(Challenge(token.lower(), current))
            i = j
    return [Challenge(c.scheme, dict(c.params)) for c in out]


def repository_scope(path: str, actions: str) -> str:
    """``repository:me/bb:pull`` (``push,pull`` for a push, in docker's order)."""
    return f"repository:{path}:{actions}"


@dataclass(frozen=True)
class Token:
    value: str
    expires_at: float
    refresh_token: str = ""


def parse_token_response(raw: bytes, now: float) -> Token:
    """The token server's JSON: ``access_token`` preferred over ``token``; ``expires_in`` ≥ 60."""
    try:
        data = json.loads(raw)
    except ValueError as err:
        raise ValueError("unable to decode token response") from err
    if not isinstance(data, dict):
        raise ValueError("unable to decode token response")
    value = data.get("access_token") or data.get("token")
    if not isinstance(value, str) or not value:
        raise ValueError("authorization server did not include a token in the response")
    expires = data.get("expires_in")
    seconds = expires if isinstance(expires, int) and expires >= _MIN_TOKEN_SECONDS \
        else _MIN_TOKEN_SECONDS
    refresh = data.get("refresh_token")
    return Token(value, now + seconds, refresh if isinstance(refresh, str) else "")


class TokenCache:
    """Bearer tokens by (realm, service, scopes, user); thread-safe, expired ones dropped."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[tuple[str, str, tuple[str, ...], str], Token] = {}

    def get(self, key: tuple[str, str, tuple[str, ...], str]) -> str | None:
        with self._lock:
            token = self._tokens.get(key)
            # leave a margin so a token does not expire between check and use
            if token is None or token.expires_at - 5 < time.time():
                self._tokens.pop(key, None)
                return None
            return token.value

    def put(self, key: tuple[str, str, tuple[str, ...], str], token: Token) -> None:
        with self._lock:
            self._tokens[key] = token
