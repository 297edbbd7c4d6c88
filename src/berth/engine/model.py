"""What the engine knows about a container: its configuration, its state, and the legal moves.

The configuration is split as Docker splits it: ``ContainerConfig`` is what travels with the
image (command, env, user...), ``HostConfig`` is how this host runs it (limits, runtime, removal).
Both are fixed at create time, except the limits and restart policy ``update`` changes.
``ContainerRecord`` adds the mutable lifecycle facts; it is frozen too, and a change is a new
record written to the database in one transaction.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

from berth.errors import Conflict, InvalidArgument

ContainerID = str

# Docker's rule for names: a first alphanumeric character, then at least one more of these.
_NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")


class ContainerState(enum.Enum):
    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    RESTARTING = "restarting"
    REMOVING = "removing"
    EXITED = "exited"
    DEAD = "dead"


# The lifecycle as one table: state -> states it may move to.
TRANSITIONS: dict[ContainerState, frozenset[ContainerState]] = {
    ContainerState.CREATED: frozenset({ContainerState.RUNNING, ContainerState.REMOVING,
                                       ContainerState.EXITED}),
    ContainerState.RUNNING: frozenset({ContainerState.PAUSED, ContainerState.EXITED,
                                       ContainerState.RESTARTING}),
    ContainerState.PAUSED: frozenset({ContainerState.RUNNING, ContainerState.EXITED}),
    ContainerState.RESTARTING: frozenset({ContainerState.RUNNING, ContainerState.EXITED}),
    ContainerState.EXITED: frozenset({ContainerState.RUNNING, ContainerState.REMOVING}),
    ContainerState.REMOVING: frozenset({ContainerState.DEAD}),
    ContainerState.DEAD: frozenset({ContainerState.REMOVING}),
}


def check_transition(current: ContainerState, target: ContainerState) -> None:
    if target not in TRANSITIONS[current]:
        raise Conflict(f"cannot move container from {current.value} to {target.value}")


def validate_name(name: str) -> str:
    """Return the name without its leading slash, or raise Docker's error."""
    if not _NAME_RE.match(name):
        raise InvalidArgument(
            f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    return name.lstrip("/")


@dataclass(frozen=True)
class HealthConfig:
    test: tuple[str, ...] = ()
    interval_ns: int = 0
    timeout_ns: int = 0
    start_period_ns: int = 0
    retries: int = 0


@dataclass(frozen=True)
class ContainerConfig:
    """Docker's ``Config``: the image's defaults merged with the user's overrides."""

    image: str
    cmd: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    env: tuple[str, ...] = ()
    working_dir: str = ""
    user: str = ""
    hostname: str = ""
    domainname: str = ""
    tty: bool = False
    open_stdin: bool = False
    stdin_once: bool = False
    attach_stdin: bool = False
    attach_stdout: bool = False
    attach_stderr: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    stop_signal: str | None = None
    stop_timeout: int | None = None
    exposed_ports: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    healthcheck: HealthConfig | None = None
    on_build: tuple[str, ...] = ()
    shell: tuple[str, ...] | None = None
    args_escaped: bool = False
    network_disabled: bool = False
    mac_address: str = ""

    @property
    def argv(self) -> list[str]:
        return list(self.entrypoint or ()) + list(self.cmd or ())


@dataclass(frozen=True)
class RestartPolicy:
    name: str = "no"  # no | always | on-failure | unless-stopped
    maximum_retry_count: int = 0


@dataclass(frozen=True)
class Ulimit:
    name: str
    soft: int
    hard: int


@dataclass(frozen=True)
class MountRequest:
    """One entry of Docker's ``HostConfig.Mounts`` as the client gave it (resolved at create
    by ``berth.engine.mounts``)."""

    type: str = "volume"  # volume | bind | tmpfs
    source: str = ""
    target: str = ""
    read_only: bool = False
    no_copy: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    driver: str = ""
    driver_options: dict[str, str] = field(default_factory=dict)
    propagation: str = ""
    tmpfs_size: int = 0
    tmpfs_mode: int = 0


@dataclass(frozen=True)
class HostConfig:
    """Docker's ``HostConfig``: how this host runs the container."""

    auto_remove: bool = False
    memory: int = 0
    memory_swap: int = 0
    memory_reservation: int = 0
    nano_cpus: int = 0
    cpu_shares: int = 0
    cpu_period: int = 0
    cpu_quota: int = 0
    cpuset_cpus: str = ""
    cpuset_mems: str = ""
    pids_limit: int | None = None
    blkio_weight: int = 0
    oom_kill_disable: bool = False
    oom_score_adj: int = 0
    runtime: str = ""
    network_mode: str = "default"
    privileged: bool = False
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    readonly_rootfs: bool = False
    security_opt: tuple[str, ...] = ()
    restart_policy: RestartPolicy = RestartPolicy()
    binds: tuple[str, ...] = ()
    port_bindings: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    publish_all_ports: bool = False
    extra_hosts: tuple[str, ...] = ()
    dns: tuple[str, ...] = ()
    dns_options: tuple[str, ...] = ()
    dns_search: tuple[str, ...] = ()
    init: bool | None = None
    ipc_mode: str = "private"
    pid_mode: str = ""
    uts_mode: str = ""
    userns_mode: str = ""  # "host": no user namespace on a --userns-remap daemon
    shm_size: int = 64 * 1024 * 1024
    sysctls: dict[str, str] = field(default_factory=dict)
    ulimits: tuple[Ulimit, ...] = ()
    tmpfs: dict[str, str] = field(default_factory=dict)
    group_add: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    log_type: str = "json-file"
    log_config: dict[str, str] = field(default_factory=dict)
    console_size: tuple[int, int] = (0, 0)
    volumes_from: tuple[str, ...] = ()
    mounts: tuple[MountRequest, ...] = ()


@dataclass(frozen=True)
class ContainerStatus:
    """Docker's ``State`` minus the derived booleans."""

    state: ContainerState = ContainerState.CREATED
    pid: int = 0
    exit_code: int = 0
    error: str = ""
    oom_killed: bool = False
    started_at: str = "0001-01-01T00:00:00Z"
    finished_at: str = "0001-01-01T00:00:00Z"


@dataclass(frozen=True)
class ContainerRecord:
    id: ContainerID
    name: str
    created: str
    image_id: str
    config: ContainerConfig
    host_config: HostConfig
    status: ContainerStatus = ContainerStatus()
    restart_count: int = 0
    runtime: str = "berth-runtime"
    has_been_started: bool = False

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def path(self) -> str:
        argv = self.config.argv
        return argv[0] if argv else ""

    @property
    def args(self) -> list[str]:
        return self.config.argv[1:]

    @property
    def is_running(self) -> bool:
        return self.status.state in (ContainerState.RUNNING, ContainerState.PAUSED)
