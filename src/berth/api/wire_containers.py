"""Docker's JSON shapes for containers ↔ the engine's typed records.

Parsing happens here, at the edge: a create body becomes ``ContainerConfig`` + ``HostConfig``
and never travels further as a dict. Rendering builds ``/containers/json`` and
``/containers/{id}/json`` exactly as Docker 20.10 spells them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from berth.api.wire_volumes import parse_mounts, render_mount_requests
from berth.engine import resource_checks
from berth.engine.container_update import ResourceUpdate
from berth.engine.log_config import reads_logs
from berth.engine.logs import parse_timestamp
from berth.engine.model import (
    ContainerConfig,
    ContainerRecord,
    ContainerState,
    HealthConfig,
    HostConfig,
    RestartPolicy,
    Ulimit,
)
from berth.errors import InvalidArgument
from berth.humanize import human_duration

_ZERO_TIME = "0001-01-01T00:00:00Z"


def _strs(value: Any, field: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"json: cannot unmarshal {type(value).__name__} into Go struct "
                              f"field {field} of type []string")
    return tuple(value)


def _opt_strs(value: Any, field: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    return _strs(value, field)


def _int(value: Any, field: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgument(f"json: cannot unmarshal {type(value).__name__} into Go struct "
                              f"field {field} of type int64")
    return int(value)


def _bool(value: Any, field: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidArgument(f"json: cannot unmarshal {type(value).__name__} into Go struct "
                              f"field {field} of type bool")
    return value


def _working_dir(path: str) -> str:
    if path and not path.startswith("/"):  # docker checks at create, before the runtime does
        raise InvalidArgument(f"the working directory '{path}' is invalid, it needs to be an "
                              "absolute path")
    return path


def _str(value: Any, field: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidArgument(f"json: cannot unmarshal {type(value).__name__} into Go struct "
                              f"field {field} of type string")
    return value


def _map(value: Any, field: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidArgument(f"json: cannot unmarshal {type(value).__name__} into Go struct "
                              f"field {field} of type map[string]string")
    return {str(k): str(v) for k, v in value.items()}


def _keys(value: Any) -> tuple[str, ...]:
    if not value:
        return ()
    if not isinstance(value, dict):
        raise InvalidArgument("expected an object of keys")
    return tuple(value.keys())


def parse_create_body(body: Any) -> tuple[ContainerConfig, HostConfig]:
    """The body of ``POST /containers/create``; any shape it does not expect is a 400."""
    try:
        return _parse_create_body(body)
    except InvalidArgument:
        raise
    except (TypeError, AttributeError, ValueError, KeyError, IndexError, OverflowError) as err:
        # A field of the wrong JSON type deep inside (found by tests/hostile fuzzing).
        raise InvalidArgument(f"invalid container config: {type(err).__name__}: {err}") from err


def _parse_create_body(body: Any) -> tuple[ContainerConfig, HostConfig]:
    if not isinstance(body, dict):
        raise InvalidArgument("config cannot be empty in order to create a container")
    image = _str(body.get("Image"), "Config.Image")
    if not image:
        raise InvalidArgument("Config cannot be empty in order to create a container")
    health = body.get("Healthcheck")
    healthcheck = None
    if isinstance(health, dict):
        healthcheck = HealthConfig(
            test=_strs(health.get("Test"), "Healthcheck.Test"),
            interval_ns=_int(health.get("Interval"), "Healthcheck.Interval"),
            timeout_ns=_int(health.get("Timeout"), "Healthcheck.Timeout"),
            start_period_ns=_int(health.get("StartPeriod"), "Healthcheck.StartPeriod"),
            retries=_int(health.get("Retries"), "Healthcheck.Retries"))
    stop_timeout = body.get("StopTimeout")
    config = ContainerConfig(
        image=image,
        cmd=_opt_strs(body.get("Cmd"), "Config.Cmd") or None,
        entrypoint=_opt_strs(body.get("Entrypoint"), "Config.Entrypoint"),
        env=_strs(body.get("Env"), "Config.Env"),
        working_dir=_working_dir(_str(body.get("WorkingDir"), "Config.WorkingDir")),
        user=_str(body.get("User"), "Config.User"),
        hostname=_str(body.get("Hostname"), "Config.Hostname"),
        domainname=_str(body.get("Domainname"), "Config.Domainname"),
        tty=_bool(body.get("Tty"), "Config.Tty"),
        open_stdin=_bool(body.get("OpenStdin"), "Config.OpenStdin"),
        stdin_once=_bool(body.get("StdinOnce"), "Config.StdinOnce"),
        attach_stdin=_bool(body.get("AttachStdin"), "Config.AttachStdin"),
        attach_stdout=_bool(body.get("AttachStdout"), "Config.AttachStdout"),
        attach_stderr=_bool(body.get("AttachStderr"), "Config.AttachStderr"),
        labels=_map(body.get("Labels"), "Config.Labels"),
        stop_signal=_str(body.get("StopSignal"), "Config.StopSignal") or None,
        stop_timeout=None if stop_timeout is None else _int(stop_timeout, "Config.StopTimeout"),
        exposed_ports=_keys(body.get("ExposedPorts")),
        volumes=_keys(body.get("Volumes")),
        healthcheck=healthcheck,
        network_disabled=_bool(body.get("NetworkDisabled"), "Config.NetworkDisabled"),
        mac_address=_str(body.get("MacAddress"), "Config.MacAddress"),
    )
    hc = body.get("HostConfig")
    return config, parse_host_config({} if hc is None else hc)


def parse_host_config(hc: Any) -> HostConfig:
    if not isinstance(hc, dict):
        raise InvalidArgument("HostConfig must be an object")
    policy = _restart_policy(hc.get("RestartPolicy")) or RestartPolicy()
    ports: dict[str, tuple[tuple[str, str], ...]] = {}
    for port, bindings in (hc.get("PortBindings") or {}).items():
        ports[port] = tuple((_str(b.get("HostIp"), "HostIp"), _str(b.get("HostPort"), "HostPort"))
                            for b in (bindings or []))
    ulimits = tuple(Ulimit(name=_str(u.get("Name"), "Ulimit.Name"),
                           soft=_int(u.get("Soft"), "Ulimit.Soft"),
                           hard=_int(u.get("Hard"), "Ulimit.Hard"))
                    for u in (hc.get("Ulimits") or []))
    pids_limit = hc.get("PidsLimit")
    memory = _int(hc.get("Memory"), "HostConfig.Memory")
    memory_swap = _int(hc.get("MemorySwap"), "HostConfig.MemorySwap")
    resource_checks.check_memory(memory, memory_swap)
    nano_cpus = _int(hc.get("NanoCpus"), "HostConfig.NanoCpus")
    resource_checks.check_nano_cpus(nano_cpus)
    if nano_cpus and (hc.get("CpuQuota") or hc.get("CpuPeriod")):
        raise InvalidArgument("Conflicting options: Nano CPUs and CPU Period cannot both be set")
    init = hc.get("Init")
    console = hc.get("ConsoleSize") or [0, 0]
    devices = tuple(f"{d.get('PathOnHost', '')}:{d.get('PathInContainer', '')}:"
                    f"{d.get('CgroupPermissions', 'rwm')}" for d in (hc.get("Devices") or []))
    return HostConfig(
        auto_remove=_bool(hc.get("AutoRemove"), "HostConfig.AutoRemove"),
        memory=memory,
        memory_swap=memory_swap,
        memory_reservation=_int(hc.get("MemoryReservation"), "HostConfig.MemoryReservation"),
        nano_cpus=nano_cpus,
        cpu_shares=_int(hc.get("CpuShares"), "HostConfig.CpuShares"),
        cpu_period=_int(hc.get("CpuPeriod"), "HostConfig.CpuPeriod"),
        cpu_quota=_int(hc.get("CpuQuota"), "HostConfig.CpuQuota"),
        cpuset_cpus=_str(hc.get("CpusetCpus"), "HostConfig.CpusetCpus"),
        cpuset_mems=_str(hc.get("CpusetMems"), "HostConfig.CpusetMems"),
        pids_limit=None if pids_limit in (None, 0) else _int(pids_limit, "HostConfig.PidsLimit"),
        blkio_weight=_int(hc.get("BlkioWeight"), "HostConfig.BlkioWeight"),
        oom_kill_disable=_bool(hc.get("OomKillDisable"), "HostConfig.OomKillDisable"),
        oom_score_adj=_int(hc.get("OomScoreAdj"), "HostConfig.OomScoreAdj"),
        runtime=_str(hc.get("Runtime"), "HostConfig.Runtime"),
        network_mode=_str(hc.get("NetworkMode"), "HostConfig.NetworkMode") or "default",
        privileged=_bool(hc.get("Privileged"), "HostConfig.Privileged"),
        cap_add=_strs(hc.get("CapAdd"), "HostConfig.CapAdd"),
        cap_drop=_strs(hc.get("CapDrop"), "HostConfig.CapDrop"),
        readonly_rootfs=_bool(hc.get("ReadonlyRootfs"), "HostConfig.ReadonlyRootfs"),
        security_opt=_strs(hc.get("SecurityOpt"), "HostConfig.SecurityOpt"),
        restart_policy=policy,
        binds=_strs(hc.get("Binds"), "HostConfig.Binds"),
        port_bindings=ports,
        publish_all_ports=_bool(hc.get("PublishAllPorts"), "HostConfig.PublishAllPorts"),
        extra_hosts=_strs(hc.get("ExtraHosts"), "HostConfig.ExtraHosts"),
        dns=_strs(hc.get("Dns"), "HostConfig.Dns"),
        dns_options=_strs(hc.get("DnsOptions"), "HostConfig.DnsOptions"),
        dns_search=_strs(hc.get("DnsSearch"), "HostConfig.DnsSearch"),
        init=None if init is None else _bool(init, "HostConfig.Init"),
        ipc_mode=_str(hc.get("IpcMode"), "HostConfig.IpcMode") or "private",
        pid_mode=_str(hc.get("PidMode"), "HostConfig.PidMode"),
        uts_mode=_str(hc.get("UTSMode"), "HostConfig.UTSMode"),
        userns_mode=_str(hc.get("UsernsMode"), "HostConfig.UsernsMode"),
        shm_size=_int(hc.get("ShmSize"), "HostConfig.ShmSize") or 64 * 1024 * 1024,
        sysctls=_map(hc.get("Sysctls"), "HostConfig.Sysctls"),
        ulimits=ulimits,
        tmpfs=_map(hc.get("Tmpfs"), "HostConfig.Tmpfs"),
        group_add=_strs(hc.get("GroupAdd"), "HostConfig.GroupAdd"),
        devices=devices,
        log_type=_str((hc.get("LogConfig") or {}).get("Type"), "LogConfig.Type") or "json-file",
        log_config=_map((hc.get("LogConfig") or {}).get("Config"), "LogConfig.Config"),
        console_size=(int(console[0] or 0), int(console[1] or 0)),
        volumes_from=_strs(hc.get("VolumesFrom"), "HostConfig.VolumesFrom"),
        mounts=parse_mounts(hc.get("Mounts")),
    )


def _restart_policy(value: Any, where: str = "RestartPolicy") -> RestartPolicy | None:
    """A RestartPolicy object; None when absent or its Name is empty."""
    if not value:
        return None
    if not isinstance(value, dict):
        raise InvalidArgument(f"json: cannot unmarshal {type(value).__name__} into Go struct "
                              f"field {where} of type container.RestartPolicy")
    name = _str(value.get("Name"), f"{where}.Name")
    retries = _int(value.get("MaximumRetryCount"), f"{where}.MaximumRetryCount")
    if not name:
        return None
    resource_checks.check_restart_policy(name, retries)
    return RestartPolicy(name=name, maximum_retry_count=retries)


def parse_update_body(body: Any) -> ResourceUpdate:
    """``POST /containers/{id}/update``: Docker's Resources and RestartPolicy; zero values
    (and an absent ``PidsLimit``) leave a setting as it is."""
    if not isinstance(body, dict):
        raise InvalidArgument("json: cannot unmarshal into Go value of type "
                              "container.UpdateConfig")

    def num(key: str) -> int:
        return _int(body.get(key), f"UpdateConfig.{key}")

    pids = body.get("PidsLimit")
    return ResourceUpdate(
        blkio_weight=num("BlkioWeight"), cpu_shares=num("CpuShares"), memory=num("Memory"),
        memory_swap=num("MemorySwap"), memory_reservation=num("MemoryReservation"),
        nano_cpus=num("NanoCpus"), cpu_period=num("CpuPeriod"), cpu_quota=num("CpuQuota"),
        cpuset_cpus=_str(body.get("CpusetCpus"), "UpdateConfig.CpusetCpus"),
        cpuset_mems=_str(body.get("CpusetMems"), "UpdateConfig.CpusetMems"),
        kernel_memory=num("KernelMemory"),
        pids_limit=None if pids is None else _int(pids, "UpdateConfig.PidsLimit"),
        restart_policy=_restart_policy(body.get("RestartPolicy"), "UpdateConfig.RestartPolicy"))


# -- rendering --------------------------------------------------------------------------------

def _none_if_empty(values: tuple[str, ...] | None) -> list[str] | None:
    return list(values) if values else None


def render_config(c: ContainerConfig) -> dict[str, Any]:
    out: dict[str, Any] = {
        "Hostname": c.hostname, "Domainname": c.domainname, "User": c.user,
        "AttachStdin": c.attach_stdin, "AttachStdout": c.attach_stdout,
        "AttachStderr": c.attach_stderr,
        "Tty": c.tty, "OpenStdin": c.open_stdin, "StdinOnce": c.stdin_once,
        "Env": _none_if_empty(c.env), "Cmd": _none_if_empty(c.cmd), "Image": c.image,
        "Volumes": {v: {} for v in c.volumes} or None, "WorkingDir": c.working_dir,
        "Entrypoint": _none_if_empty(c.entrypoint), "OnBuild": _none_if_empty(c.on_build),
        "Labels": dict(c.labels),
    }
    if c.exposed_ports:
        out["ExposedPorts"] = {p: {} for p in c.exposed_ports}
    if c.stop_signal:
        out["StopSignal"] = c.stop_signal
    if c.stop_timeout is not None:
        out["StopTimeout"] = c.stop_timeout
    if c.healthcheck:
        out["Healthcheck"] = {"Test": list(c.healthcheck.test),
                              "Interval": c.healthcheck.interval_ns,
                              "Timeout": c.healthcheck.timeout_ns,
                              "StartPeriod": c.healthcheck.start_period_ns,
                              "Retries": c.healthcheck.retries}
    return out


def render_host_config(h: HostConfig, masked: list[str], readonly: list[str]) -> dict[str, Any]:
    return {
        "Binds": _none_if_empty(h.binds), "ContainerIDFile": "",
        "LogConfig": {"Type": h.log_type, "Config": dict(h.log_config)},
        "NetworkMode": h.network_mode,
        "PortBindings": {p: [{"HostIp": ip, "HostPort": port} for ip, port in b]
                         for p, b in h.port_bindings.items()},
        "RestartPolicy": {"Name": h.restart_policy.name,
                          "MaximumRetryCount": h.restart_policy.maximum_retry_count},
        "AutoRemove": h.auto_remove, "VolumeDriver": "",
        "VolumesFrom": _none_if_empty(h.volumes_from),
        "CapAdd": _none_if_empty(h.cap_add), "CapDrop": _none_if_empty(h.cap_drop),
        "CgroupnsMode": "host", "Dns": list(h.dns), "DnsOptions": list(h.dns_options),
        "DnsSearch": list(h.dns_search), "ExtraHosts": _none_if_empty(h.extra_hosts),
        "GroupAdd": _none_if_empty(h.group_add), "IpcMode": h.ipc_mode, "Cgroup": "",
        "Links": None, "OomScoreAdj": h.oom_score_adj, "PidMode": h.pid_mode,
        "Privileged": h.privileged, "PublishAllPorts": h.publish_all_ports,
        "ReadonlyRootfs": h.readonly_rootfs, "SecurityOpt": _none_if_empty(h.security_opt),
        "UTSMode": h.uts_mode, "UsernsMode": h.userns_mode, "ShmSize": h.shm_size,
        "Runtime": h.runtime,
        "ConsoleSize": list(h.console_size), "Isolation": "", "CpuShares": h.cpu_shares,
        "Memory": h.memory, "NanoCpus": h.nano_cpus, "CgroupParent": "",
        "BlkioWeight": h.blkio_weight,
        "BlkioWeightDevice": [], "BlkioDeviceReadBps": [], "BlkioDeviceWriteBps": [],
        "BlkioDeviceReadIOps": [], "BlkioDeviceWriteIOps": [], "CpuPeriod": h.cpu_period,
        "CpuQuota": h.cpu_quota, "CpuRealtimePeriod": 0, "CpuRealtimeRuntime": 0,
        "CpusetCpus": h.cpuset_cpus, "CpusetMems": h.cpuset_mems, "Devices": [
            dict(zip(("PathOnHost", "PathInContainer", "CgroupPermissions"),
                     d.split(":"), strict=False)) for d in h.devices],
        "DeviceCgroupRules": None, "DeviceRequests": None, "KernelMemory": 0,
        "KernelMemoryTCP": 0, "MemoryReservation": h.memory_reservation,
        "MemorySwap": h.memory_swap, "MemorySwappiness": None,
        "OomKillDisable": h.oom_kill_disable, "PidsLimit": h.pids_limit,
        "Ulimits": [{"Name": u.name, "Soft": u.soft, "Hard": u.hard} for u in h.ulimits],
        "CpuCount": 0, "CpuPercent": 0, "IOMaximumIOps": 0, "IOMaximumBandwidth": 0,
        "MaskedPaths": masked, "ReadonlyPaths": readonly,
        **({"Init": h.init} if h.init is not None else {}),
        **({"Tmpfs": dict(h.tmpfs)} if h.tmpfs else {}),
        **({"Mounts": render_mount_requests(h.mounts)} if h.mounts else {}),
        **({"Sysctls": dict(h.sysctls)} if h.sysctls else {}),
    }


def render_state(r: ContainerRecord) -> dict[str, Any]:
    s = r.status
    return {
        "Status": s.state.value,
        "Running": s.state in (ContainerState.RUNNING, ContainerState.PAUSED),
        "Paused": s.state == ContainerState.PAUSED,
        "Restarting": s.state == ContainerState.RESTARTING,
        "OOMKilled": s.oom_killed, "Dead": s.state == ContainerState.DEAD, "Pid": s.pid,
        "ExitCode": s.exit_code, "Error": s.error, "StartedAt": s.started_at,
        "FinishedAt": s.finished_at,
    }


def render_inspect(r: ContainerRecord, cdir: Path, extras: dict[str, Any]) -> dict[str, Any]:
    """``GET /containers/{id}/json``; ``extras`` carries GraphDriver, Mounts, NetworkSettings,
    MaskedPaths and ReadonlyPaths computed by the engine."""
    return {
        "Id": r.id, "Created": r.created, "Path": r.path, "Args": r.args,
        "State": render_state(r), "Image": r.image_id,
        "ResolvConfPath": str(cdir / "resolv.conf"), "HostnamePath": str(cdir / "hostname"),
        "HostsPath": str(cdir / "hosts"),
        "LogPath": str(cdir / f"{r.id}-json.log") if reads_logs(r.host_config.log_type) else "",
        "Name": "/" + r.name, "RestartCount": r.restart_count, "Driver": "overlay2",
        "Platform": "linux", "MountLabel": "", "ProcessLabel": "", "AppArmorProfile": "",
        "ExecIDs": extras.get("ExecIDs"),
        "HostConfig": render_host_config(r.host_config, extras.get("MaskedPaths", []),
                                          extras.get("ReadonlyPaths", [])),
        "GraphDriver": extras.get("GraphDriver", {"Data": None, "Name": "overlay2"}),
        "Mounts": extras.get("Mounts", []),
        "Config": render_config(r.config),
        "NetworkSettings": extras.get("NetworkSettings", {}),
    }


def command_string(r: ContainerRecord) -> str:
    return " ".join(r.config.argv)


def _ago(rfc3339: str, now: float) -> str:
    return human_duration(now - parse_timestamp(rfc3339))


def status_text(r: ContainerRecord, now: float | None = None) -> str:
    """Docker's STATUS column: ``Up 3 seconds``, ``Exited (0) 2 minutes ago``, ``Created``."""
    now = time.time() if now is None else now
    s = r.status
    if s.state == ContainerState.RUNNING:
        return "Up " + _ago(s.started_at, now)
    if s.state == ContainerState.PAUSED:
        return "Up " + _ago(s.started_at, now) + " (Paused)"
    if s.state == ContainerState.EXITED:
        return f"Exited ({s.exit_code}) {_ago(s.finished_at, now)} ago"
    if s.state == ContainerState.CREATED:
        return "Created"
    if s.state == ContainerState.REMOVING:
        return "Removal In Progress"
    if s.state == ContainerState.DEAD:
        return "Dead"
    return str(s.state.value)


def render_list_entry(r: ContainerRecord, image_name: str,
                      extras: dict[str, Any]) -> dict[str, Any]:
    return {
        "Id": r.id, "Names": ["/" + r.name], "Image": image_name, "ImageID": r.image_id,
        "Command": command_string(r),
        "Created": int(parse_timestamp(r.created)),
        "Ports": extras.get("Ports", []), "Labels": dict(r.config.labels),
        "State": r.status.state.value, "Status": status_text(r),
        "HostConfig": {"NetworkMode": r.host_config.network_mode},
        "NetworkSettings": {"Networks": extras.get("Networks", {})},
        "Mounts": extras.get("Mounts", []),
        **({"SizeRw": extras["SizeRw"], "SizeRootFs": extras["SizeRootFs"]}
           if "SizeRw" in extras else {}),
    }
