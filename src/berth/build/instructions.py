"""Typed Dockerfile instructions, stages, and the rules for variable scope between them.

Second pass of the frontend: ``parser.RawInstruction`` → one frozen dataclass per instruction,
grouped into ``Stage``s by ``parse_dockerfile``. Nothing here runs anything and nothing is
substituted in instruction arguments at parse time except the ``FROM`` lines (which see only
the global ARGs). Substitution per step belongs to the executor, because it depends on the
environment in force at that step. The executor's loop for one stage is::

    scope = StageScope.start(base_env=image_config_env, parent=scope_of_parent_stage_or_None)
    for instr in stage.instructions:
        instr = expand(instr, scope.substitution_env(), escape=dockerfile.escape)
        ...execute instr (RUN sees scope.run_env())...
        scope = scope.apply(instr, dockerfile)

Scope rules (Docker's): ENV values persist and override an ARG of the same name; an ARG is
visible from its declaring line to the end of its stage (and in stages built ``FROM`` it); a
global ARG (declared before the first FROM) is visible only in FROM lines until a stage
re-declares it (``ARG NAME`` without a value imports the global value); every reference in
one instruction sees the values from *before* that instruction (``ENV a=2 b=$a``).
"""

from __future__ import annotations

import csv
import dataclasses
import posixpath
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from berth.build import parser as _p
from berth.build.parser import FlagSpec, parse_flags
from berth.build.shell import Lexer, ShellError, process_word
from berth.errors import DockerfileError

__all__ = [
    "Instruction", "FromInstruction", "RunInstruction", "CmdInstruction",
    "EntrypointInstruction", "ShellInstruction", "ExposeInstruction", "LabelInstruction",
    "EnvInstruction", "ArgInstruction", "WorkdirInstruction", "UserInstruction",
    "VolumeInstruction", "CopyInstruction", "AddInstruction", "OnbuildInstruction",
    "StopsignalInstruction", "HealthcheckInstruction", "MaintainerInstruction",
    "KeyValue", "ArgDecl", "HeredocSource", "Heredoc", "Mount", "Stage", "Dockerfile",
    "StageScope", "parse_dockerfile", "parse_instruction", "convert", "expand",
    "to_json", "parse_mount", "parse_duration", "exposed_ports", "PREDEFINED_ARGS",
]

Heredoc = _p.Heredoc

#: Build args usable without an ARG line and never reported as unused.
PREDEFINED_ARGS = frozenset(
    "HTTP_PROXY http_proxy HTTPS_PROXY https_proxy FTP_PROXY ftp_proxy NO_PROXY no_proxy "
    "ALL_PROXY all_proxy".split()
)
_STAGE_NAME = re.compile(r"^[a-z][a-z0-9-_.]*$")
_ONBUILD_PREFIX = re.compile(r"^\s*ONBUILD\s*", re.IGNORECASE)


# ---- records ----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Instruction:
    """Fields every instruction has: the logical source line and where it was."""

    keyword: ClassVar[str] = ""
    original: str = ""
    line: int = 0
    end_line: int = 0


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: str


@dataclass(frozen=True)
class ArgDecl:
    """``ARG name`` (default None) or ``ARG name=default``."""

    name: str
    default: str | None = None


@dataclass(frozen=True)
class HeredocSource:
    """A ``COPY <<EOF /dest`` source: a file named ``name`` holding ``data``."""

    name: str
    data: str
    expand: bool = True


@dataclass(frozen=True, kw_only=True)
class FromInstruction(Instruction):
    keyword: ClassVar[str] = "FROM"
    image: str
    stage_name: str | None = None
    platform: str | None = None


@dataclass(frozen=True, kw_only=True)
class RunInstruction(Instruction):
    """``command`` is the JSON array (exec form) or ``[text]`` (shell form, ``prepend_shell``)."""

    keyword: ClassVar[str] = "RUN"
    command: tuple[str, ...]
    prepend_shell: bool = True
    heredocs: tuple[Heredoc, ...] = ()
    mounts: tuple[Mount, ...] = ()
    network: str | None = None
    security: str | None = None

    def shell_script(self) -> str:
        """Text for ``<SHELL> <text>`` in shell form, heredoc bodies included as BuildKit does.

        ``RUN <<EOF`` alone runs the (tab-stripped) body itself; the executor should instead
        write it to an executable file and run that when the body starts with ``#!``.
        Otherwise the command line is followed by each body and its terminator, so the shell
        reads them as here-documents.
        """
        text = self.command[0] if self.command else ""
        if not self.heredocs:
            return text
        if _p.parse_heredoc_word(text) is not None:
            return self.heredocs[0].data
        return text + "".join("\n" + d.content + d.name for d in self.heredocs)


@dataclass(frozen=True, kw_only=True)
class CmdInstruction(Instruction):
    keyword: ClassVar[str] = "CMD"
    command: tuple[str, ...]
    prepend_shell: bool = True


