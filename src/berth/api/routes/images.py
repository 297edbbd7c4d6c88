"""``/images/...``: list, inspect, history, tag, remove, load, save, import (and pull's door).

Image names in paths may hold slashes and colons (``/images/localhost:5000/a/b:1/json``), so
they are matched greedily up to the last path segment, as dockerd's router does.
"""

from __future__ import annotations

import asyncio
import builtins
import io
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol, cast

from aiohttp import web

from berth.api.streams import (
    BodyReader,
    JsonMessageStream,
    ResponseWriter,
    check_filter_keys,
    encode_json,
    error_message,
    json_response,
    query_bool,
    query_filters,
    run_blocking,
    status_message,
    stream_message,
)
from berth.api.wire_images import (
    HistoryView,
    ImageView,
    render_delete,
    render_history,
    render_image_inspect,
    render_image_summary,
    unix_seconds,
)
from berth.errors import (
    BerthError,
    Conflict,
    ImageNotFound,
    InvalidArgument,
    NotFound,
    NotImplementedByBerth,
)
from berth.reference import parse_named

if TYPE_CHECKING:
    from berth.api.app import ApiRouter

log = logging.getLogger(__name__)

_LIST_FILTERS = {"dangling", "label", "before", "since", "reference"}
_PRUNE_FILTERS = {"dangling", "label", "label!", "until"}

Progress = Callable[[Mapping[str, Any]], None]


class ImageBackend(Protocol):
    """What these routes need from the image service (blocking calls, run in threads)."""

    def list(self) -> Sequence[ImageView]: ...
    def get(self, name: str) -> ImageView: ...
    def tag(self, src: str, target: str) -> None: ...
    def remove(self, name: str, force: bool, prune: bool) -> Sequence[tuple[str, str]]: ...
    def history(self, name: str) -> Sequence[HistoryView]: ...
    def load(self, stream: BinaryIO) -> Sequence[str]: ...
    # builtins.list: inside this class "list" names the method above.
    def save(self, names: builtins.list[str], out: BinaryIO) -> None: ...
    def import_rootfs(self, stream: BinaryIO, ref: str | None, changes: builtins.list[str],
                      message: str) -> str: ...


class ImagePuller(Protocol):
    """Pulls ``ref`` (``name:tag`` or ``name@digest``), reporting Docker progress messages.

    Raises before the first progress message when the image cannot be found, so the client
    gets a plain error status, as from dockerd."""

    def pull(self, ref: str, auth: str | None, progress: Progress,
             platform: str | None = None, all_tags: bool = False) -> None: ...


class ImagePusher(Protocol):
    """Pushes ``name:tag`` (every tag of ``name`` when tag is None) with progress messages."""

    def push(self, name: str, tag: str | None, auth: str | None, progress: Progress) -> None: ...


