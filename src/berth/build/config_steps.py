"""Instructions that change only the image config, and the history lines the classic builder writes.

Pure: an (expanded) instruction and the config before it give the config after it and the
``created_by`` text of its history entry, spelt as Docker's classic builder spells it
(``/bin/sh -c #(nop)  CMD ["sh"]``; Go's ``%q`` of a string list has no commas). ``commit -c``
uses the same functions, as Docker does.
"""

from __future__ import annotations

import dataclasses
import posixpath
from dataclasses import dataclass

from berth.build.instructions import (
    ArgInstruction,
    CmdInstruction,
    EntrypointInstruction,
    EnvInstruction,
    ExposeInstruction,
    HealthcheckInstruction,
    Instruction,
    LabelInstruction,
    MaintainerInstruction,
    OnbuildInstruction,
    ShellInstruction,
    StopsignalInstruction,
    UserInstruction,
    VolumeInstruction,
    exposed_ports,
)
from berth.build.parser import go_quote
from berth.errors import InvalidArgument
from berth.oci.image import Healthcheck, ImageConfig

__all__ = [
    "DEFAULT_SHELL", "ConfigChange", "apply_config_step", "nop", "go_list", "shell_of",
    "workdir_path", "run_created_by",
]

DEFAULT_SHELL = ("/bin/sh", "-c")
_CONFIG_ONLY = (
    ArgInstruction, CmdInstruction, EntrypointInstruction, EnvInstruction, ExposeInstruction,
    HealthcheckInstruction, LabelInstruction, MaintainerInstruction, OnbuildInstruction,
    ShellInstruction, StopsignalInstruction, UserInstruction, VolumeInstruction,
)


@dataclass(frozen=True)
class ConfigChange:
    """The outcome of a config-only step; ``cmd_set`` tells the ENTRYPOINT rule a CMD was seen."""

    config: ImageConfig
    created_by: str
    author: str | None = None
    cmd_set: bool = False


def shell_of(config: ImageConfig) -> tuple[str, ...]:
    return config.shell or DEFAULT_SHELL


def nop(config: ImageConfig, text: str) -> str:
    """``<shell> #(nop)  <text>``: the two spaces are Docker's (``"#(nop) "`` + ``" "``)."""
    return " ".join((*shell_of(config), "#(nop) ", text))


def go_list(items: tuple[str, ...] | list[str]) -> str:
    """Go's ``%q`` of a []string: ``["a" "b c"]``."""
    return "[" + " ".join(go_quote(i) for i in items) + "]"


def _go_duration(ns: int) -> str:
    if ns == 0:
        return "0s"
    seconds, rest = divmod(ns, 1_000_000_000)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    text = f"{hours}h" if hours else ""
    if hours or minutes:
        text += f"{minutes}m"
    frac = f".{rest:09d}".rstrip("0") if rest else ""
    return text + f"{seconds}{frac if frac != '.' else ''}s"


def workdir_path(current: str, path: str) -> str:
    """WORKDIR: an absolute path is kept as written; a relative one joins the current dir."""
    if path.startswith("/"):
        return path
    return posixpath.normpath(posixpath.join(current or "/", path))


def run_created_by(argv: tuple[str, ...], args: dict[str, str]) -> str:
    """The history line of a RUN: ``|N a=1 b=2 /bin/sh -c ...`` when build args are in force."""
    if not args:
        return " ".join(argv)
    pairs = [f"{k}={args[k]}" for k in sorted(args)]
    return " ".join((f"|{len(pairs)}", *pairs, *argv))