@dataclass(frozen=True, kw_only=True)
class EntrypointInstruction(Instruction):
    keyword: ClassVar[str] = "ENTRYPOINT"
    command: tuple[str, ...]
    prepend_shell: bool = True


@dataclass(frozen=True, kw_only=True)
class ShellInstruction(Instruction):
    keyword: ClassVar[str] = "SHELL"
    shell: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class ExposeInstruction(Instruction):
    """Ports as written (``80``, ``8000-8001/udp``); ``exposed_ports`` normalises them."""

    keyword: ClassVar[str] = "EXPOSE"
    ports: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class LabelInstruction(Instruction):
    keyword: ClassVar[str] = "LABEL"
    labels: tuple[KeyValue, ...]


@dataclass(frozen=True, kw_only=True)
class EnvInstruction(Instruction):
    keyword: ClassVar[str] = "ENV"
    env: tuple[KeyValue, ...]


@dataclass(frozen=True, kw_only=True)
class ArgInstruction(Instruction):
    keyword: ClassVar[str] = "ARG"
    args: tuple[ArgDecl, ...]


@dataclass(frozen=True, kw_only=True)
class WorkdirInstruction(Instruction):
    keyword: ClassVar[str] = "WORKDIR"
    path: str


@dataclass(frozen=True, kw_only=True)
class UserInstruction(Instruction):
    keyword: ClassVar[str] = "USER"
    user: str


@dataclass(frozen=True, kw_only=True)
class VolumeInstruction(Instruction):
    keyword: ClassVar[str] = "VOLUME"
    paths: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class CopyInstruction(Instruction):
    keyword: ClassVar[str] = "COPY"
    sources: tuple[str, ...]
    dest: str
    heredoc_sources: tuple[HeredocSource, ...] = ()
    from_: str | None = None
    chown: str | None = None
    chmod: str | None = None
    link: bool = False
    parents: bool = False
    excludes: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class AddInstruction(Instruction):
    keyword: ClassVar[str] = "ADD"
    sources: tuple[str, ...]
    dest: str
    heredoc_sources: tuple[HeredocSource, ...] = ()
    chown: str | None = None
    chmod: str | None = None
    link: bool = False
    keep_git_dir: bool = False
    checksum: str | None = None
    unpack: bool | None = None
    excludes: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class OnbuildInstruction(Instruction):
    """``expression`` goes into ``Config.OnBuild``; ``trigger`` is it parsed, if it parses."""

    keyword: ClassVar[str] = "ONBUILD"
    expression: str
    trigger: Instruction | None = None


@dataclass(frozen=True, kw_only=True)
class StopsignalInstruction(Instruction):
    keyword: ClassVar[str] = "STOPSIGNAL"
    signal: str


@dataclass(frozen=True, kw_only=True)
class HealthcheckInstruction(Instruction):
    """``test`` as Docker stores it: ``["NONE"]``, ``["CMD", ...]`` or ``["CMD-SHELL", text]``.

    Durations are nanoseconds; 0 means "not given, use the default".
    """

    keyword: ClassVar[str] = "HEALTHCHECK"
    test: tuple[str, ...]
    interval: int = 0
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0


@dataclass(frozen=True, kw_only=True)
class MaintainerInstruction(Instruction):
    keyword: ClassVar[str] = "MAINTAINER"
    maintainer: str


# ---- raw → typed --------------------------------------------------------------------------

_FLAGS: dict[str, FlagSpec] = {
    "FROM": FlagSpec(strings=("platform",)),
    "RUN": FlagSpec(strings=("network", "security"), lists=("mount",)),
    "COPY": FlagSpec(
        strings=("from", "chown", "chmod"), bools=("link", "parents"), lists=("exclude",)
    ),
    "ADD": FlagSpec(
        strings=("chown", "chmod", "checksum"), bools=("link", "keep-git-dir", "unpack"),
        lists=("exclude",),
    ),
    "HEALTHCHECK": FlagSpec(
        strings=("interval", "timeout", "start-period", "start-interval", "retries")
    ),
}


def convert(raw: _p.RawInstruction) -> Instruction:
    """Turn one raw instruction into its typed record; raises ``DockerfileError`` with its line."""
    try:
        return _convert(raw)
    except DockerfileError:
        raise
    except ShellError as err:
        raise DockerfileError(str(err), raw.start_line) from err


def _err(raw: _p.RawInstruction, message: str) -> DockerfileError:
    return DockerfileError(message, raw.start_line)


