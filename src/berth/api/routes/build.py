"""``POST /build`` (the classic builder's protocol, ``version=1``) and ``POST /commit``.

The build answers with a JSON message stream: ``{"stream": "Step 1/3 : FROM busybox\\n"}``...,
``{"aux": {"ID": "sha256:..."}}``, and ``{"errorDetail": {"code": N, "message": ...},
"error": ...}`` when a step fails after output started. An error before the first message
(no Dockerfile, a syntax error) is an ordinary HTTP error, as from dockerd, in the classic
builder's words (``dockerfile parse error line 2: unknown instruction: FOO``). With ``q=1`` the
step output is held back and only shown if the build fails.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol, cast

from aiohttp import web

from berth.api.streams import (
    BodyReader,
    JsonMessageStream,
    aux_message,
    json_response,
    query_bool,
    stream_message,
)
from berth.build.executor import BuildResult, StepFailed
from berth.engine.builder import BuildRequest, CommitRequest
from berth.errors import BerthError, DockerfileError, InvalidArgument

if TYPE_CHECKING:
    from berth.api.app import ApiRouter
    from berth.build.executor import Progress

log = logging.getLogger(__name__)


class Builder(Protocol):
    async def build(self, body: BinaryIO, request: BuildRequest,
                    progress: Progress) -> BuildResult: ...
    async def commit(self, request: CommitRequest) -> str: ...


def _json_map(request: web.Request, name: str) -> dict[str, str]:
    raw = request.query.get(name, "")
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError as err:
        raise InvalidArgument(f"invalid {name} JSON: {err}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InvalidArgument(f"invalid {name}: must be a JSON object")
    # buildargs may carry null values ("--build-arg NAME" with NAME unset): skip those
    return {str(k): str(v) for k, v in data.items() if v is not None}


def classic_message(err: BerthError) -> str:
    """The classic builder's words for a Dockerfile that does not parse (the file's line is
    in them where dockerd gives it)."""
    if not isinstance(err, DockerfileError):
        return err.message
    if err.phase == "parse":
        return f"failed to parse Dockerfile: {err.detail}"
    if err.phase == "instruction" and err.line is not None:
        return f"dockerfile parse error line {err.line}: {err.detail}"
    return err.detail


class _StreamProgress:
    """Build progress as JSON messages; quiet builds keep the text for an error report."""

    def __init__(self, stream: JsonMessageStream, quiet: bool) -> None:
        self._stream = stream
        self._quiet = quiet
        self.held: list[str] = []

    async def stream(self, text: str) -> None:
        if self._quiet:
            self.held.append(text)
            return
        await self._stream.send(stream_message(text))

    async def aux_id(self, image_id: str) -> None:
        await self._stream.send(aux_message({"ID": image_id}))


class BuildRoutes:
    def __init__(self, builder: Builder) -> None:
        self._builder = builder

    def register(self, router: ApiRouter) -> None:
        router.add("POST", "/build", self.build)
        router.add("POST", "/commit", self.commit)

    async def build(self, request: web.Request) -> web.StreamResponse:
        version = request.query.get("version", "1")
        if version not in ("", "1"):
            raise InvalidArgument("BuildKit (version=2) is not supported by berth; use the "
                                  "classic builder protocol (DOCKER_BUILDKIT=0)")
        params = BuildRequest(
            dockerfile=request.query.get("dockerfile", ""),
            tags=tuple(t for t in request.query.getall("t", []) if t),
            build_args=_json_map(request, "buildargs"),
            target=request.query.get("target") or None,
            no_cache=query_bool(request, "nocache"),
            labels=_json_map(request, "labels"),
            remote=request.query.get("remote", ""),
        )
        quiet = query_bool(request, "q")
        stream = JsonMessageStream(request)
        progress = _StreamProgress(stream, quiet)
        body = io.BufferedReader(BodyReader(request, asyncio.get_running_loop()),
                                 buffer_size=1 << 20)
        try:
            await self._builder.build(cast(BinaryIO, body), params, progress)
        except BerthError as err:
            message = classic_message(err)
            if not stream.started and not progress.held:
                if message != err.message:
                    raise InvalidArgument(message) from err
                raise
            detail: dict[str, Any] = {"message": message}
            if isinstance(err, StepFailed):
                detail["code"] = err.code
            if progress.held:
                await stream.send(stream_message("".join(progress.held)))
            await stream.send({"errorDetail": detail, "error": message})
        return await stream.finish()

    async def commit(self, request: web.Request) -> web.StreamResponse:
        container = request.query.get("container", "")
        if not container:
            raise InvalidArgument("No container specified")  # dockerd's wording
        params = CommitRequest(
            container=container,
            repo=request.query.get("repo", ""),
            tag=request.query.get("tag", ""),
            comment=request.query.get("comment", ""),
            author=request.query.get("author", ""),
            pause=query_bool(request, "pause", default=True),
            changes=tuple(request.query.getall("changes", [])),
        )
        image_id = await self._builder.commit(params)
        return json_response({"Id": image_id}, status=201)

