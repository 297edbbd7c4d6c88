"""``run``/``create`` flags → the ``POST /containers/create`` body, exactly as the docker CLI
builds it (key order, nulls and empty values included: the captures are the specification).

Pure apart from reading ``--env-file``/``--label-file`` through the ``read_file`` argument.
"""

from __future__ import annotations

from berth.cli.flags import Command, Flag, UsageError, parse_bytes

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

F = Flag
CREATE_FLAGS = [
    F("add-host", "", "list", help="Add a custom host-to-IP mapping (host:ip)"),
    F("attach", "a", "list", help="Attach to STDIN, STDOUT or STDERR"),
    F("blkio-weight", "", "int", help="Block IO (relative weight), between 10 and 1000, or 0 "
        "to disable (default 0)"),
    F("cap-add", "", "list", help="Add Linux capabilities"),
    F("cap-drop", "", "list", help="Drop Linux capabilities"),
    F("cgroupns", "", "str", help="Cgroup namespace to use (host|private)"),
    F("cidfile", "", "str", help="Write the container ID to the file"),
    F("cpu-shares", "c", "int", help="CPU shares (relative weight)"),
    F("cpus", "", "float", help="Number of CPUs"),
    F("cpuset-cpus", "", "str", help="CPUs in which to allow execution (0-3, 0,1)"),
    F("device", "", "list", help="Add a host device to the container"),
    F("dns", "", "list", help="Set custom DNS servers"),
    F("dns-option", "", "list", help="Set DNS options"),
    F("dns-search", "", "list", help="Set custom DNS search domains"),
    F("domainname", "", "str", help="Container NIS domain name"),
    F("entrypoint", "", "optstr", help="Overwrite the default ENTRYPOINT of the image"),
    F("env", "e", "list", help="Set environment variables"),
    F("env-file", "", "list", help="Read in a file of environment variables"),
    F("expose", "", "list", help="Expose a port or a range of ports"),
    F("group-add", "", "list", help="Add additional groups to join"),
    F("hostname", "h", "str", help="Container host name"),
    F("init", "", "bool", help="Run an init inside the container that forwards signals and "
        "reaps processes"),
    F("interactive", "i", "bool", help="Keep STDIN open even if not attached"),
    F("ipc", "", "str", help="IPC mode to use"),
    F("label", "l", "list", help="Set meta data on a container"),
    F("label-file", "", "list", help="Read in a line delimited file of labels"),
    F("log-driver", "", "str", help="Logging driver for the container"),
    F("log-opt", "", "list", help="Log driver options"),
    F("memory", "m", "bytes", help="Memory limit"),
    F("memory-reservation", "", "bytes", help="Memory soft limit"),
    F("memory-swap", "", "str", help="Swap limit equal to memory plus swap: '-1' to enable "
        "unlimited swap"),
    F("mount", "", "list", help="Attach a filesystem mount to the container"),
    F("name", "", "str", help="Assign a name to the container"),
    F("network", "", "str", default="default", help="Connect a container to a network"),
    F("network-alias", "", "list", help="Add network-scoped alias for the container"),
    F("oom-kill-disable", "", "bool", help="Disable OOM Killer"),
    F("pid", "", "str", help="PID namespace to use"),
    F("pids-limit", "", "int", help="Tune container pids limit (set -1 for unlimited)"),
    F("platform", "", "str", help="Set platform if server is multi-platform capable"),
    F("privileged", "", "bool", help="Give extended privileges to this container"),
    F("publish", "p", "list", help="Publish a container's port(s) to the host"),
    F("publish-all", "P", "bool", help="Publish all exposed ports to random ports"),
    F("pull", "", "str", default="missing",
      help='Pull image before running ("always", "missing", "never")'),
    F("read-only", "", "bool", help="Mount the container's root filesystem as read only"),
    F("restart", "", "str", default="no", help="Restart policy to apply when a container exits"),
    F("rm", "", "bool", help="Automatically remove the container and its associated anonymous "
        "volumes when it exits"),
    F("runtime", "", "str", help="Runtime to use for this container"),
    F("security-opt", "", "list", help="Security Options"),
    F("shm-size", "", "bytes", help="Size of /dev/shm"),
    F("stop-signal", "", "str", help="Signal to stop the container"),
    F("stop-timeout", "", "optint", help="Timeout (in seconds) to stop a container"),
    F("sysctl", "", "list", help="Sysctl options"),
    F("tmpfs", "", "list", help="Mount a tmpfs directory"),
    F("tty", "t", "bool", help="Allocate a pseudo-TTY"),
    F("ulimit", "", "list", help="Ulimit options"),
    F("user", "u", "str", help="Username or UID (format: <name|uid>[:<group|gid>])"),
    F("userns", "", "str", help="User namespace to use"),
    F("uts", "", "str", help="UTS namespace to use"),
    F("volume", "v", "list", help="Bind mount a volume"),
    F("volumes-from", "", "list", help="Mount volumes from the specified container(s)"),
    F("workdir", "w", "str", help="Working directory inside the container"),
]
RUN_FLAGS = CREATE_FLAGS + [
    F("detach", "d", "bool", help="Run container in background and print container ID"),
    F("detach-keys", "", "str", help="Override the key sequence for detaching a container"),
    F("sig-proxy", "", "bool", default=True, help="Proxy received signals to the process"),
]
RUN = Command("run", "run [OPTIONS] IMAGE [COMMAND] [ARG...]",
              "Create and run a new container from an image", RUN_FLAGS,
              interspersed=False, min_args=1, aliases=("container run", "run"))
