"""berthd's configuration: dockerd-style flags merged with a daemon.json file.

Rules follow dockerd: a key in the file that is also given as a flag is an error (no silent
precedence), an unknown key in the file is an error, a missing file is fine unless it was named
explicitly with ``--config-file``. The result is one frozen ``DaemonConfig`` passed to everything
else; nothing reads flags or the file after this point.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from berth import __version__
from berth.engine.tls import TLSSettings
from berth.errors import InvalidArgument

# Docker's version number that berth's API matches, with berth's own as build metadata: clients
# that compare versions see 20.10.27, people see berth.
ENGINE_VERSION = f"20.10.27+berth.{__version__}"

DEFAULT_HOST = "unix:///run/berth/berth.sock"
DEFAULT_DATA_ROOT = Path("/var/lib/berth")
DEFAULT_EXEC_ROOT = Path("/run/berth")
DEFAULT_PIDFILE = Path("/run/berth/berthd.pid")
DEFAULT_CONFIG_FILE = Path("/etc/berth/daemon.json")
DEFAULT_RUNTIME = "runc"
LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")


@dataclass(frozen=True)
class RuntimeEntry:
    """One OCI runtime the daemon may use (daemon.json ``runtimes``, ``--add-runtime``)."""

    path: str
    args: tuple[str, ...] = ()


def _default_runtimes() -> Mapping[str, RuntimeEntry]:
    return {"runc": RuntimeEntry("runc"), "crun": RuntimeEntry("crun"),
            "berth": RuntimeEntry("berth-runtime")}


@dataclass(frozen=True)
class DaemonConfig:
    hosts: tuple[str, ...] = (DEFAULT_HOST,)
    data_root: Path = DEFAULT_DATA_ROOT
    exec_root: Path = DEFAULT_EXEC_ROOT
    pidfile: Path = DEFAULT_PIDFILE
    config_file: Path = DEFAULT_CONFIG_FILE
    debug: bool = False
    log_level: str = "info"
    group: str | None = None  # socket group; None = root, as dockerd when "docker" is absent
    default_runtime: str = DEFAULT_RUNTIME
    runtimes: Mapping[str, RuntimeEntry] = field(default_factory=_default_runtimes)
    insecure_registries: tuple[str, ...] = ("127.0.0.0/8",)
    registry_mirrors: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    experimental: bool = False
    tls: TLSSettings = TLSSettings()
    userns_remap: str = ""  # dockerd's --userns-remap, resolved by berth.engine.userns

    @property
    def effective_log_level(self) -> int:
        """The ``logging`` level: ``--debug`` forces debug, as in dockerd."""
        if self.debug:
            return logging.DEBUG
        return {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
                "error": logging.ERROR, "fatal": logging.CRITICAL}[self.log_level]


# daemon.json key → argparse dest; the flag's spelling for messages is the key itself, as dockerd.
_FILE_KEYS: dict[str, str] = {
    "hosts": "hosts",
    "data-root": "data_root",
    "exec-root": "exec_root",
    "pidfile": "pidfile",
    "debug": "debug",
    "log-level": "log_level",
    "group": "group",
    "default-runtime": "default_runtime",
    "runtimes": "add_runtime",
    "insecure-registries": "insecure_registries",
    "registry-mirrors": "registry_mirrors",
    "labels": "labels",
    "experimental": "experimental",
    "tls": "tls",
    "tlsverify": "tlsverify",
    "tlscacert": "tlscacert",
    "tlscert": "tlscert",
    "tlskey": "tlskey",
    "userns-remap": "userns_remap",
}


def build_parser() -> argparse.ArgumentParser:
    """dockerd's flags for what berthd supports; every default is None so 'was it set' is known."""
    p = argparse.ArgumentParser(prog="berthd",
                                description="A self-sufficient runtime for containers.")
    p.add_argument("-H", "--host", dest="hosts", action="append", metavar="list",
                   help="Daemon socket(s) to connect to")
    p.add_argument("--data-root", dest="data_root", metavar="string",
                   help=f"Root directory of persistent state (default \"{DEFAULT_DATA_ROOT}\")")
    p.add_argument("--exec-root", dest="exec_root", metavar="string",
                   help=f"Root directory for execution state files "
                        f"(default \"{DEFAULT_EXEC_ROOT}\")")
    p.add_argument("-p", "--pidfile", dest="pidfile", metavar="string",
                   help=f"Path to use for daemon PID file (default \"{DEFAULT_PIDFILE}\")")
    p.add_argument("--config-file", dest="config_file", metavar="string",
                   help=f"Daemon configuration file (default \"{DEFAULT_CONFIG_FILE}\")")
    p.add_argument("-D", "--debug", dest="debug", action="store_const", const=True,
                   help="Enable debug mode")
    p.add_argument("-l", "--log-level", dest="log_level", metavar="string",
                   help='Set the logging level ("debug"|"info"|"warn"|"error"|"fatal")')
    p.add_argument("-G", "--group", dest="group", metavar="string",
                   help="Group for the unix socket (default root)")
    p.add_argument("--default-runtime", dest="default_runtime", metavar="string",
                   help=f"Default OCI runtime for containers (default \"{DEFAULT_RUNTIME}\")")
    p.add_argument("--add-runtime", dest="add_runtime", action="append", metavar="runtime",
                   help="Register an additional OCI compatible runtime (name=path)")
    p.add_argument("--insecure-registry", dest="insecure_registries", action="append",
                   metavar="list", help="Enable insecure registry communication")
    p.add_argument("--registry-mirror", dest="registry_mirrors", action="append",
                   metavar="list", help="Preferred registry mirror")
    p.add_argument("--label", dest="labels", action="append", metavar="list",
                   help="Set key=value labels to the daemon")
    p.add_argument("--experimental", dest="experimental", action="store_const", const=True,
                   help="Enable experimental features")
    p.add_argument("--tls", dest="tls", action="store_const", const=True,
                   help="Use TLS; implied by --tlsverify")
    p.add_argument("--tlsverify", dest="tlsverify", action="store_const", const=True,
                   help="Use TLS and verify the remote")
    p.add_argument("--tlscacert", dest="tlscacert", metavar="string",
                   help='Trust certs signed only by this CA (default "~/.docker/ca.pem")')
    p.add_argument("--tlscert", dest="tlscert", metavar="string",
                   help='Path to TLS certificate file (default "~/.docker/cert.pem")')
    p.add_argument("--tlskey", dest="tlskey", metavar="string",
                   help='Path to TLS key file (default "~/.docker/key.pem")')
    p.add_argument("--userns-remap", dest="userns_remap", metavar="string",
                   help="User/Group setting for user namespaces")
    return p


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def load_config(args: argparse.Namespace) -> DaemonConfig:
    """Merge parsed flags with the configuration file into a validated ``DaemonConfig``."""
    explicit_file = args.config_file is not None
    config_file = Path(args.config_file) if explicit_file else DEFAULT_CONFIG_FILE
    try:
        file_values = load_config_file(config_file)
    except FileNotFoundError as err:
        if explicit_file:
            raise InvalidArgument(
                f"unable to configure the Docker daemon with file {config_file}: "
                f"open {config_file}: no such file or directory") from err
        file_values = {}
    except InvalidArgument as err:
        raise InvalidArgument(
            f"unable to configure the Docker daemon with file {config_file}: {err}") from err

    conflicts = [f"{key}: (from flag: {_show(getattr(args, dest))}, "
                 f"from file: {_show(file_values[key])})"
                 for key, dest in _FILE_KEYS.items()
                 if key in file_values and getattr(args, dest) is not None]
    if conflicts:
        raise InvalidArgument(
            f"unable to configure the Docker daemon with file {config_file}: the following "
            f"directives are specified both as a flag and in the configuration file: "
            f"{', '.join(conflicts)}")

    def pick(key: str) -> Any:
        flag = getattr(args, _FILE_KEYS[key])
        return flag if flag is not None else file_values.get(key)

    defaults = DaemonConfig()
    runtimes = dict(defaults.runtimes)
    if args.add_runtime is not None:
        runtimes.update(_parse_runtime_flags(args.add_runtime))
    elif "runtimes" in file_values:
        runtimes.update(_parse_runtime_file(file_values["runtimes"]))

    log_level = _str_or(pick("log-level"), defaults.log_level, "log-level")
    if log_level not in LOG_LEVELS:
        raise InvalidArgument(f"unable to parse logging level: {log_level}")
    default_runtime = _str_or(pick("default-runtime"), defaults.default_runtime, "default-runtime")
    if default_runtime not in runtimes:
        raise InvalidArgument(f"default runtime {default_runtime} does not exist")
    hosts = _strs_or(pick("hosts"), defaults.hosts, "hosts")
    for host in hosts:
        parse_host(host)

    return DaemonConfig(
        hosts=hosts,
        data_root=_abs(_str_or(pick("data-root"), str(defaults.data_root), "data-root")),
        exec_root=_abs(_str_or(pick("exec-root"), str(defaults.exec_root), "exec-root")),
        pidfile=_abs(_str_or(pick("pidfile"), str(defaults.pidfile), "pidfile")),
        config_file=config_file,
        debug=_bool_or(pick("debug"), defaults.debug, "debug"),
        log_level=log_level,
        group=pick("group") or None,
        default_runtime=default_runtime,
        runtimes=runtimes,
        insecure_registries=_strs_or(pick("insecure-registries"), defaults.insecure_registries,
                                     "insecure-registries"),
        registry_mirrors=_strs_or(pick("registry-mirrors"), defaults.registry_mirrors,
                                  "registry-mirrors"),
        labels=_strs_or(pick("labels"), defaults.labels, "labels"),
        experimental=_bool_or(pick("experimental"), defaults.experimental, "experimental"),
        tls=TLSSettings(
            enabled=_bool_or(pick("tls"), False, "tls"),
            verify=_bool_or(pick("tlsverify"), False, "tlsverify"),
            cacert=_opt_path(pick("tlscacert"), "tlscacert"),
            cert=_opt_path(pick("tlscert"), "tlscert"),
            key=_opt_path(pick("tlskey"), "tlskey")),
        userns_remap=_str_or(pick("userns-remap"), "", "userns-remap"),
    )