def _convert(raw: _p.RawInstruction) -> Instruction:
    kw = raw.keyword
    args = list(raw.arguments)
    common: dict[str, Any] = {
        "original": raw.original, "line": raw.start_line, "end_line": raw.end_line,
    }
    if kw not in _p.KNOWN_INSTRUCTIONS:
        raise _err(raw, f"unknown instruction: {kw}")
    if kw == "HEALTHCHECK" and args and args[0].upper() == "NONE":
        flags: dict[str, Any] = {}  # Docker never looks at flags of HEALTHCHECK NONE
    else:
        flags = parse_flags(raw, _FLAGS.get(kw, FlagSpec()))

    if kw == "FROM":
        if len(args) == 3 and args[1].lower() == "as":
            name = args[2].lower()
            if not _STAGE_NAME.match(name):
                raise _err(
                    raw,
                    f"invalid name for build stage: {_p.go_quote(args[2])}, "
                    "name can't start with a number or contain symbols",
                )
        elif len(args) != 1:
            raise _err(raw, "FROM requires either one or three arguments")
        else:
            name = None
        return FromInstruction(
            image=args[0], stage_name=name, platform=flags.get("platform"), **common
        )
    if kw == "RUN":
        mounts = tuple(_mount(raw, m) for m in flags.get("mount", ()))
        network, security = flags.get("network"), flags.get("security")
        if network is not None and network not in ("default", "none", "host"):
            raise _err(raw, f"unsupported network mode {_p.go_quote(network)}")
        if security is not None and security not in ("sandbox", "insecure"):
            raise _err(raw, f"unsupported security mode {_p.go_quote(security)}")
        return RunInstruction(
            command=tuple(args), prepend_shell=not raw.json, heredocs=raw.heredocs,
            mounts=mounts, network=network, security=security, **common,
        )
    if kw == "CMD":
        return CmdInstruction(command=tuple(args), prepend_shell=not raw.json, **common)
    if kw == "ENTRYPOINT":
        return EntrypointInstruction(command=tuple(args), prepend_shell=not raw.json, **common)
    if kw == "SHELL":
        if not raw.json:
            raise _err(raw, "SHELL requires the arguments to be in JSON form")
        if not args:
            raise _err(raw, "SHELL requires at least one argument")
        return ShellInstruction(shell=tuple(args), **common)
    if kw == "EXPOSE":
        if not args:
            raise _err(raw, "EXPOSE requires at least one argument")
        return ExposeInstruction(ports=tuple(args), **common)
    if kw in ("ENV", "LABEL"):
        pairs = _pairs(raw, args)
        if kw == "ENV":
            return EnvInstruction(env=pairs, **common)
        return LabelInstruction(labels=pairs, **common)
    if kw == "ARG":
        if not args:
            raise _err(raw, "ARG requires at least one argument")
        decls = []
        for word in args:
            name, eq, default = word.partition("=")
            if eq and not name:
                raise _err(raw, "ARG names can not be blank")
            decls.append(ArgDecl(name, default if eq else None))
        return ArgInstruction(args=tuple(decls), **common)
    if kw in ("WORKDIR", "USER", "STOPSIGNAL", "MAINTAINER"):
        if len(args) != 1:
            raise _err(raw, f"{kw} requires exactly one argument")
        if kw == "WORKDIR":
            return WorkdirInstruction(path=args[0], **common)
        if kw == "USER":
            return UserInstruction(user=args[0], **common)
        if kw == "STOPSIGNAL":
            return StopsignalInstruction(signal=args[0], **common)
        return MaintainerInstruction(maintainer=args[0], **common)
    if kw == "VOLUME":
        if not args:
            raise _err(raw, "VOLUME requires at least one argument")
        paths = tuple(a.strip() for a in args)
        if any(not p for p in paths):
            raise _err(raw, "VOLUME specified can not be an empty string")
        return VolumeInstruction(paths=paths, **common)
    if kw in ("COPY", "ADD"):
        return _copy(raw, args, flags, common)
    if kw == "ONBUILD":
        return _onbuild(raw, common)
    return _healthcheck(raw, args, flags, common)


def _mount(raw: _p.RawInstruction, spec: str) -> Mount:
    try:
        return parse_mount(spec)
    except ValueError as err:
        raise _err(raw, str(err)) from None


def _pairs(raw: _p.RawInstruction, args: list[str]) -> tuple[KeyValue, ...]:
    if not args:
        raise _err(raw, f"{raw.keyword} requires at least one argument")
    if len(args) % 2:
        raise _err(raw, f"Bad input to {raw.keyword}, too many arguments")
    pairs = []
    for i in range(0, len(args), 2):
        if not args[i]:
            raise _err(raw, f"{raw.keyword} names can not be blank")
        pairs.append(KeyValue(args[i], args[i + 1]))
    return tuple(pairs)


