"""Running a parsed Dockerfile, stage by stage, step by step, against a ``BuildBackend``.

Each step either changes only the config (an image with an ``empty_layer`` history entry) or
changes the filesystem (RUN in a container; COPY/ADD/WORKDIR written into a mounted rootfs):
the backend turns the writable layer into a new layer. Every step's result is an image, as in
the classic builder, so ``history`` and the cache work per step.

Cache: a step's key is its parent image, its ``created_by`` text (the instruction after
substitution; for COPY/ADD with a digest of the sources' names, modes and bytes), the config
it produces and the author. A key seen before whose image still exists is reused
(`` ---> Using cache``) unless ``no_cache``.

Only the target stage and the stages it depends on are built (BuildKit's rule; the classic
builder built every stage before the target). Each stage starts as soon as the stages it
needs are built, so independent stages run at the same time; their output is still one
transcript in file order (``stage_output``). When a stage fails, the others stop before
their next step and the build reports that failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from berth.build.config_steps import (
    apply_config_step,
    nop,
    run_created_by,
    shell_of,
    workdir_path,
)
from berth.build.context import BuildContext
from berth.build.filecopy import resolve_in_root
from berth.build.instructions import (
    AddInstruction,
    CopyInstruction,
    Dockerfile,
    EntrypointInstruction,
    Instruction,
    KeyValue,
    LabelInstruction,
    RunInstruction,
    Stage,
    StageScope,
    WorkdirInstruction,
    expand,
    parse_dockerfile,
    parse_instruction,
)
from berth.build.parser import parse_heredoc_word
from berth.build.run_mounts import RunMount, check_supported, resolve_mounts
from berth.build.sources import CopyPlan, plan_copy
from berth.build.stage_output import StageOutputs
from berth.errors import BerthError, DockerfileError, NotImplementedByBerth
from berth.oci.image import ImageConfig

log = logging.getLogger(__name__)

# dockerd's build stream marks what went to stderr with these ANSI colour codes
_STDERR_START, _STDERR_END = "\x1b[91m", "\x1b[0m"

__all__ = [
    "BaseImage", "RunSpec", "BuildOptions", "BuildBackend", "Progress", "StepFailed",
    "BuildResult", "build", "SCRIPT_PATH",
]

FsChange = Callable[[Path], None]
"""Writes into a mounted rootfs (runs in a worker thread)."""


@dataclass(frozen=True)
class BaseImage:
    """An image a stage starts from: ``id`` None is ``scratch``."""

    id: str | None
    config: ImageConfig


@dataclass(frozen=True)
class RunSpec:
    """What a RUN step executes, and as whom."""

    argv: tuple[str, ...]
    env: tuple[str, ...]
    user: str
    workdir: str
    display: str  # for the error message: "/bin/sh -c false"
    script: str | None = None  # a `RUN <<EOF` body with a #! line: argv[0] is where it goes
    mounts: tuple[RunMount, ...] = ()  # RUN --mount, resolved


#: Where a ``RUN <<EOF`` script with a ``#!`` line is bind-mounted (in /dev: a tmpfs, so the
#: mount point never reaches the layer), to be run directly as BuildKit does.
SCRIPT_PATH = "/dev/.berth-heredoc-script"


@dataclass(frozen=True)
class BuildOptions:
    tags: tuple[str, ...] = ()
    build_args: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    no_cache: bool = False
    labels: dict[str, str] = field(default_factory=dict)


class StepFailed(BerthError):
    """A RUN step exited non-zero; ``code`` is its exit code (the CLI exits with it)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class Progress(Protocol):
    async def stream(self, text: str) -> None: ...
    async def aux_id(self, image_id: str) -> None: ...


class BuildBackend(Protocol):
    """What the executor needs from the engine."""

    async def base_image(self, name: str) -> BaseImage:
        """Resolve ``FROM name`` (or ``COPY --from=image``); raises ImageNotFound."""
        ...

    async def commit(self, parent: str | None, config: ImageConfig, created_by: str,
                     author: str) -> str:
        """A child image with no new layer; returns its ID."""
        ...

    async def change(self, parent: str | None, config: ImageConfig, created_by: str,
                     author: str, change: FsChange) -> str:
        """Mount ``parent``'s rootfs writable, apply ``change``, commit the diff (no layer when
        nothing changed)."""
        ...

    async def run(self, parent: str | None, config: ImageConfig, created_by: str, author: str,
                  spec: RunSpec, progress: Progress) -> str:
        """Run ``spec`` in a container of ``parent``; commit its diff. Raises StepFailed."""
        ...

    def mounted(self, image_id: str | None) -> AbstractAsyncContextManager[Path]:
        """``image_id``'s filesystem, readable, for as long as the context lasts."""
        ...

    def cache_get(self, key: str) -> str | None: ...
    def cache_put(self, key: str, image_id: str) -> None: ...
    async def tag(self, image_id: str, name: str) -> str:
        """Tag; returns the familiar name printed in ``Successfully tagged``."""
        ...