CREATE = Command("create", "create [OPTIONS] IMAGE [COMMAND] [ARG...]", "Create a new container",
                 CREATE_FLAGS, interspersed=False, min_args=1,
                 aliases=("container create", "create"))

_SIGNAL_CMD = object()


def _kv_lines(text: str, environ: Mapping[str, str], env: bool) -> list[str]:
    out = []
    for raw in text.splitlines():
        line = raw.lstrip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line and env:
            if line in environ:
                out.append(f"{line}={environ[line]}")
            continue
        out.append(line)
    return out


def parse_port_spec(spec: str) -> list[tuple[str, str, str]]:
    """``[ip:][host[-host]:]container[-container][/proto]`` → [(port/proto, host_ip, host_port)]."""
    proto = "tcp"
    if "/" in spec:
        spec, proto = spec.rsplit("/", 1)
        proto = proto.lower()
        if proto not in ("tcp", "udp", "sctp"):
            raise ValueError(f"invalid proto: {proto}")
    ip = ""
    host = ""
    if spec.startswith("["):  # IPv6 literal
        end = spec.index("]")
        ip = spec[1:end]
        spec = spec[end + 2 :]
        host, _, ctr = spec.rpartition(":")
    else:
        parts = spec.split(":")
        if len(parts) == 1:
            ctr = parts[0]
        elif len(parts) == 2:
            host, ctr = parts
        elif len(parts) == 3:
            ip, host, ctr = parts
        else:
            raise ValueError(f"invalid proxy address: {spec}")
    ctr_range = _port_range(ctr, spec)
    if host:
        host_range = _port_range(host, spec)
        if len(host_range) != len(ctr_range) and len(ctr_range) != 1:
            # a host range with one container port is where a free host port is picked
            raise ValueError(f"invalid ranges specified for container and host Ports: {ctr} "
                             f"and {host}")
    else:
        host_range = []
    out = []
    for i, port in enumerate(ctr_range):
        if not host_range:
            hp = ""
        elif len(host_range) == len(ctr_range):
            hp = str(host_range[i])
        else:
            hp = host
        out.append((f"{port}/{proto}", ip, hp))
    return out


def _port_range(text: str, spec: str) -> list[int]:
    lo, _, hi = text.partition("-")
    if not lo.isdigit() or (hi and not hi.isdigit()):
        raise ValueError(f"invalid containerPort: {text}" if text else f"no port specified: {spec}")
    start, end = int(lo), int(hi or lo)
    return list(range(start, end + 1))