def _copy(
    raw: _p.RawInstruction, args: list[str], flags: dict[str, Any], common: dict[str, Any]
) -> Instruction:
    kw = raw.keyword
    if len(args) < 2:
        raise _err(
            raw,
            f"{kw} requires at least two arguments, but only one was provided. "
            "Destination could not be determined.",
        )
    dest = args[-1]
    if not raw.json and _p.parse_heredoc_word(dest) is not None:
        raise _err(raw, f"{kw} cannot accept a heredoc as a destination")
    sources: list[str] = []
    docs: list[HeredocSource] = []
    for src in args[:-1]:
        word = None if raw.json else _p.parse_heredoc_word(src)
        if word is None:
            sources.append(src)
            continue
        body = next((d for d in raw.heredocs if d.name == word.name), None)
        docs.append(HeredocSource(word.name, body.data if body else "", word.expand))
    shared: dict[str, Any] = {
        "sources": tuple(sources), "dest": dest, "heredoc_sources": tuple(docs),
        "chown": flags.get("chown"), "chmod": flags.get("chmod"),
        "link": flags.get("link", False), "excludes": tuple(flags.get("exclude", ())),
    }
    if kw == "COPY":
        return CopyInstruction(
            from_=flags.get("from"), parents=flags.get("parents", False), **shared, **common
        )
    return AddInstruction(
        keep_git_dir=flags.get("keep-git-dir", False), checksum=flags.get("checksum"),
        unpack=flags.get("unpack"), **shared, **common,
    )