@dataclass(frozen=True)
class BuildResult:
    image_id: str
    tags: tuple[str, ...]


@dataclass
class _StageState:
    image_id: str | None
    config: ImageConfig
    scope: StageScope
    author: str = ""
    cmd_set: bool = False


@dataclass
class _Run:
    dockerfile: Dockerfile
    context: BuildContext | None
    backend: BuildBackend
    options: BuildOptions
    progress: Progress
    scratch: Path
    done: dict[int, _StageState] = field(default_factory=dict)
    built: dict[int, asyncio.Event] = field(default_factory=dict)  # set when done or failed
    stopping: asyncio.Event = field(default_factory=asyncio.Event)  # a stage has failed
    stage_index: int = 0  # the stage this copy of the run builds
    step: int = 0
    total: int = 0


class _Stopped(Exception):
    """Another stage failed: this one stops before its next step."""


async def build(dockerfile_text: str, context: BuildContext | None, backend: BuildBackend,
                options: BuildOptions, progress: Progress) -> BuildResult:
    """Build the target stage of ``dockerfile_text``; tags it; returns the image ID."""
    df = parse_dockerfile(dockerfile_text, options.build_args)
    stages = list(df.stages_for_target(options.target))
    if options.labels:
        last = stages[-1]
        text = "LABEL " + " ".join(f"{json.dumps(k)}={json.dumps(v)}"
                                   for k, v in options.labels.items())
        label = LabelInstruction(
            labels=tuple(KeyValue(k, v) for k, v in options.labels.items()), original=text)
        stages[-1] = dataclasses.replace(last, instructions=(*last.instructions, label))
    scratch_parent = context.root.parent if context else Path(tempfile.gettempdir())
    with tempfile.TemporaryDirectory(prefix="build-", dir=scratch_parent) as scratch:
        run = _Run(df, context, backend, options, progress, Path(scratch))
        run.total = len(df.global_args) + sum(1 + len(s.instructions) for s in stages)
        parse_warnings = [w for w in df.warnings if w != df.unused_build_args_warning]
        if parse_warnings:  # dockerd writes them to the build's stderr, which it colours red
            await progress.stream(_STDERR_START + "".join(w + "\n" for w in parse_warnings)
                                  + _STDERR_END)
        for arg in df.global_args:
            await _announce(run, arg.original)
        state = await _build_stages(run, stages)
    if state.image_id is None:  # FROM scratch and nothing else: an image with no layer
        state.image_id = await backend.commit(None, state.config, "", state.author)
        await progress.stream(f" ---> {_short(state.image_id)}\n")
    warning = df.unused_build_args_warning
    if warning:
        await progress.stream(warning + "\n")
    await progress.aux_id(state.image_id)
    await progress.stream(f"Successfully built {_short(state.image_id)}\n")
    tags = []
    for name in options.tags:
        tags.append(await backend.tag(state.image_id, name))
        await progress.stream(f"Successfully tagged {tags[-1]}\n")
    return BuildResult(state.image_id, tuple(tags))