class ImageRoutes:
    def __init__(self, images: ImageBackend, puller: ImagePuller | None = None,
                 pusher: ImagePusher | None = None) -> None:
        self._images = images
        self._puller = puller
        self._pusher = pusher

    def register(self, router: ApiRouter) -> None:
        # Fixed paths first: aiohttp tries routes in the order they were added.
        router.add("GET", "/images/json", self.list_images)
        router.add("GET", "/images/get", self.save)
        router.add("POST", "/images/load", self.load)
        router.add("POST", "/images/create", self.create)
        router.add("POST", "/images/prune", self.prune)
        router.add("GET", "/images/{name:.+}/json", self.inspect)
        router.add("GET", "/images/{name:.+}/history", self.history)
        router.add("GET", "/images/{name:.+}/get", self.save_one)
        router.add("POST", "/images/{name:.+}/tag", self.tag)
        router.add("POST", "/images/{name:.+}/push", self.push)
        router.add("DELETE", "/images/{name:.+}", self.remove)

    # -- list -----------------------------------------------------------------------------------

    async def list_images(self, request: web.Request) -> web.StreamResponse:
        filters = query_filters(request)
        check_filter_keys(filters, _LIST_FILTERS)
        show_all = query_bool(request, "all")
        entries = await run_blocking(request, self._list, filters, show_all)
        return json_response(entries)

    def _list(self, filters: Mapping[str, list[str]], show_all: bool) -> list[dict[str, Any]]:
        images = list(self._images.list())
        dangling = _dangling_filter(filters)
        before = [self._images.get(ref).created for ref in filters.get("before", [])]
        since = [self._images.get(ref).created for ref in filters.get("since", [])]
        patterns = [_path_pattern(p) for p in filters.get("reference", [])]
        labels = filters.get("label", [])
        parents = {img.parent for img in images if img.parent}
        out: list[tuple[int, dict[str, Any]]] = []
        for img in images:
            # dockerd's rules: dangling=true looks only at images without children; an
            # untagged image with children is an intermediate one, shown only with all=1.
            has_children = img.id in parents
            if dangling is True and has_children:
                continue
            if not img.repo_tags and not img.repo_digests:
                if (has_children and not show_all) or dangling is False or patterns:
                    continue
            elif dangling is True and img.repo_tags:
                continue
            created = unix_seconds(img.created)
            if any(created >= unix_seconds(b) for b in before):
                continue
            if any(created <= unix_seconds(s) for s in since):
                continue
            if not _labels_match(img, labels):
                continue
            entry = render_image_summary(img)
            if patterns:
                tags = [t for t in img.repo_tags if _reference_match(patterns, t)]
                if not tags:
                    continue
                entry["RepoTags"] = tags
            out.append((created, entry))
        out.sort(key=lambda pair: pair[0], reverse=True)
        return [entry for _, entry in out]

    # -- single image ---------------------------------------------------------------------------

    async def inspect(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        try:
            img = await run_blocking(request, self._images.get, name)
        except ImageNotFound as err:
            # dockerd 20.10 says it twice: "no such image: X: No such image: X".
            raise ImageNotFound(f"no such image: {name}: {err.message}") from err
        return json_response(render_image_inspect(img))

    async def history(self, request: web.Request) -> web.StreamResponse:
        entries = await run_blocking(request, self._images.history, request.match_info["name"])
        return json_response(render_history(entries))

    async def tag(self, request: web.Request) -> web.StreamResponse:
        repo = request.query.get("repo", "")
        tag = request.query.get("tag", "")
        if not repo:
            raise InvalidArgument("repository name must have at least one component")
        if "@" in repo:
            raise InvalidArgument("refusing to create a tag with a digest reference")
        target = f"{repo}:{tag}" if tag else repo
        await run_blocking(request, self._images.tag, request.match_info["name"], target)
        return web.Response(status=201)

    async def remove(self, request: web.Request) -> web.StreamResponse:
        items = await run_blocking(request, self._images.remove, request.match_info["name"],
                                   query_bool(request, "force"),
                                   not query_bool(request, "noprune"))
        return json_response(render_delete(items))

    async def prune(self, request: web.Request) -> web.StreamResponse:
        filters = query_filters(request)
        check_filter_keys(filters, _PRUNE_FILTERS)
        deleted, reclaimed = await run_blocking(request, self._prune, filters, time.time())
        return json_response({"ImagesDeleted": deleted or None, "SpaceReclaimed": reclaimed})

    def _prune(self, filters: Mapping[str, list[str]], now: float
               ) -> tuple[list[dict[str, str]], int]:
        """dockerd's rules: dangling (untagged, childless) images only, unless dangling=false
        asks for every image no container uses; an image in use is skipped, not an error."""
        dangling_only = _dangling_filter(filters) is not False
        until = [_until_seconds(v, now) for v in filters.get("until", [])]
        images = list(self._images.list())
        parents = {img.parent for img in images if img.parent}
        deleted: list[dict[str, str]] = []
        reclaimed = 0
        for img in images:
            if dangling_only and (img.repo_tags or img.id in parents):
                continue
            if any(unix_seconds(img.created) >= u for u in until):
                continue
            if not _labels_match(img, filters.get("label", [])):
                continue
            if filters.get("label!") and _any_label(img, filters["label!"]):
                continue
            targets = list(img.repo_tags) or [img.id]
            for target in targets:
                try:
                    items = self._images.remove(target, False, True)
                except (Conflict, NotFound) as err:
                    log.debug("prune skips %s: %s", target, err)
                    break
                deleted += render_delete(items)
                if any(kind == "Deleted" and value == img.id for kind, value in items):
                    reclaimed += img.size
        return deleted, reclaimed

    async def push(self, request: web.Request) -> web.StreamResponse:
        if self._pusher is None:
            raise NotImplementedByBerth("pushing images is not implemented yet in berth")
        pusher = self._pusher
        name = request.match_info["name"]
        tag = request.query.get("tag") or None
        auth = request.headers.get("X-Registry-Auth")
        return await self._progress_stream(
            request, lambda progress: pusher.push(name, tag, auth, progress))

    # -- archives -------------------------------------------------------------------------------

    async def load(self, request: web.Request) -> web.StreamResponse:
        # quiet only silences per-layer progress, which berth does not send; the
        # "Loaded image" lines come either way, as from dockerd.
        stream = JsonMessageStream(request)
        loop = asyncio.get_running_loop()
        body = io.BufferedReader(BodyReader(request, loop), buffer_size=1 << 20)
        try:
            lines = await run_blocking(request, self._images.load, body)
        except BerthError as err:
            await stream.send(error_message(err.message))
            return await stream.finish()
        except (OSError, ValueError) as err:
            log.warning("image load failed: %s", err)
            await stream.send(error_message(str(err)))
            return await stream.finish()
        for line in lines:
            await stream.send(stream_message(line + "\n"))
        return await stream.finish()

    async def save(self, request: web.Request) -> web.StreamResponse:
        return await self._save(request, request.query.getall("names", []))

    async def save_one(self, request: web.Request) -> web.StreamResponse:
        return await self._save(request, [request.match_info["name"]])

    async def _save(self, request: web.Request, names: list[str]) -> web.StreamResponse:
        if not names:
            raise InvalidArgument("no image names given")
        response = web.StreamResponse(status=200)
        response.content_type = "application/x-tar"
        out = ResponseWriter(request, response, asyncio.get_running_loop())
        try:
            await run_blocking(request, self._images.save, names, cast(BinaryIO, out))
        except BerthError as err:
            if not out.started:
                raise
            # Too late for a status: dockerd appends the error as JSON to the stream.
            log.warning("image save failed after output started: %s", err)
            await response.write(encode_json(error_message(err.message)) + b"\r\n")
        if not response.prepared:
            await response.prepare(request)
        await response.write_eof()
        return response

    async def create(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("fromImage"):
            return await self._pull(request)
        source = request.query.get("fromSrc", "")
        if source != "-":
            if not source:
                raise InvalidArgument("fromImage or fromSrc is required")
            raise NotImplementedByBerth("importing from a URL is not supported; use fromSrc=-")
        repo = request.query.get("repo", "")
        tag = request.query.get("tag", "")
        ref = (f"{repo}:{tag}" if tag else repo) or None
        changes = request.query.getall("changes", [])
        message = request.query.get("message", "")
        body = io.BufferedReader(BodyReader(request, asyncio.get_running_loop()),
                                 buffer_size=1 << 20)
        image_id = await run_blocking(request, self._images.import_rootfs, body, ref,
                                      changes, message)
        stream = JsonMessageStream(request)
        await stream.send(status_message(image_id))
        return await stream.finish()

    async def _pull(self, request: web.Request) -> web.StreamResponse:
        if self._puller is None:
            raise NotImplementedByBerth("pulling images is not implemented yet in berth")
        puller = self._puller
        # "pull -a" may send the name with a trailing ":" (dockerd trims it too)
        image = request.query["fromImage"].removesuffix(":")
        tag = request.query.get("tag", "")
        ref = image if not tag or "@" in image else (
            f"{image}@{tag}" if tag.startswith("sha256:") else f"{image}:{tag}")
        auth = request.headers.get("X-Registry-Auth")
        options: dict[str, Any] = {}
        if request.query.get("platform"):
            options["platform"] = request.query["platform"]
        if not tag and _name_only(image):
            options["all_tags"] = True  # as dockerd: no tag anywhere means every tag

        def work(progress: Progress) -> None:
            puller.pull(ref, auth, progress, **options)

        return await self._progress_stream(request, work)

    async def _progress_stream(self, request: web.Request,
                               work: Callable[[Progress], None]) -> web.StreamResponse:
        """Run ``work`` in a thread, streaming its progress; an error before the first
        message is a plain error status, after it a final error message, as from dockerd."""
        stream = JsonMessageStream(request)
        loop = asyncio.get_running_loop()

        def progress(message: Mapping[str, Any]) -> None:
            asyncio.run_coroutine_threadsafe(stream.send(message), loop).result()

        try:
            await run_blocking(request, work, progress)
        except BerthError as err:
            if not stream.started:
                raise
            await stream.send(error_message(err.message))
        return await stream.finish()


# -- list filters -------------------------------------------------------------------------------


def _name_only(image: str) -> bool:
    """A repository name without tag or digest (what ``pull -a`` sends)."""
    try:
        ref = parse_named(image)
    except BerthError:
        return False  # the puller reports the bad name
    return ref.tag is None and ref.digest is None


def _dangling_filter(filters: Mapping[str, list[str]]) -> bool | None:
    values = filters.get("dangling")
    if not values:
        return None
    wanted = {v.lower() for v in values}
    if wanted <= {"true", "1"}:
        return True
    if wanted <= {"false", "0"}:
        return False
    raise InvalidArgument(f"invalid filter 'dangling={values[0]}'")


def _labels_match(img: ImageView, wanted: list[str]) -> bool:
    labels = img.config.labels if img.config is not None else {}
    for item in wanted:
        key, sep, value = item.partition("=")
        if key not in labels or (sep and labels[key] != value):
            return False
    return True


def _any_label(img: ImageView, wanted: list[str]) -> bool:
    return any(_labels_match(img, [item]) for item in wanted)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATIONS = re.compile(r"(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _until_seconds(value: str, now: float) -> float:
    """``until``: a Go duration before now (``24h``, ``1h30m``), Unix seconds, or RFC 3339."""
    if _DURATIONS.fullmatch(value):
        total = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION.findall(value))
        return now - total
    try:
        return float(value)
    except ValueError:
        pass
    seconds = unix_seconds(value)
    if seconds == 0:
        raise InvalidArgument(f"invalid filter 'until={value}'")
    return float(seconds)


def _path_pattern(pattern: str) -> re.Pattern[str]:
    """Go's path.Match as a regex: ``*`` and ``?`` never cross ``/``."""
    out = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                raise InvalidArgument(
                    f"invalid filter 'reference={pattern}': syntax error in pattern")
            body = pattern[i + 1:end]
            if body.startswith("^"):
                body = "!" + body[1:]
            body = body.replace("\\", "\\\\")
            out.append("[^" + body[1:] + "]" if body.startswith("!") else "[" + body + "]")
            i = end
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out) + r"\Z")


def _reference_match(patterns: list[re.Pattern[str]], tag: str) -> bool:
    """A familiar ``name:tag`` matches if the pattern matches it or its name alone."""
    name = tag
    slash = tag.rfind("/")
    colon = tag.rfind(":")
    if colon > slash:
        name = tag[:colon]
    return any(p.match(tag) or p.match(name) for p in patterns)
