"""The build service: the engine side of ``POST /build`` and ``POST /commit``.

``EngineBuildBackend`` implements ``berth.build.executor.BuildBackend`` over the image store,
the layer store and the container service: a RUN step is a real container (created, started,
its json log tailed into the build progress, removed whatever happens), COPY/ADD/WORKDIR
write into an overlay mounted for the step, and every writable layer becomes a layer through
``write_diff`` and ``ImageStore.create_image``. Scratch space lives under
``<data-root>/builder`` (``contexts/``, ``steps/``, ``cache/``); nothing stays mounted after a
step, and a step's directories are removed when it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from berth.build.config_steps import apply_config_step
from berth.build.executor import (
    SCRIPT_PATH,
    BaseImage,
    BuildOptions,
    BuildResult,
    FsChange,
    Progress,
    RunSpec,
    StepFailed,
    build,
)
from berth.build.instructions import EnvInstruction, parse_instruction
from berth.engine.build_mounts import CacheMounts, remove_stubs
from berth.engine.containers import ContainerService
from berth.engine.context_cache import ContextCache
from berth.engine.model import ContainerConfig, HostConfig, MountRequest
from berth.errors import DockerfileError, InvalidArgument, NotImplementedByBerth
from berth.image.records import format_time
from berth.image.store import ImageStore
from berth.oci.image import History, ImageConfig
from berth.reference import parse_named
from berth.snapshot.archive import write_diff
from berth.snapshot.layers import LayerStore
from berth.snapshot.overlay import prepare_rootfs, release_rootfs
from berth.snapshot.ownership import adopt_tree

log = logging.getLogger(__name__)

__all__ = ["BuildRequest", "BuildService", "EngineBuildBackend", "CommitRequest"]

_LOG_POLL = 0.05


@dataclass(frozen=True)
class BuildRequest:
    """``POST /build`` parameters, already decoded."""

    dockerfile: str = ""
    tags: tuple[str, ...] = ()
    build_args: Mapping[str, str] = field(default_factory=dict)
    target: str | None = None
    no_cache: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)
    remote: str = ""


@dataclass(frozen=True)
class CommitRequest:
    container: str
    repo: str = ""
    tag: str = ""
    comment: str = ""
    author: str = ""
    pause: bool = True
    changes: tuple[str, ...] = ()


def _now() -> str:
    return format_time(datetime.now(UTC))


def _upper_is_empty(upper: Path) -> bool:
    try:
        return not any(os.scandir(upper))
    except FileNotFoundError:
        return True


class EngineBuildBackend:
    """``BuildBackend`` over the real engine services."""

    def __init__(self, images: ImageStore, containers: ContainerService, layers: LayerStore,
                 work_root: Path) -> None:
        self._images = images
        self._containers = containers
        self._layers = layers
        self._steps = work_root / "steps"
        self._cache = work_root / "cache"
        # a --userns-remap daemon's mapping: steps write shifted owners, diffs shift them back
        self._ids = containers.id_mapping
        self._cache_mounts = CacheMounts(work_root / "cache-mounts", self._ids)
        self._steps.mkdir(parents=True, exist_ok=True)
        self._cache.mkdir(parents=True, exist_ok=True)

    # -- images ------------------------------------------------------------------------------

    async def base_image(self, name: str) -> BaseImage:
        record = await asyncio.to_thread(self._images.get, name)
        return BaseImage(record.id, record.config)

    async def commit(self, parent: str | None, config: ImageConfig, created_by: str,
                     author: str) -> str:
        return await asyncio.to_thread(
            self._images.create_image, parent, None, config,
            History(created=_now(), created_by=created_by), author=author)

    async def tag(self, image_id: str, name: str) -> str:
        await asyncio.to_thread(self._images.tag, image_id, name)
        ref = parse_named(name)
        return (ref if ref.tag is not None or ref.digest else ref.with_tag("latest")
                ).familiar_string()

    def _lowers(self, image_id: str | None) -> list[Path]:
        if image_id is None:
            return []
        chain = self._images.layer_chain(image_id)
        return self._layers.lower_dirs(chain[-1]) if chain else []

    def _commit_upper(self, step_dir: Path, upper: Path, parent: str | None,
                      config: ImageConfig, created_by: str, author: str) -> str:
        layer: Path | None = None
        if not _upper_is_empty(upper):
            layer = step_dir / "layer.tar"
            with open(layer, "wb") as out:
                write_diff(upper, out, self._ids)
        return self._images.create_image(
            parent, layer, config, History(created=_now(), created_by=created_by),
            author=author)

    # -- filesystem steps --------------------------------------------------------------------

    async def change(self, parent: str | None, config: ImageConfig, created_by: str,
                     author: str, change: FsChange) -> str:
        return await asyncio.to_thread(self._change, parent, config, created_by, author, change)

    def _change(self, parent: str | None, config: ImageConfig, created_by: str, author: str,
                change: FsChange) -> str:
        step_dir = Path(tempfile.mkdtemp(prefix="step-", dir=self._steps))
        try:
            rootfs = prepare_rootfs(self._lowers(parent), step_dir, volatile=True,
                                    owner=self._ids.root_pair())
            try:
                change(rootfs)
            finally:
                release_rootfs(step_dir)
            adopt_tree(step_dir / "upper", self._ids)  # owners the step wrote as the daemon
            return self._commit_upper(step_dir, step_dir / "upper", parent, config,
                                      created_by, author)
        finally:
            release_rootfs(step_dir, remove=True)
            shutil.rmtree(step_dir, ignore_errors=True)

    @contextlib.asynccontextmanager
    async def mounted(self, image_id: str | None) -> AsyncIterator[Path]:
        step_dir = Path(tempfile.mkdtemp(prefix="src-", dir=self._steps))
        try:
            if image_id is None:
                empty = step_dir / "empty"
                empty.mkdir()
                yield empty
                return
            rootfs = await asyncio.to_thread(
                prepare_rootfs, self._lowers(image_id), step_dir, volatile=True)
            yield rootfs
        finally:
            await asyncio.to_thread(release_rootfs, step_dir, remove=True)
            shutil.rmtree(step_dir, ignore_errors=True)

    # -- RUN ---------------------------------------------------------------------------------

    async def run(self, parent: str | None, config: ImageConfig, created_by: str, author: str,
                  spec: RunSpec, progress: Progress) -> str:
        if parent is None:
            raise InvalidArgument("RUN needs a base image with a shell: the stage is FROM scratch"
                                  " and has no files yet")
        async with self._cache_mounts.requests(spec.mounts) as mounts:
            return await self._run(parent, config, created_by, author, spec, progress, mounts)

    async def _run(self, parent: str, config: ImageConfig, created_by: str, author: str,
                   spec: RunSpec, progress: Progress, mounts: tuple[MountRequest, ...]) -> str:
        # BuildKit's rule: a RUN step gets no volumes, so what it writes under a VOLUME path is
        # kept. The container service mounts the image's volumes, so the step runs from a
        # throw-away image without them (same layers; the diff still goes onto ``parent``).
        run_image = parent
        if config.volumes:
            run_image = await asyncio.to_thread(
                self._images.create_image, parent, None, replace(config, volumes=()),
                History(created=_now(), created_by="berth build step without volumes"))
        container = ContainerConfig(
            image=run_image, cmd=spec.argv, entrypoint=(), env=spec.env,
            working_dir=spec.workdir, user=spec.user, attach_stdout=True, attach_stderr=True)
        script_dir = Path(tempfile.mkdtemp(prefix="script-", dir=self._steps))
        if not self._ids.empty:  # the runtime binds the script as the remapped root
            script_dir.chmod(0o711)
        host = HostConfig(mounts=mounts)
        if spec.script is not None:
            script = script_dir / "script"
            script.write_text(spec.script)
            script.chmod(0o755)
            host = HostConfig(binds=(f"{script}:{SCRIPT_PATH}:ro",), mounts=mounts)
        try:
            record, _ = await self._containers.create(None, container, host)
        except BaseException:
            await self._drop_image(run_image, parent)
            shutil.rmtree(script_dir, ignore_errors=True)
            raise
        short = record.id[:12]
        await progress.stream(f" ---> Running in {short}\n")
        try:
            code = await self._run_container(record.id, progress)
            if code != 0:
                raise StepFailed(
                    f"The command '{spec.display}' returned a non-zero code: {code}", code)
            upper = self._containers.container_dir(record.id) / "upper"
            if spec.mounts:
                await asyncio.to_thread(remove_stubs, upper, self._lowers(parent),
                                        [m.target for m in spec.mounts])
            image_id = await asyncio.to_thread(
                self._commit_upper, self._containers.container_dir(record.id), upper, parent,
                config, created_by, author)
        finally:
            with contextlib.suppress(Exception):
                await self._containers.remove(record.id, force=True)
            await self._drop_image(run_image, parent)
            shutil.rmtree(script_dir, ignore_errors=True)
        await progress.stream(f"Removing intermediate container {short}\n")
        return image_id

    async def _drop_image(self, run_image: str, parent: str) -> None:
        if run_image != parent:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self._images.remove, run_image, True, False)

    async def _run_container(self, container_id: str, progress: Progress) -> int:
        log_path = self._containers.log_path(container_id)
        await self._containers.start(container_id)
        waiter = asyncio.ensure_future(self._containers.wait(container_id))
        offset = 0
        try:
            while True:
                finished = waiter.done()
                offset = await self._forward_log(log_path, offset, progress)
                if finished:
                    break
                await asyncio.wait({waiter}, timeout=_LOG_POLL)
        finally:
            if not waiter.done():
                waiter.cancel()
        return waiter.result().exit_code

    @staticmethod
    async def _forward_log(path: Path, offset: int, progress: Progress) -> int:
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read()
        except FileNotFoundError:
            return offset
        end = data.rfind(b"\n") + 1  # only whole lines; the rest comes with the next poll
        text = []
        for line in data[:end].splitlines():
            try:
                text.append(json.loads(line).get("log", ""))
            except ValueError:
                continue
        if text:
            await progress.stream("".join(text))
        return offset + end

    # -- cache -------------------------------------------------------------------------------

    def cache_get(self, key: str) -> str | None:
        try:
            image_id = (self._cache / key).read_text().strip()
        except FileNotFoundError:
            return None
        return image_id if self._images.exists(image_id) else None

    def cache_put(self, key: str, image_id: str) -> None:
        tmp = self._cache / f".{key}.{secrets.token_hex(4)}"
        tmp.write_text(image_id)
        tmp.replace(self._cache / key)


class BuildService:
    """``POST /build`` and ``POST /commit``."""

    def __init__(self, images: ImageStore, containers: ContainerService, layers: LayerStore,
                 data_root: Path) -> None:
        self._work = data_root / "builder"
        self._contexts = ContextCache(self._work / "contexts")
        self._images = images
        self._containers = containers
        self.backend = EngineBuildBackend(images, containers, layers, self._work)

    async def build(self, body: BinaryIO, request: BuildRequest,
                    progress: Progress) -> BuildResult:
        """Build the context in ``body`` (read in a worker thread; see ``ContextCache``)."""
        if request.remote:
            raise NotImplementedByBerth("building from a remote context is not supported by "
                                        "berth yet")
        lease = await asyncio.to_thread(self._contexts.acquire, body, request.dockerfile)
        built = False
        try:
            options = BuildOptions(
                tags=tuple(request.tags), build_args=dict(request.build_args),
                target=request.target or None, no_cache=request.no_cache,
                labels=dict(request.labels))
            result = await build(lease.context.dockerfile_text, lease.context, self.backend,
                                 options, progress)
            built = True
            return result
        finally:
            await asyncio.to_thread(self._contexts.release, lease, built)

    async def commit(self, request: CommitRequest) -> str:
        """``docker commit``: the container's writable layer as a new image."""
        record = self._containers.get(request.container)
        config = _config_from_container(record.config)
        for line in request.changes:
            config = _apply_change(config, line)
        paused = False
        if request.pause and record.status.state.value == "running":
            await self._containers.pause(record.id)
            paused = True
        try:
            cdir = self._containers.container_dir(record.id)
            image_id = await asyncio.to_thread(
                self._commit_dir, cdir, record.image_id, config,
                " ".join(record.config.cmd or ()), request)
        finally:
            if paused:
                await self._containers.unpause(record.id)
        if request.repo:
            name = f"{request.repo}:{request.tag}" if request.tag else request.repo
            await asyncio.to_thread(self._images.tag, image_id, name)
        return image_id

    def _commit_dir(self, cdir: Path, parent: str, config: ImageConfig, created_by: str,
                    request: CommitRequest) -> str:
        upper = cdir / "upper"
        layer_dir = Path(tempfile.mkdtemp(prefix="commit-", dir=self._work))
        try:
            if not upper.is_dir():  # created, never started: no writable layer, an empty diff
                upper = layer_dir / "empty"
                upper.mkdir()
            layer = layer_dir / "layer.tar"
            with open(layer, "wb") as out:
                write_diff(upper, out, self._containers.id_mapping)
            return self._images.create_image(
                parent, layer, config,
                History(created=_now(), created_by=created_by, author=request.author,
                        comment=request.comment),
                author=request.author, comment=request.comment)
        finally:
            shutil.rmtree(layer_dir, ignore_errors=True)