def load_config_file(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; unknown keys are an error, as in dockerd."""
    text = path.read_text()
    if not text.strip():
        return {}
    try:
        values = json.loads(text)
    except json.JSONDecodeError as err:
        raise InvalidArgument(f"invalid character in JSON: {err.msg} (line {err.lineno})") from err
    if not isinstance(values, dict):
        raise InvalidArgument("the configuration file must contain a JSON object")
    unknown = sorted(k for k in values if k not in _FILE_KEYS)
    if unknown:
        raise InvalidArgument("the following directives don't match any configuration option: "
                              + ", ".join(unknown))
    return values


def parse_host(host: str) -> tuple[str, str]:
    """``unix:///path`` → ("unix", "/path"); ``tcp://h:p`` → ("tcp", "h:p")."""
    scheme, sep, rest = host.partition("://")
    if not sep:
        raise InvalidArgument(f"Invalid bind address format: {host}")
    if scheme == "unix" and rest.startswith("/"):
        return scheme, rest
    if scheme == "tcp" and rest.rpartition(":")[2].isdigit():
        return scheme, rest
    raise InvalidArgument(f"Invalid bind address format: {host}")


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + " ".join(str(v) for v in value) + "]"
    return str(value)


def _abs(text: str) -> Path:
    return Path(text).absolute()


def _str_or(value: Any, default: str, key: str) -> str:
    if value is None:
        return default
    if not isinstance(value, str):
        raise InvalidArgument(f"invalid value for {key}: {value!r}")
    return value


def _opt_path(value: Any, key: str) -> Path | None:
    return None if value is None else _abs(_str_or(value, "", key))


def _bool_or(value: Any, default: bool, key: str) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InvalidArgument(f"invalid value for {key}: {value!r}")
    return value


def _strs_or(value: Any, default: tuple[str, ...], key: str) -> tuple[str, ...]:
    if value is None:
        return default
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"invalid value for {key}: {value!r}")
    return tuple(value)


def _parse_runtime_flags(values: list[str]) -> dict[str, RuntimeEntry]:
    out: dict[str, RuntimeEntry] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise InvalidArgument(f"invalid runtime argument: {value}")
        out[name] = RuntimeEntry(path)
    return out


def _parse_runtime_file(value: Any) -> dict[str, RuntimeEntry]:
    if not isinstance(value, dict):
        raise InvalidArgument("runtimes must be a JSON object")
    out: dict[str, RuntimeEntry] = {}
    for name, spec in value.items():
        if not isinstance(spec, dict) or not isinstance(spec.get("path"), str):
            raise InvalidArgument(f"runtime {name}: a \"path\" is required")
        args = spec.get("runtimeArgs") or []
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise InvalidArgument(f"runtime {name}: runtimeArgs must be a list of strings")
        out[name] = RuntimeEntry(spec["path"], tuple(args))
    return out