def _onbuild(raw: _p.RawInstruction, common: dict[str, Any]) -> Instruction:
    if raw.sub is None:
        raise _err(raw, "ONBUILD requires at least one argument")
    trigger_kw = raw.sub.keyword
    if trigger_kw == "ONBUILD":
        raise _err(raw, "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if trigger_kw in ("MAINTAINER", "FROM"):
        raise _err(raw, f"{trigger_kw} isn't allowed as an ONBUILD trigger")
    try:
        trigger: Instruction | None = convert(raw.sub)
    except DockerfileError:
        trigger = None  # Docker stores the text and fails only when a child build runs it
    return OnbuildInstruction(
        expression=_ONBUILD_PREFIX.sub("", raw.original, count=1), trigger=trigger, **common
    )


def _healthcheck(
    raw: _p.RawInstruction, args: list[str], flags: dict[str, Any], common: dict[str, Any]
) -> Instruction:
    if not args:
        raise _err(raw, "HEALTHCHECK requires at least one argument")
    kind, rest = args[0].upper(), args[1:]
    if kind == "NONE":
        if rest:
            raise _err(raw, "HEALTHCHECK NONE takes no arguments")
        return HealthcheckInstruction(test=("NONE",), **common)
    if kind != "CMD":
        raise _err(raw, f"Unknown type {_p.go_quote(kind)} in HEALTHCHECK (try CMD)")
    if not rest:
        raise _err(raw, "Missing command after HEALTHCHECK CMD")
    test = ("CMD" if raw.json else "CMD-SHELL", *rest)
    durations: dict[str, Any] = {}
    for flag in ("interval", "timeout", "start-period", "start-interval"):
        value = flags.get(flag) or ""
        try:
            ns = parse_duration(value) if value else 0
        except ValueError as err:
            raise _err(raw, str(err)) from None
        if ns != 0 and ns < 1_000_000:  # 0 means "default"; anything else must be >= 1ms
            raise _err(raw, f'Interval "{flag}" cannot be less than 1ms')
        durations[flag.replace("-", "_")] = ns
    retries = 0
    if flags.get("retries"):
        text = flags["retries"]
        if not re.fullmatch(r"[+-]?\d+", text):
            raise _err(raw, f'strconv.ParseInt: parsing {_p.go_quote(text)}: invalid syntax')
        retries = int(text)
        if retries < 0:
            raise _err(raw, f"--retries cannot be negative ({retries})")
    return HealthcheckInstruction(test=test, retries=retries, **durations, **common)


def parse_instruction(text: str, escape: str = "\\") -> Instruction:
    """Parse one instruction line, e.g. an ONBUILD trigger read back from an image config."""
    parsed = _p.parse(f"# escape={escape}\n{text}" if escape != "\\" else text)
    if len(parsed.instructions) != 1:
        raise DockerfileError("expected exactly one instruction")
    return convert(parsed.instructions[0])


# ---- RUN --mount ----------------------------------------------------------------------------

_MOUNT_TYPES = ("bind", "cache", "tmpfs", "secret", "ssh")


@dataclass(frozen=True)
class Mount:
    """One ``RUN --mount=...`` with Docker's defaults filled in; ``spec`` is the text as written."""

    spec: str
    type: str = "bind"
    target: str | None = None
    source: str | None = None
    from_: str | None = None
    readonly: bool = True
    id: str | None = None
    sharing: str | None = None
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    size: int | None = None
    required: bool = False
    env: str | None = None


def parse_mount(spec: str, expander: Callable[[str], str] | None = None) -> Mount:
    """Parse ``type=cache,target=/root/.cache,...``; values go through ``expander`` if given."""
    fields = next(csv.reader([spec]), [])
    values: dict[str, Any] = {"type": "bind"}
    readonly: bool | None = None
    for item in fields:
        key, eq, value = item.partition("=")
        key = key.lower()
        if not eq:
            if key in ("readonly", "ro"):
                readonly = True
            elif key in ("readwrite", "rw"):
                readonly = False
            elif key == "required" and values["type"] in ("secret", "ssh"):
                values["required"] = True
            elif key == "required":
                raise ValueError(f"unexpected key '{key}' for mount type '{values['type']}'")
            else:
                raise ValueError(f"unexpected key '{key}' in '{item}'")
            continue
        if expander is not None:
            value = expander(value)
        if key == "type":
            if value.lower() not in _MOUNT_TYPES:
                raise ValueError(f"unsupported mount type {_p.go_quote(value)}")
            values["type"] = value.lower()
        elif key == "from":
            values["from_"] = value
        elif key in ("source", "src"):
            values["source"] = value
        elif key in ("target", "dst", "destination"):
            values["target"] = value
        elif key in ("readonly", "ro", "readwrite", "rw"):
            flag = _go_bool(value)
            if flag is None:
                raise ValueError(f"invalid value for {key}: {value}")
            readonly = flag if key in ("readonly", "ro") else not flag
        elif key == "required":
            if values["type"] not in ("secret", "ssh"):
                raise ValueError(f"unexpected key '{key}' for mount type '{values['type']}'")
            values["required"] = bool(_go_bool(value))
        elif key == "size":
            if values["type"] != "tmpfs":
                raise ValueError(f"unexpected key '{key}' for mount type '{values['type']}'")
            values["size"] = _ram_in_bytes(value)
        elif key == "id":
            values["id"] = value
        elif key == "sharing":
            if value.lower() not in ("shared", "private", "locked"):
                raise ValueError(f"unsupported sharing value {_p.go_quote(value)}")
            values["sharing"] = value.lower()
        elif key in ("mode", "uid", "gid"):
            try:
                values[key] = int(value, 8 if key == "mode" else 10)
            except ValueError:
                raise ValueError(f"invalid value {value} for {key}") from None
        elif key == "env":
            values["env"] = value
        else:
            raise ValueError(f"unexpected key '{key}' in '{item}'")
    kind = values["type"]
    if kind not in ("secret", "ssh", "cache"):
        for key in ("mode", "uid", "gid"):
            if key in values:
                raise ValueError(f"{key} not allowed for {_p.go_quote(kind)} type mounts")
    if "sharing" in values and kind != "cache":
        raise ValueError(f"invalid cache sharing set for {kind} mount")
    if kind == "secret":
        if values.get("from_"):
            raise ValueError("secret mount should not have a from")
        if not (values.get("source") or values.get("target") or values.get("id")):
            raise ValueError("invalid secret mount. one of source, target required")
        if not values.get("id"):
            values["id"] = posixpath.basename(values.get("target") or values["source"])
        values.setdefault("target", "/run/secrets/" + values["id"])
    elif kind == "ssh":
        values.setdefault("id", "default")
    elif kind == "cache":
        values.setdefault("sharing", "shared")
        if values.get("target"):
            values.setdefault("id", values["target"])
    if readonly is None:
        readonly = kind not in ("cache", "tmpfs")
    return Mount(spec=spec, readonly=readonly, **values)


def _go_bool(value: str) -> bool | None:
    if value in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if value in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    return None


def _ram_in_bytes(value: str) -> int:
    match = re.fullmatch(r"(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?", value)
    if not match:
        raise ValueError(f"invalid size: '{value}'")
    power = "kmgtp".find(match.group(2).lower()) + 1 if match.group(2) else 0
    return int(float(match.group(1)) * 1024**power)


# ---- small value parsers ------------------------------------------------------------------

_DURATION_UNITS = {
    "ns": 1, "us": 1_000, "\u00b5s": 1_000, "\u03bcs": 1_000, "ms": 1_000_000,
    "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000,
}


def parse_duration(text: str) -> int:
    """Go's ``time.ParseDuration`` in nanoseconds (``1m30s``, ``1.5h``, ``300ms``)."""
    quoted = _p.go_quote(text)
    s = text
    negative = s[:1] == "-"
    if s[:1] in ("-", "+"):
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise ValueError(f"time: invalid duration {quoted}")
    total = 0
    while s:
        number = re.match(r"(\d*)(?:\.(\d*))?", s)
        assert number is not None
        whole, frac = number.group(1), number.group(2)
        if not whole and not frac:
            raise ValueError(f"time: invalid duration {quoted}")
        s = s[number.end() :]
        unit_match = re.match(r"[^\d.]*", s)
        unit = unit_match.group(0) if unit_match else ""
        if not unit:
            raise ValueError(f"time: missing unit in duration {quoted}")
        if unit not in _DURATION_UNITS:
            raise ValueError(f"time: unknown unit {_p.go_quote(unit)} in duration {quoted}")
        s = s[len(unit) :]
        scale = _DURATION_UNITS[unit]
        total += int(whole or 0) * scale
        if frac:
            total += int(frac) * scale // 10 ** len(frac)
    return -total if negative else total


def exposed_ports(ports: Iterable[str]) -> tuple[str, ...]:
    """``EXPOSE`` words (after expansion) → ``Config.ExposedPorts`` keys, ranges expanded."""
    out: list[str] = []
    for spec in ports:
        port = spec.rsplit(":", 1)[-1]  # ip:host:container forms keep the container port
        number, _, proto = port.partition("/")
        proto = (proto or "tcp").lower()
        if proto not in ("tcp", "udp", "sctp"):
            raise DockerfileError(f"invalid proto: {proto}")
        first, dash, last = number.partition("-")
        if not first.isdigit() or (dash and not last.isdigit()):
            raise DockerfileError(f"Invalid containerPort: {number}")  # dockerd 20.10's wording
        lo, hi = int(first), int(last) if dash else int(first)
        if hi < lo or hi > 65535:
            raise DockerfileError(f"invalid range specified for container port: {number}")
        out += [f"{p}/{proto}" for p in range(lo, hi + 1)]
    return tuple(dict.fromkeys(out))


# ---- substitution ---------------------------------------------------------------------------


def expand(instr: Instruction, env: Mapping[str, str], escape: str = "\\") -> Instruction:
    """Substitute builder variables in the arguments Docker expands, with ``env`` as it is now.

    ADD, COPY (paths, --chown, --chmod, --from, --exclude, unquoted heredoc bodies), ENV and
    LABEL (keys and values, all against ``env`` as it was before the instruction), EXPOSE
    (split into words), FROM (image, --platform), STOPSIGNAL, USER, VOLUME, WORKDIR, ARG
    (names and defaults) and ``RUN --mount`` values. RUN, CMD, ENTRYPOINT, SHELL, HEALTHCHECK,
    MAINTAINER and ONBUILD are returned unchanged: the shell, or nobody, expands those.
    """
    lexer = Lexer(escape=escape)

    def word(text: str) -> str:
        return lexer.process_word(text, env)

    def opt(text: str | None) -> str | None:
        return None if text is None else word(text)

    try:
        return _expand(instr, env, escape, word, opt)
    except ShellError as err:
        raise DockerfileError(str(err), instr.line or None) from err


def _expand(
    instr: Instruction,
    env: Mapping[str, str],
    escape: str,
    word: Callable[[str], str],
    opt: Callable[[str | None], str | None],
) -> Instruction:
    rep = dataclasses.replace
    if isinstance(instr, FromInstruction):
        return rep(instr, image=word(instr.image), platform=opt(instr.platform))
    if isinstance(instr, EnvInstruction):
        return rep(instr, env=tuple(KeyValue(word(p.key), word(p.value)) for p in instr.env))
    if isinstance(instr, LabelInstruction):
        return rep(
            instr, labels=tuple(KeyValue(word(p.key), word(p.value)) for p in instr.labels)
        )
    if isinstance(instr, ArgInstruction):
        return rep(instr, args=tuple(ArgDecl(word(a.name), opt(a.default)) for a in instr.args))
    if isinstance(instr, WorkdirInstruction):
        return rep(instr, path=word(instr.path))
    if isinstance(instr, UserInstruction):
        return rep(instr, user=word(instr.user))
    if isinstance(instr, StopsignalInstruction):
        return rep(instr, signal=word(instr.signal))
    if isinstance(instr, VolumeInstruction):
        return rep(instr, paths=tuple(word(p) for p in instr.paths))
    if isinstance(instr, ExposeInstruction):
        lexer = Lexer(escape=escape)
        return rep(instr, ports=tuple(w for p in instr.ports for w in lexer.process_words(p, env)))
    if isinstance(instr, CopyInstruction | AddInstruction):
        body_lexer = Lexer(escape=escape, skip_quotes=True)
        docs = tuple(
            rep(d, data=body_lexer.process_word(d.data, env)) if d.expand else d
            for d in instr.heredoc_sources
        )
        changes: dict[str, Any] = {
            "sources": tuple(word(s) for s in instr.sources), "dest": word(instr.dest),
            "heredoc_sources": docs, "chown": opt(instr.chown), "chmod": opt(instr.chmod),
            "excludes": tuple(word(e) for e in instr.excludes),
        }
        if isinstance(instr, CopyInstruction):
            changes["from_"] = opt(instr.from_)
        else:
            changes["checksum"] = opt(instr.checksum)
        return rep(instr, **changes)
    if isinstance(instr, RunInstruction) and instr.mounts:
        try:
            mounts = tuple(parse_mount(m.spec, word) for m in instr.mounts)
        except ValueError as err:
            raise DockerfileError(str(err), instr.line or None) from None
        return rep(instr, mounts=mounts)
    return instr


# ---- JSON (golden files, debugging) ---------------------------------------------------------


def to_json(value: Any) -> Any:
    """A JSON-ready view of instructions, stages and their parts (``from_`` is spelt ``from``)."""
    if isinstance(value, Instruction):
        body = {"instruction": value.keyword}
        body.update(_fields_json(value))
        return body
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _fields_json(value)
    if isinstance(value, tuple | list):
        return [to_json(v) for v in value]
    if isinstance(value, Mapping):
        return {k: to_json(v) for k, v in value.items()}
    return value


def _fields_json(value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(value):
        out[f.name.rstrip("_")] = to_json(getattr(value, f.name))
    return out


# ---- stages, the whole file, and variable scope ---------------------------------------------


@dataclass(frozen=True)
class Stage:
    """One ``FROM`` and the instructions up to the next.

    ``base_image`` is the FROM image after global-ARG substitution; ``base_stage`` is the index
    of the earlier stage it names (case-insensitive), if any. ``dependencies`` are the earlier
    stages it needs: its base stage, ``COPY --from`` and ``RUN --mount=from=`` (by name or
    index; the values are expanded with the global ARGs only, so a ``--from=$X`` whose X is
    declared inside the stage is resolved by the executor, not here).
    """

    index: int
    name: str | None
    from_instruction: FromInstruction
    base_image: str
    platform: str | None
    base_stage: int | None
    instructions: tuple[Instruction, ...]
    dependencies: tuple[int, ...] = ()


@dataclass(frozen=True)
class Dockerfile:
    """A parsed Dockerfile and the build args it was parsed with.

    ``global_args`` are the ARG instructions before the first FROM; ``meta_args`` their values
    (``--build-arg`` wins over the default; None = declared without a value). ``warnings`` are
    printable lines (empty continuation lines, unused build args).
    """

    stages: tuple[Stage, ...]
    global_args: tuple[ArgInstruction, ...]
    meta_args: Mapping[str, str | None]
    build_args: Mapping[str, str]
    unused_build_args: tuple[str, ...] = ()
    escape: str = "\\"
    directives: Mapping[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def syntax(self) -> str | None:
        return self.directives.get("syntax")

    @property
    def unused_build_args_warning(self) -> str | None:
        """Docker's line for build args no ARG declares, or None when all were used."""
        if not self.unused_build_args:
            return None
        names = " ".join(self.unused_build_args)
        return f"[Warning] One or more build-args [{names}] were not consumed"

    def stage(self, ref: str | int) -> Stage:
        """A stage by name (case-insensitive) or 0-based index (an int or a string of digits)."""
        if isinstance(ref, int) or ref.isdigit():
            index = int(ref)
            if 0 <= index < len(self.stages):
                return self.stages[index]
        else:
            for stage in self.stages:
                if stage.name == ref.lower():
                    return stage
        raise DockerfileError(f"failed to reach build target {ref} in Dockerfile")

    def stages_for_target(self, target: str | None = None) -> tuple[Stage, ...]:
        """The target stage (default: the last) and every stage it depends on, in file order."""
        last = self.stage(target) if target else self.stages[-1]
        needed = {last.index}
        pending = [last]
        while pending:
            for dep in pending.pop().dependencies:
                if dep not in needed:
                    needed.add(dep)
                    pending.append(self.stages[dep])
        return tuple(s for s in self.stages if s.index in needed)


@dataclass(frozen=True)
class StageScope:
    """Variables in force at one point of a stage; immutable, ``apply`` gives the next one.

    ``env`` holds ENV values in image-config order (the base image's first); ``args`` the ARGs
    declared so far in this stage (value None: declared, but no value from anywhere).
    """

    env: tuple[tuple[str, str], ...] = ()
    args: tuple[tuple[str, str | None], ...] = ()

    @classmethod
    def start(cls, base_env: Iterable[str] = (), inherit: StageScope | None = None) -> StageScope:
        """Scope right after FROM: ``base_env`` is the base image's ``Config.Env`` (``K=V``).

        When the base is an earlier stage, pass that stage's final scope as ``inherit``: its
        ARGs stay visible (BuildKit's rule); its ENV arrives through ``base_env``.
        """
        env: dict[str, str] = {}
        for item in base_env:
            key, _, value = item.partition("=")
            env[key] = value
        return cls(env=tuple(env.items()), args=inherit.args if inherit else ())

    def substitution_env(self) -> dict[str, str]:
        """Names visible to ``expand`` (and to RUN): ARGs with a value, overridden by ENV."""
        merged = {k: v for k, v in self.args if v is not None}
        merged.update(self.env)
        return merged

    def run_env(self) -> dict[str, str]:
        """The environment of a RUN step: ENV plus the ARG values ENV does not override."""
        return self.substitution_env()

    def config_env(self) -> list[str]:
        """``Config.Env`` of the image: ENV only (ARGs are never stored)."""
        return [f"{k}={v}" for k, v in self.env]

    def apply(self, instr: Instruction, dockerfile: Dockerfile) -> StageScope:
        """The scope after an (already expanded) ENV or ARG; other instructions change nothing."""
        if isinstance(instr, EnvInstruction):
            env = dict(self.env)
            for pair in instr.env:
                env[pair.key] = pair.value
            return StageScope(env=tuple(env.items()), args=self.args)
        if isinstance(instr, ArgInstruction):
            args = dict(self.args)
            for decl in instr.args:
                if decl.name in dockerfile.build_args:
                    value: str | None = dockerfile.build_args[decl.name]
                elif decl.default is not None:
                    value = decl.default
                else:
                    value = dockerfile.meta_args.get(decl.name)
                args[decl.name] = value
            return StageScope(env=self.env, args=tuple(args.items()))
        return self


def parse_dockerfile(
    text: str,
    build_args: Mapping[str, str] | None = None,
    *,
    default_args: Mapping[str, str] | None = None,
) -> Dockerfile:
    """Parse a Dockerfile into stages; ``build_args`` are ``--build-arg`` values.

    ``default_args`` seeds the global ARG values without counting as user build args (the
    automatic ``TARGETPLATFORM``, ``BUILDARCH``... a builder provides). Raises
    ``DockerfileError`` with Docker's wording and the line.
    """
    build_args = dict(build_args or {})
    try:
        parsed = _p.parse(text)
    except DockerfileError as err:
        raise err.during("parse") from err
    global_args: list[ArgInstruction] = []
    groups: list[tuple[FromInstruction, list[Instruction]]] = []
    for raw in parsed.instructions:
        try:
            instr = convert(raw)
        except DockerfileError as err:
            raise err.during("instruction") from err
        if not groups and isinstance(instr, ArgInstruction):
            global_args.append(instr)
        elif isinstance(instr, FromInstruction):
            groups.append((instr, []))
        elif not groups:
            raise DockerfileError("no build stage in current context", raw.start_line)
        else:
            groups[-1][1].append(instr)
    if not groups:
        raise DockerfileError("dockerfile contains no stages to build")

    meta: dict[str, str | None] = dict(default_args or {})
    for arg_instr in global_args:
        for decl in arg_instr.args:
            if decl.name in build_args:
                meta[decl.name] = build_args[decl.name]
            elif decl.default is not None:
                meta[decl.name] = _word(decl.default, _set(meta), parsed.escape, arg_instr.line)
            else:
                meta.setdefault(decl.name, None)
    meta_env = _set(meta)

    stages: list[Stage] = []
    names: dict[str, int] = {}
    for index, (from_instr, body) in enumerate(groups):
        image = _word(from_instr.image, meta_env, parsed.escape, from_instr.line)
        if not image:
            raise DockerfileError(
                f"base name ({from_instr.image}) should not be blank", from_instr.line
            )
        platform = from_instr.platform
        if platform is not None:
            platform = _word(platform, meta_env, parsed.escape, from_instr.line)
        base_stage = names.get(image.lower())
        deps = [] if base_stage is None else [base_stage]
        for ref in _stage_refs(body):
            ref = _try_word(ref, meta_env, parsed.escape)
            dep = int(ref) if ref.isdigit() and int(ref) < index else names.get(ref.lower())
            if dep is not None and dep not in deps:
                deps.append(dep)
        name = from_instr.stage_name
        if name is not None:
            if name in names:
                raise DockerfileError(f"{name} stage name already used", from_instr.line)
            names[name] = index
        stages.append(
            Stage(
                index=index, name=name, from_instruction=from_instr, base_image=image,
                platform=platform or None, base_stage=base_stage, instructions=tuple(body),
                dependencies=tuple(sorted(deps)),
            )
        )

    declared = {d.name for a in global_args for d in a.args}
    for stage in stages:
        for instr in stage.instructions:
            if isinstance(instr, ArgInstruction):
                declared.update(d.name for d in instr.args)
    unused = sorted(k for k in build_args if k not in declared and k not in PREDEFINED_ARGS)
    dockerfile = Dockerfile(
        stages=tuple(stages), global_args=tuple(global_args), meta_args=meta,
        build_args=build_args, unused_build_args=tuple(unused), escape=parsed.escape,
        directives=parsed.directives, warnings=parsed.warnings,
    )
    warning = dockerfile.unused_build_args_warning
    if warning:
        dockerfile = dataclasses.replace(dockerfile, warnings=(*dockerfile.warnings, warning))
    return dockerfile


def _set(values: Mapping[str, str | None]) -> dict[str, str]:
    return {k: v for k, v in values.items() if v is not None}


def _word(text: str, env: Mapping[str, str], escape: str, line: int) -> str:
    try:
        return process_word(text, env, escape)
    except ShellError as err:
        raise DockerfileError(str(err), line) from err


def _try_word(text: str, env: Mapping[str, str], escape: str) -> str:
    try:
        return process_word(text, env, escape)
    except ShellError:
        return text


def _stage_refs(body: Iterable[Instruction]) -> list[str]:
    refs: list[str] = []
    for instr in body:
        if isinstance(instr, CopyInstruction) and instr.from_:
            refs.append(instr.from_)
        elif isinstance(instr, RunInstruction):
            refs += [m.from_ for m in instr.mounts if m.from_]
    return refs
