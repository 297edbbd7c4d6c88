"""The small per-container files and config merges Docker makes at create time (pure or tiny I/O).

``merge_image_config`` applies Docker's rules for combining the image's config with the user's;
``hosts_file``/``resolv_conf`` build ``/etc/hosts`` and ``/etc/resolv.conf`` as Docker writes them.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from berth.engine.model import ContainerConfig, ContainerRecord

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_HOSTS_HEAD = (
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "ff00::0\tip6-mcastprefix\n"
    "ff02::1\tip6-allnodes\n"
    "ff02::2\tip6-allrouters\n"
)


def _env_key(entry: str) -> str:
    return entry.split("=", 1)[0]


def merge_env(base: list[str] | tuple[str, ...],
              override: list[str] | tuple[str, ...]) -> list[str]:
    """Image env first, the user's entries replacing same-named ones in place (Docker's order)."""
    merged = list(base)
    index = {_env_key(e): i for i, e in enumerate(merged)}
    for entry in override:
        key = _env_key(entry)
        if "=" not in entry:  # docker: a bare NAME (unset on the client) unsets it
            if key in index:
                merged[index.pop(key)] = ""
            continue
        if key in index:
            merged[index[key]] = entry
        else:
            index[key] = len(merged)
            merged.append(entry)
    return [e for e in merged if e]


def merge_image_config(user: ContainerConfig, image: Any) -> ContainerConfig:
    """Docker's ``merge(userConf, imageConf)``: the image fills what the user left empty.

    ``image`` is the image's ImageConfig (attributes env, cmd, entrypoint, working_dir, user,
    labels, exposed_ports, volumes, stop_signal, healthcheck, on_build, shell).
    """
    image_env = list(getattr(image, "env", None) or [])
    env = merge_env(image_env, user.env)
    cmd = user.cmd
    entrypoint = user.entrypoint
    if entrypoint is None:
        entrypoint = _tuple(getattr(image, "entrypoint", None))
        if not cmd:
            cmd = _tuple(getattr(image, "cmd", None))
    # an entrypoint given at create resets the image's cmd (the user's cmd still applies)
    if entrypoint is not None and list(entrypoint) == [""]:  # docker: --entrypoint '' clears it
        entrypoint = None
    labels = dict(getattr(image, "labels", None) or {})
    labels.update(user.labels)
    exposed = list(user.exposed_ports)
    for port in getattr(image, "exposed_ports", None) or ():
        if port not in exposed:
            exposed.append(port)
    volumes = list(user.volumes)
    for vol in getattr(image, "volumes", None) or ():
        if vol not in volumes:
            volumes.append(vol)
    return replace(
        user,
        env=tuple(env),
        cmd=cmd or None,
        entrypoint=entrypoint or None,
        working_dir=user.working_dir or (getattr(image, "working_dir", None) or ""),
        user=user.user or (getattr(image, "user", None) or ""),
        labels=labels,
        exposed_ports=tuple(exposed),
        volumes=tuple(volumes),
        stop_signal=user.stop_signal or getattr(image, "stop_signal", None) or None,
        on_build=tuple(getattr(image, "on_build", None) or ()),
    )


def _tuple(value: Any) -> tuple[str, ...] | None:
    return tuple(value) if value else None


def process_env(record: ContainerRecord) -> list[str]:
    """The environment the process gets: PATH default, HOSTNAME, TERM for a tty, then Config.Env."""
    env = list(record.config.env)
    base = [DEFAULT_PATH, f"HOSTNAME={record.config.hostname}"]
    if record.config.tty:
        base.append("TERM=xterm")
    return merge_env(base, env)


def hosts_file(record: ContainerRecord, address: str | None = None) -> str:
    lines = [_HOSTS_HEAD]
    for entry in record.host_config.extra_hosts:
        host, _, ip = entry.partition(":")
        lines.append(f"{ip}\t{host}\n")
    if address:
        name = record.config.hostname
        if record.config.domainname:
            name = f"{name}.{record.config.domainname}"
        short = name.split(".", 1)[0]
        lines.append(f"{address}\t{name}" + (f" {short}" if short != name else "") + "\n")
    return "".join(lines)


def resolv_conf(host_text: str, record: ContainerRecord) -> str:
    """The host's resolv.conf without loopback resolvers, or the ``--dns*`` settings."""
    host = record.host_config
    search: list[str] = []
    options: list[str] = []
    servers: list[str] = []
    for raw in host_text.splitlines():
        parts = raw.split()
        if not parts or parts[0].startswith(("#", ";")):
            continue
        if parts[0] == "nameserver" and len(parts) > 1:
            if not (parts[1].startswith("127.") or parts[1] == "::1"):
                servers.append(parts[1])
        elif parts[0] in ("search", "domain"):
            search = parts[1:]
        elif parts[0] == "options":
            options.extend(parts[1:])
    if host.dns:
        servers = list(host.dns)
    if host.dns_search:
        search = list(host.dns_search)
    if host.dns_options:
        options = list(host.dns_options)
    if not servers:
        servers = ["8.8.8.8", "8.8.4.4"]
    out = []
    if search:
        out.append("search " + " ".join(search))
    out.extend(f"nameserver {s}" for s in servers)
    if options:
        out.append("options " + " ".join(options))
    return "\n".join(out) + "\n"


def write_network_files(cdir: Path, record: ContainerRecord, address: str | None = None) -> None:
    """hostname, hosts and resolv.conf beside the container, bind-mounted into it at start."""
    try:
        host_resolv = Path("/etc/resolv.conf").read_text()
    except OSError:
        host_resolv = ""
    files = {
        "hostname": record.config.hostname + "\n",
        "hosts": hosts_file(record, address),
        "resolv.conf": resolv_conf(host_resolv, record),
    }
    for name, text in files.items():
        tmp = cdir / f".{name}.tmp"
        tmp.write_text(text)
        os.chmod(tmp, 0o644)
        tmp.replace(cdir / name)