def parse_mount(spec: str) -> dict[str, Any]:
    """``--mount type=volume,source=v,target=/data,readonly`` → API ``Mount``."""
    mount: dict[str, Any] = {"Type": "volume"}
    opts: dict[str, Any] = {}
    for field in spec.split(","):
        key, eq, value = field.partition("=")
        key = key.strip().lower()
        if key == "type":
            mount["Type"] = value
        elif key in ("source", "src"):
            mount["Source"] = value
        elif key in ("target", "destination", "dst"):
            mount["Target"] = value
        elif key in ("readonly", "ro"):
            mount["ReadOnly"] = not eq or value.lower() in ("1", "true")
        elif key == "consistency":
            mount["Consistency"] = value
        elif key == "bind-propagation":
            opts.setdefault("BindOptions", {})["Propagation"] = value
        elif key == "volume-nocopy":
            opts.setdefault("VolumeOptions", {})["NoCopy"] = not eq or value == "true"
        elif key == "volume-driver":
            opts.setdefault("VolumeOptions", {}).setdefault("DriverConfig", {})["Name"] = value
        elif key == "volume-opt":
            k, _, v = value.partition("=")
            opts.setdefault("VolumeOptions", {}).setdefault("DriverConfig", {}).setdefault(
                "Options", {})[k] = v
        elif key == "tmpfs-size":
            opts.setdefault("TmpfsOptions", {})["SizeBytes"] = parse_bytes(value)
        elif key == "tmpfs-mode":
            opts.setdefault("TmpfsOptions", {})["Mode"] = int(value, 8)
        else:
            raise ValueError(f"unexpected key '{key}' in '{field}'")
    if "Target" not in mount:
        raise ValueError("target is required")
    mount.update(opts)
    return mount


def _ulimit(spec: str) -> dict[str, Any]:
    name, _, limits = spec.partition("=")
    soft, _, hard = limits.partition(":")
    return {"Name": name, "Hard": int(hard or soft), "Soft": int(soft)}


def _device(spec: str) -> dict[str, str]:
    parts = spec.split(":")
    host = parts[0]
    ctr = parts[1] if len(parts) > 1 and parts[1].startswith("/") else host
    perms = parts[-1] if len(parts) > 1 and not parts[-1].startswith("/") else "rwm"
    return {"PathOnHost": host, "PathInContainer": ctr, "CgroupPermissions": perms}


def _endpoint(aliases: list[str] | None) -> dict[str, Any]:
    return {"IPAMConfig": None, "Links": None, "Aliases": aliases, "MacAddress": "",
            "DriverOpts": None, "GwPriority": 0, "NetworkID": "", "EndpointID": "",
            "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "",
            "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DNSNames": None}


