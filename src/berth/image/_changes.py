"""Dockerfile-style change lines (`docker import -c`, `docker commit -c`) applied to a config.

Only the instructions that touch the config are valid, as in Docker: CMD, ENTRYPOINT, ENV, EXPOSE,
HEALTHCHECK (NONE or CMD without options), LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR.
"""

from __future__ import annotations

import dataclasses
import json
import posixpath
import shlex

from berth.errors import InvalidArgument
from berth.oci.image import Healthcheck, ImageConfig

_VALID = {
    "cmd",
    "entrypoint",
    "env",
    "expose",
    "healthcheck",
    "label",
    "onbuild",
    "stopsignal",
    "user",
    "volume",
    "workdir",
}


def apply_changes(config: ImageConfig, changes: list[str]) -> ImageConfig:
    for line in changes:
        config = _apply_one(config, line.strip())
    return config


def _exec_or_shell(rest: str) -> tuple[str, ...]:
    if rest.startswith("["):
        try:
            value = json.loads(rest)
        except ValueError:
            value = None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
    return ("/bin/sh", "-c", rest)


def _words(rest: str) -> list[str]:
    try:
        return shlex.split(rest, posix=True)
    except ValueError as err:
        raise InvalidArgument(f"invalid change: {err}") from err


def _pairs(instr: str, rest: str) -> list[tuple[str, str]]:
    words = _words(rest)
    if not words:
        raise InvalidArgument(f"{instr.upper()} requires at least one argument")
    if "=" not in words[0]:
        if instr != "env" or len(words) < 2:
            raise InvalidArgument(f"{instr.upper()} names can not be blank")
        key, _, value = rest.strip().partition(" ")
        return [(key, value.strip())]
    pairs = []
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise InvalidArgument(
                f"Syntax error - can't find = in {word!r}. Must be of the form: name=value"
            )
        pairs.append((key, value))
    return pairs


def _ports(rest: str) -> tuple[str, ...]:
    out: list[str] = []
    for word in rest.split():
        port, _, proto = word.partition("/")
        proto = (proto or "tcp").lower()
        low, _, high = port.partition("-")
        if not low.isdigit() or (high and not high.isdigit()):
            raise InvalidArgument(f"Invalid containerPort: {port}")
        for number in range(int(low), int(high or low) + 1):
            out.append(f"{number}/{proto}")
    return tuple(out)


def _apply_one(config: ImageConfig, line: str) -> ImageConfig:
    if not line or line.startswith("#"):
        return config
    word, _, rest = line.partition(" ")
    instr = word.lower()
    rest = rest.strip()
    if instr not in _VALID:
        raise InvalidArgument(f"{instr} is not a valid change command")
    replace = dataclasses.replace
    if instr == "cmd":
        return replace(config, cmd=_exec_or_shell(rest))
    if instr == "entrypoint":
        return replace(config, entrypoint=_exec_or_shell(rest))
    if instr == "env":
        env = list(config.env)
        for key, value in _pairs(instr, rest):
            env = [e for e in env if e.partition("=")[0] != key] + [f"{key}={value}"]
        return replace(config, env=tuple(env))
    if instr == "label":
        labels = dict(config.labels)
        labels.update(_pairs(instr, rest))
        return replace(config, labels=labels)
    if instr == "expose":
        ports = set(config.exposed_ports) | set(_ports(rest))
        return replace(config, exposed_ports=tuple(sorted(ports)))
    if instr == "volume":
        if rest.startswith("["):
            names = list(_exec_or_shell(rest))
            if names[:2] == ["/bin/sh", "-c"]:
                raise InvalidArgument("VOLUME: invalid JSON array")
        else:
            names = rest.split()
        if not names:
            raise InvalidArgument("VOLUME specified can not be an empty string")
        return replace(config, volumes=tuple(sorted(set(config.volumes) | set(names))))
    if instr == "workdir":
        if not rest:
            raise InvalidArgument("WORKDIR requires exactly one argument")
        return replace(
            config,
            working_dir=posixpath.normpath(posixpath.join("/", config.working_dir or "/", rest)),
        )
    if instr == "user":
        return replace(config, user=rest)
    if instr == "stopsignal":
        return replace(config, stop_signal=rest)
    if instr == "onbuild":
        return replace(config, on_build=(*config.on_build, rest))
    # healthcheck
    kind, _, command = rest.partition(" ")
    if kind.upper() == "NONE":
        return replace(config, healthcheck=Healthcheck(test=("NONE",)))
    if kind.upper() != "CMD":
        raise InvalidArgument(f"Unknown type {kind!r} in HEALTHCHECK (try CMD)")
    cmd = _exec_or_shell(command.strip())
    test = ("CMD", *cmd) if cmd[:2] != ("/bin/sh", "-c") else ("CMD-SHELL", cmd[2])
    return replace(config, healthcheck=Healthcheck(test=test))
