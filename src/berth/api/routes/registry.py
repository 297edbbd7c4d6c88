"""``POST /auth``: check credentials against a registry, as ``docker login`` asks the daemon."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from aiohttp import web

from berth.api.streams import json_response, read_json_body, run_blocking
from berth.errors import InvalidArgument
from berth.registry.auth import HUB_DOMAIN, INDEX_SERVER, AuthConfig

if TYPE_CHECKING:
    from berth.api.app import ApiRouter


class Authenticator(Protocol):
    def login(self, server: str, auth: AuthConfig) -> str:
        """Raises Unauthorized for bad credentials; returns an identity token or ""."""
        ...


def registry_domain(server: str) -> str:
    """``https://index.docker.io/v1/`` → ``docker.io``; ``http://h:5000/`` → ``h:5000``."""
    if not server or server.rstrip("/") in (INDEX_SERVER.rstrip("/"), "docker.io",
                                            "index.docker.io", "registry-1.docker.io"):
        return HUB_DOMAIN
    text = server.split("://", 1)[-1]
    return text.split("/", 1)[0]


class RegistryRoutes:
    def __init__(self, registry: Authenticator) -> None:
        self._registry = registry

    def register(self, router: ApiRouter) -> None:
        router.add("POST", "/auth", self.auth)

    async def auth(self, request: web.Request) -> web.StreamResponse:
        body = await read_json_body(request)
        if not isinstance(body, dict):
            raise InvalidArgument("invalid JSON: the body must be an AuthConfig object")
        config = AuthConfig.from_json(body)
        token = await run_blocking(request, self._registry.login,
                                   registry_domain(config.server_address), config)
        return json_response({"IdentityToken": token, "Status": "Login Succeeded"})