def build_create(opts: Mapping[str, Any], args: list[str], cmd: Command,
                 environ: Mapping[str, str] | None = None,
                 read_file: Callable[[str], str] | None = None,
                 detach: bool = False, console: tuple[int, int] = (0, 0),
                 ) -> tuple[dict[str, Any], dict[str, Any]]:
    """→ (query, body) for ``POST /containers/create``. Raises ``UsageError`` on bad values."""
    environ = environ or {}
    image, command = args[0], args[1:]

    def bad(msg: str) -> UsageError:
        return UsageError(msg, cmd, exit_code=125)

    env: list[str] = []
    for path in opts["env_file"]:
        env += _kv_lines(_read(read_file, path), environ, env=True)
    for item in opts["env"]:
        if "=" in item:
            env.append(item)
        elif item in environ:
            env.append(f"{item}={environ[item]}")
    labels: dict[str, str] = {}
    for path in opts["label_file"]:
        for line in _kv_lines(_read(read_file, path), environ, env=False):
            key, _, value = line.partition("=")
            labels[key] = value
    for item in opts["label"]:
        key, _, value = item.partition("=")
        labels[key] = value

    exposed: dict[str, Any] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for spec in opts["publish"]:
        try:
            entries = parse_port_spec(spec)
        except ValueError as err:  # checked after flag parsing, as docker's CLI does
            from berth.cli.context import StatusError

            raise StatusError(f"berth: {err}\n\nRun 'berth {cmd.name} --help' for more "
                              "information", 125) from None
        for port, ip, host_port in entries:
            exposed[port] = {}
            bindings.setdefault(port, []).append({"HostIp": ip, "HostPort": host_port})
    for spec in opts["expose"]:
        port, _, proto = spec.partition("/")
        for num in _port_range(port, spec):
            exposed[f"{num}/{proto or 'tcp'}"] = {}

    binds: list[str] = []
    volumes: dict[str, Any] = {}
    for spec in dict.fromkeys(opts["volume"]):  # docker collects -v in a set: repeats are one
        if ":" in spec.lstrip("/") and not spec.startswith(":"):
            binds.append(spec)
        else:
            volumes[spec] = {}
    mounts = []
    for spec in opts["mount"]:
        try:
            mounts.append(parse_mount(spec))
        except ValueError as err:
            raise bad(f'invalid argument "{spec}" for "--mount" flag: {err}') from None
    tmpfs = {}
    for spec in opts["tmpfs"]:
        path, _, options = spec.partition(":")
        tmpfs[path] = options

    restart_name, _, retries = opts["restart"].partition(":")
    if restart_name not in ("no", "always", "on-failure", "unless-stopped", ""):
        raise bad(f"invalid restart policy {restart_name}")
    if opts["rm"] and restart_name not in ("no", ""):
        raise bad("Conflicting options: --restart and --rm")
    memory_swap = opts["memory_swap"]
    try:
        swap = parse_bytes(memory_swap) if memory_swap else 0
    except ValueError as err:
        raise bad(f'invalid argument "{memory_swap}" for "--memory-swap" flag: {err}') from None

    attach = [a.lower() for a in opts["attach"]]
    interactive = opts["interactive"]
    tty = opts["tty"]
    if detach:
        attach_in = attach_out = attach_err = False
    elif attach:
        attach_in, attach_out, attach_err = ("stdin" in attach, "stdout" in attach,
                                             "stderr" in attach)
    else:
        attach_in, attach_out, attach_err = interactive, True, True
    if cmd.name == "create" and not attach:
        attach_in, attach_out, attach_err = interactive, True, True

    network = opts["network"] or "default"
    config: dict[str, Any] = {
        "Hostname": opts["hostname"], "Domainname": opts["domainname"], "User": opts["user"],
        "AttachStdin": attach_in, "AttachStdout": attach_out, "AttachStderr": attach_err,
    }
    if exposed:
        config["ExposedPorts"] = exposed
    config.update({
        "Tty": tty, "OpenStdin": interactive, "StdinOnce": interactive and attach_in,
        "Env": env or None, "Cmd": command or None, "Image": image, "Volumes": volumes,
        "WorkingDir": opts["workdir"],
        "Entrypoint": None if opts["entrypoint"] is None else
        ([opts["entrypoint"]] if opts["entrypoint"] == "" else opts["entrypoint"].split()),
        "OnBuild": None, "Labels": labels,
    })
    if opts["stop_signal"]:
        config["StopSignal"] = opts["stop_signal"]
    if opts["stop_timeout"] is not None:
        config["StopTimeout"] = opts["stop_timeout"]

    if opts["log_driver"] == "none" and opts["log_opt"]:
        raise bad("invalid logging opts for driver none")
    log_config: dict[str, Any] = {"Type": opts["log_driver"], "Config": {}}
    for item in opts["log_opt"]:
        key, _, value = item.partition("=")
        log_config["Config"][key] = value
    host: dict[str, Any] = {
        "Binds": binds or None, "ContainerIDFile": opts["cidfile"], "LogConfig": log_config,
        "NetworkMode": network, "PortBindings": bindings,
        "RestartPolicy": {"Name": restart_name or "no",
                          "MaximumRetryCount": int(retries) if retries else 0},
        "AutoRemove": opts["rm"], "VolumeDriver": "",
        "VolumesFrom": opts["volumes_from"] or None, "ConsoleSize": list(console),
        "CapAdd": opts["cap_add"] or None, "CapDrop": opts["cap_drop"] or None,
        "CgroupnsMode": opts["cgroupns"], "Dns": opts["dns"], "DnsOptions": opts["dns_option"],
        "DnsSearch": opts["dns_search"], "ExtraHosts": opts["add_host"] or None,
        "GroupAdd": opts["group_add"] or None, "IpcMode": opts["ipc"], "Cgroup": "",
        "Links": None, "OomScoreAdj": 0, "PidMode": opts["pid"],
        "Privileged": opts["privileged"], "PublishAllPorts": opts["publish_all"],
        "ReadonlyRootfs": opts["read_only"],
        "SecurityOpt": security_opts(opts["security_opt"], read_file, bad) or None,
    }
    if tmpfs:
        host["Tmpfs"] = tmpfs
    host.update({"UTSMode": opts["uts"], "UsernsMode": opts["userns"],
                 "ShmSize": opts["shm_size"]})
    if opts["sysctl"]:
        host["Sysctls"] = dict(s.partition("=")[::2] for s in opts["sysctl"])
    if opts["runtime"]:
        host["Runtime"] = opts["runtime"]
    host.update({
        "Isolation": "", "CpuShares": opts["cpu_shares"], "Memory": opts["memory"],
        "NanoCpus": int(round(opts["cpus"] * 1e9)), "CgroupParent": "",
        "BlkioWeight": opts["blkio_weight"],
        "BlkioWeightDevice": [], "BlkioDeviceReadBps": [], "BlkioDeviceWriteBps": [],
        "BlkioDeviceReadIOps": [], "BlkioDeviceWriteIOps": [], "CpuPeriod": 0, "CpuQuota": 0,
        "CpuRealtimePeriod": 0, "CpuRealtimeRuntime": 0, "CpusetCpus": opts["cpuset_cpus"],
        "CpusetMems": "", "Devices": [_device(d) for d in opts["device"]],
        "DeviceCgroupRules": None, "DeviceRequests": None,
        "MemoryReservation": opts["memory_reservation"], "MemorySwap": swap,
        "MemorySwappiness": -1, "OomKillDisable": opts["oom_kill_disable"],
        "PidsLimit": opts["pids_limit"], "Ulimits": [_ulimit(u) for u in opts["ulimit"]],
        "CpuCount": 0, "CpuPercent": 0, "IOMaximumIOps": 0, "IOMaximumBandwidth": 0,
    })
    if mounts:
        host["Mounts"] = mounts
    host.update({"MaskedPaths": None, "ReadonlyPaths": None})
    if opts["init"]:
        host["Init"] = True
    config["HostConfig"] = host
    endpoints: dict[str, Any] = {}
    if network not in ("none", "host") and not network.startswith("container:"):
        endpoints[network] = _endpoint(opts["network_alias"] or None)
    config["NetworkingConfig"] = {"EndpointsConfig": endpoints}

    query: dict[str, Any] = {}
    if opts["name"]:
        query["name"] = opts["name"]
    if opts["platform"]:
        query["platform"] = opts["platform"]
    return query, config