def apply_config_step(
    instr: Instruction, config: ImageConfig, env: tuple[str, ...] | None = None
) -> ConfigChange | None:
    """The config after ``instr`` (already expanded), or None if it is not config-only.

    ``env`` is ``Config.Env`` after an ENV (the caller's scope orders and merges it).
    """
    if not isinstance(instr, _CONFIG_ONLY):
        return None
    rep = dataclasses.replace
    if isinstance(instr, EnvInstruction):
        text = "ENV" + "".join(f" {p.key}={p.value}" for p in instr.env)
        merged = env if env is not None else _merge_env(config.env, instr)
        return ConfigChange(rep(config, env=merged), nop(config, text))
    if isinstance(instr, LabelInstruction):
        labels = dict(config.labels)
        for pair in instr.labels:
            labels[pair.key] = pair.value
        text = "LABEL" + "".join(f" {p.key}={p.value}" for p in instr.labels)
        return ConfigChange(rep(config, labels=labels), nop(config, text))
    if isinstance(instr, CmdInstruction):
        cmd = (*shell_of(config), *instr.command) if instr.prepend_shell else instr.command
        return ConfigChange(rep(config, cmd=tuple(cmd)), nop(config, f"CMD {go_list(cmd)}"),
                            cmd_set=True)
    if isinstance(instr, EntrypointInstruction):
        entry = (*shell_of(config), *instr.command) if instr.prepend_shell else instr.command
        return ConfigChange(rep(config, entrypoint=tuple(entry)),
                            nop(config, f"ENTRYPOINT {go_list(entry)}"))
    if isinstance(instr, ExposeInstruction):
        ports = sorted(set(config.exposed_ports) | set(exposed_ports(instr.ports)))
        return ConfigChange(rep(config, exposed_ports=tuple(ports)),
                            nop(config, "EXPOSE " + " ".join(instr.ports)))
    if isinstance(instr, VolumeInstruction):
        volumes = sorted(set(config.volumes) | set(instr.paths))
        return ConfigChange(rep(config, volumes=tuple(volumes)),
                            nop(config, "VOLUME [" + " ".join(instr.paths) + "]"))
    if isinstance(instr, UserInstruction):
        return ConfigChange(rep(config, user=instr.user), nop(config, "USER " + instr.user))
    if isinstance(instr, StopsignalInstruction):
        _check_signal(instr.signal)
        return ConfigChange(rep(config, stop_signal=instr.signal),
                            nop(config, "STOPSIGNAL " + instr.signal))
    if isinstance(instr, ShellInstruction):
        return ConfigChange(rep(config, shell=instr.shell),
                            nop(config, "SHELL [" + " ".join(instr.shell) + "]"))
    if isinstance(instr, OnbuildInstruction):
        expression = instr.expression.strip()
        keyword, _, rest = expression.partition(" ")
        expression = keyword.upper() + (" " + rest if rest else "")
        return ConfigChange(rep(config, on_build=(*config.on_build, expression)),
                            nop(config, "ONBUILD " + expression))
    if isinstance(instr, MaintainerInstruction):
        return ConfigChange(config, nop(config, "MAINTAINER " + instr.maintainer),
                            author=instr.maintainer)
    if isinstance(instr, HealthcheckInstruction):
        health = Healthcheck(test=instr.test, interval=instr.interval, timeout=instr.timeout,
                             start_period=instr.start_period, retries=instr.retries)
        text = (f"HEALTHCHECK &{{{go_list(instr.test)} \"{_go_duration(instr.interval)}\" "
                f"\"{_go_duration(instr.timeout)}\" \"{_go_duration(instr.start_period)}\" "
                f"'{_go_rune(instr.retries)}'}}")
        return ConfigChange(rep(config, healthcheck=health), nop(config, text))
    assert isinstance(instr, ArgInstruction)
    text = "ARG" + "".join(
        f" {a.name}" + (f"={a.default}" if a.default is not None else "") for a in instr.args
    )
    return ConfigChange(config, nop(config, text))


def _merge_env(current: tuple[str, ...], instr: EnvInstruction) -> tuple[str, ...]:
    env = dict(item.partition("=")[::2] for item in current)
    for pair in instr.env:
        env[pair.key] = pair.value
    return tuple(f"{k}={v}" for k, v in env.items())


def _go_rune(n: int) -> str:
    if 32 <= n < 127 and chr(n) not in "'\\":
        return chr(n)
    return f"\\x{n:02x}" if n < 256 else f"\\u{n:04x}"


def _check_signal(text: str) -> None:
    if text.isdigit():
        if 0 < int(text) < 65:
            return
    elif text.upper().removeprefix("SIG").replace("+", "").replace("-", "").isalnum():
        return
    raise InvalidArgument(f"Invalid signal: {text}")