def _config_from_container(c: ContainerConfig) -> ImageConfig:
    health = None
    if c.healthcheck is not None:
        from berth.oci.image import Healthcheck  # noqa: PLC0415 - only for this rare case

        health = Healthcheck(c.healthcheck.test, c.healthcheck.interval_ns,
                             c.healthcheck.timeout_ns, c.healthcheck.start_period_ns,
                             c.healthcheck.retries)
    return ImageConfig(
        user=c.user, exposed_ports=tuple(sorted(c.exposed_ports)), env=tuple(c.env),
        entrypoint=c.entrypoint, cmd=c.cmd, volumes=tuple(sorted(c.volumes)),
        working_dir=c.working_dir, labels=dict(c.labels), stop_signal=c.stop_signal or "",
        healthcheck=health, on_build=tuple(c.on_build), shell=tuple(c.shell or ()))


_COMMIT_CHANGES = {"CMD", "ENTRYPOINT", "ENV", "EXPOSE", "HEALTHCHECK", "LABEL", "ONBUILD",
                   "STOPSIGNAL", "USER", "VOLUME", "WORKDIR"}


def _apply_change(config: ImageConfig, line: str) -> ImageConfig:
    """One ``commit -c`` line, parsed by the Dockerfile parser as Docker does."""
    try:
        instr = parse_instruction(line.strip())
    except DockerfileError as err:
        raise InvalidArgument(err.detail) from err
    if instr.keyword not in _COMMIT_CHANGES:
        raise InvalidArgument(f"{instr.keyword} is not a valid change command")
    if instr.keyword == "WORKDIR":
        from berth.build.config_steps import workdir_path  # noqa: PLC0415

        return replace(config, working_dir=workdir_path(config.working_dir,
                                                        getattr(instr, "path", "")))
    env: tuple[str, ...] | None = None
    if isinstance(instr, EnvInstruction):
        merged: dict[str, str] = dict(item.partition("=")[::2] for item in config.env)
        for pair in instr.env:
            merged[pair.key] = pair.value
        env = tuple(f"{k}={v}" for k, v in merged.items())
    change = apply_config_step(instr, config, env)
    assert change is not None
    return change.config