def _read(read_file: Callable[[str], str] | None, path: str) -> str:
    if read_file is None:
        try:
            with open(path, encoding="utf-8") as fh:
                return fh.read()
        except OSError as err:  # docker: "open PATH: no such file or directory", exit 125
            from berth.cli.context import StatusError

            raise StatusError(f"berth: open {path}: {(err.strerror or str(err)).lower()}\n\n"
                              "Run 'berth run --help' for more information", 125) from None
    return read_file(path)


def security_opts(values: list[str], read_file: Callable[[str], str] | None,
                  bad: Callable[[str], UsageError]) -> list[str]:
    """Docker's CLI sends a seccomp profile's contents, not its path (the daemon may be remote)."""
    out = []
    for opt in values:
        key, sep, value = opt.partition("=")
        if key == "seccomp" and sep and value not in ("unconfined", "builtin"):
            import json

            try:
                text = _read(read_file, value)
            except OSError as err:
                raise bad(f"opening seccomp profile ({value}) failed: open {value}: "
                          f"{(err.strerror or str(err)).lower()}") from None
            try:
                text = json.dumps(json.loads(text), separators=(",", ":"))
            except ValueError as err:
                raise bad(f"compacting json for seccomp profile ({value}) failed: {err}") from None
            opt = f"seccomp={text}"
        out.append(opt)
    return out