def _short(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


async def _announce(run: _Run, text: str) -> None:
    run.step += 1
    await run.progress.stream(f"Step {run.step}/{run.total} : {text}\n")


async def _build_stages(run: _Run, stages: list[Stage]) -> _StageState:
    """Start every stage at once; each waits for the stages it needs. → the last one's state."""
    outputs = StageOutputs(run.progress, len(stages))
    run.built.update((stage.index, asyncio.Event()) for stage in stages)
    tasks = []
    step = run.step
    for position, stage in enumerate(stages):
        stage_run = dataclasses.replace(run, progress=outputs[position], step=step,
                                        stage_index=stage.index)
        step += 1 + len(stage.instructions)
        tasks.append(asyncio.create_task(_stage_task(stage_run, stage, outputs, position)))
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for position, result in enumerate(results):
        if isinstance(result, BaseException) and not isinstance(result, _Stopped):
            await outputs.flush_until(position)
            raise result
    last = results[-1]
    assert isinstance(last, _StageState)
    return last


async def _stage_task(run: _Run, stage: Stage, outputs: StageOutputs,
                      position: int) -> _StageState:
    try:
        state = await _build_stage(run, stage)
    except BaseException:
        run.stopping.set()
        run.built[stage.index].set()
        raise
    run.done[stage.index] = state
    run.built[stage.index].set()
    await outputs.finished(position)
    return state


async def _built(run: _Run, index: int) -> _StageState:
    """Stage ``index``'s final state, once it is built."""
    await run.built[index].wait()
    state = run.done.get(index)
    if state is None:
        raise _Stopped()
    return state


async def _build_stage(run: _Run, stage: Stage) -> _StageState:
    await _announce(run, stage.from_instruction.original)
    if stage.base_stage is not None:
        parent = await _built(run, stage.base_stage)
        base = BaseImage(parent.image_id, parent.config)
        inherit: StageScope | None = parent.scope
    elif stage.base_image.lower() == "scratch":
        base, inherit = BaseImage(None, ImageConfig()), None
    else:
        base, inherit = await run.backend.base_image(stage.base_image), None
    if base.id is not None:
        await run.progress.stream(f" ---> {_short(base.id)}\n")
    triggers = base.config.on_build
    state = _StageState(base.id, dataclasses.replace(base.config, on_build=()),
                        StageScope.start(base.config.env, inherit))
    if triggers:
        await run.progress.stream(f"# Executing {len(triggers)} build trigger"
                                  f"{'s' if len(triggers) > 1 else ''}\n")
        for text in triggers:
            await _step(run, state, parse_instruction(text, run.dockerfile.escape))
    for instr in stage.instructions:
        if run.stopping.is_set():
            raise _Stopped()
        await _announce(run, instr.original)
        await _step(run, state, instr)
    return state


async def _step(run: _Run, state: _StageState, raw: Instruction) -> None:
    instr = expand(raw, state.scope.substitution_env(), run.dockerfile.escape)
    next_scope = state.scope.apply(instr, run.dockerfile)
    await _dispatch(run, state, instr, next_scope)
    state.scope = next_scope


async def _dispatch(run: _Run, state: _StageState, instr: Instruction,
                    next_scope: StageScope) -> None:
    env = tuple(next_scope.config_env())
    change = apply_config_step(instr, state.config, env)
    if change is not None:
        config = change.config
        if isinstance(instr, EntrypointInstruction) and not state.cmd_set:
            config = dataclasses.replace(config, cmd=None)  # Docker resets an inherited CMD
        author = change.author if change.author is not None else state.author
        state.cmd_set = state.cmd_set or change.cmd_set
        state.author = author

        async def commit() -> str:
            return await run.backend.commit(state.image_id, config, change.created_by, author)

        await _cached(run, state, config, change.created_by, commit, metadata=True)
        return
    if isinstance(instr, WorkdirInstruction):
        path = workdir_path(state.config.working_dir, instr.path)
        config = dataclasses.replace(state.config, working_dir=path)
        created_by = nop(state.config, f"WORKDIR {path}").replace("#(nop)  ", "#(nop) ")

        def mkdir(rootfs: Path) -> None:
            target = resolve_in_root(rootfs, path)
            os.makedirs(target, mode=0o755, exist_ok=True)

        async def workdir() -> str:
            return await run.backend.change(state.image_id, config, created_by, state.author,
                                            mkdir)

        await _cached(run, state, config, created_by, workdir, metadata=True)
        return
    if isinstance(instr, RunInstruction):
        await _run(run, state, instr)
        return
    if isinstance(instr, CopyInstruction | AddInstruction):
        await _copy(run, state, instr)
        return
    raise NotImplementedByBerth(f"{instr.keyword} is not supported by berth's builder")


async def _cached(run: _Run, state: _StageState, config: ImageConfig, created_by: str,
                  produce: Callable[[], Awaitable[str]], *, metadata: bool = False,
                  extra: str = "") -> None:
    key = _cache_key(state.image_id, created_by, config, state.author, extra)
    hit = None if run.options.no_cache else run.backend.cache_get(key)
    if hit is not None:
        await run.progress.stream(f" ---> Using cache\n ---> {_short(hit)}\n")
        state.image_id, state.config = hit, config
        return
    if metadata:
        # the classic builder commits config changes through a short-lived container
        fake = hashlib.sha256(os.urandom(16)).hexdigest()[:12]
        await run.progress.stream(f" ---> Running in {fake}\n")
        await run.progress.stream(f"Removing intermediate container {fake}\n")
    image_id = await produce()
    run.backend.cache_put(key, image_id)
    await run.progress.stream(f" ---> {_short(image_id)}\n")
    state.image_id, state.config = image_id, config


def _cache_key(parent: str | None, created_by: str, config: ImageConfig, author: str,
               extra: str = "") -> str:
    parts: list[object] = [parent or "", created_by, config.to_json(), author]
    if extra:  # RUN --mount sources; absent otherwise so older keys stay valid
        parts.append(extra)
    body = json.dumps(parts, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()


async def _run(run: _Run, state: _StageState, instr: RunInstruction) -> None:
    if instr.network not in (None, "default") or instr.security not in (None, "sandbox"):
        raise NotImplementedByBerth(
            f"Dockerfile:{instr.line}: RUN --network and --security are not "
            "supported by berth's builder yet")
    check_supported(instr.mounts, instr.line)
    config = state.config
    script: str | None = None
    if instr.prepend_shell:
        # a bare `RUN` runs the shell with no script, which fails as in Docker (`-c requires
        # an argument`)
        argv = (*shell_of(config), instr.shell_script()) if instr.command else shell_of(config)
        alone = instr.heredocs and parse_heredoc_word(instr.command[0]) is not None
        if alone and instr.shell_script().startswith("#!"):
            script = instr.shell_script()
    else:
        argv = tuple(instr.command)
    env_names = {item.partition("=")[0] for item in config.env}
    args = {k: v for k, v in state.scope.args if v is not None and k not in env_names}
    created_by = run_created_by(argv, args)
    env = tuple(f"{k}={v}" for k, v in state.scope.run_env().items())
    async with contextlib.AsyncExitStack() as stack:
        mounts: tuple[RunMount, ...] = ()
        extra = ""
        if instr.mounts:
            async def root_for(ref: str) -> tuple[Path, str]:
                return await _mount_from(run, stack, ref, instr.line)

            mounts, extra = await resolve_mounts(
                instr.mounts, workdir=config.working_dir or "/",
                context_root=run.context.root if run.context else None, root_for=root_for,
                scratch=run.scratch)
        spec = RunSpec(argv=(SCRIPT_PATH,) if script is not None else argv, env=env,
                       user=config.user, workdir=config.working_dir or "/",
                       display=" ".join(argv), script=script, mounts=mounts)

        async def produce() -> str:
            return await run.backend.run(state.image_id, config, created_by, state.author,
                                         spec, run.progress)

        await _cached(run, state, config, created_by, produce, extra=extra)


async def _copy(run: _Run, state: _StageState, instr: CopyInstruction | AddInstruction) -> None:
    async with contextlib.AsyncExitStack() as stack:
        source_root = await _source_root(run, stack, instr)
        plan: CopyPlan = await plan_copy(instr, source_root, state.config.working_dir,
                                         run.scratch, from_context=_from_context(instr))
        # Docker writes `--chown=<spec>` glued to the hash (no space); it also keys the cache
        flags = f"--chown={instr.chown}" if instr.chown else ""
        if instr.chmod:  # BuildKit-only flag, spelt the same way so it keys the cache too
            flags = f"--chmod={instr.chmod} {flags}"
        created_by = nop(state.config, f"{instr.keyword} {flags}{plan.digest} in {plan.dest} ")
        created_by = created_by.replace("#(nop)  ", "#(nop) ")

        async def produce() -> str:
            return await run.backend.change(state.image_id, state.config, created_by,
                                            state.author, plan.apply)

        await _cached(run, state, state.config, created_by, produce)


def _from_context(instr: CopyInstruction | AddInstruction) -> bool:
    return not (isinstance(instr, CopyInstruction) and instr.from_)


async def _source_root(run: _Run, stack: contextlib.AsyncExitStack,
                       instr: CopyInstruction | AddInstruction) -> Path | None:
    ref = instr.from_ if isinstance(instr, CopyInstruction) else None
    if not ref:
        return run.context.root if run.context else None
    return (await _mount_from(run, stack, ref, instr.line))[0]


async def _mount_from(run: _Run, stack: contextlib.AsyncExitStack, ref: str,
                      line: int) -> tuple[Path, str]:
    """``--from=ref`` (a stage by name or index, else an image) mounted until ``stack``
    closes, with the image ID that names its content."""
    stage_index: int | None = None
    try:
        stage_index = run.dockerfile.stage(ref).index
    except DockerfileError:
        stage_index = None
    if stage_index is not None:
        if stage_index >= run.stage_index or stage_index not in run.built:
            raise DockerfileError(f"invalid from flag value {ref}: refers to the current or a "
                                  "later stage", line)
        image_id = (await _built(run, stage_index)).image_id
    else:
        image_id = (await run.backend.base_image(ref)).id
    return await stack.enter_async_context(run.backend.mounted(image_id)), image_id or ""

