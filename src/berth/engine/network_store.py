"""Network records and their persistence: one JSON document under the data root.

    networks.json = {"networks":    [NetworkRecord...],      every network, the built-ins too
                     "attachments": {container id: {network id: [aliases]}},
                     "sandboxes":   {container id: Sandbox}}  running containers' network state

``attachments`` is what a container is configured to join (create, connect, disconnect);
``sandboxes`` is what exists on the host while it runs (netns, veths, addresses, host ports), so
a restarted berthd can re-adopt or clean it. Writes are atomic (temp file, rename); they are
fsync'd only when asked (``durable``): networks themselves and what a user configured must
survive a crash, while a running container's sandbox and the address pools it draws from are
re-derived at restore, so per-container writes skip the fsync.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from berth.network.ipam import Pool
from berth.network.portmap import PortMapping

DRIVER_BRIDGE = "bridge"
DRIVER_HOST = "host"
DRIVER_NULL = "null"


@dataclass(frozen=True)
class NetworkRecord:
    id: str
    name: str
    driver: str
    created: str
    bridge: str = ""  # the Linux bridge's name (bridge driver only)
    pool: Pool | None = None
    user_subnet: str = ""  # what the user asked for (IPAM.Config as given)
    user_gateway: str = ""
    internal: bool = False
    attachable: bool = False
    default_bridge: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)

    @property
    def builtin(self) -> bool:
        return self.name in ("bridge", "host", "none")

    @property
    def user_defined(self) -> bool:
        return not self.builtin


@dataclass(frozen=True)
class Endpoint:
    network_id: str
    endpoint_id: str
    ifname: str  # inside the container
    host_ifname: str
    address: str
    prefixlen: int
    gateway: str
    mac: str
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class Sandbox:
    container_id: str
    name: str
    netns: str  # the pinned namespace file, "" for host networking
    sandbox_id: str
    endpoints: tuple[Endpoint, ...] = ()
    ports: tuple[PortMapping, ...] = ()
    dns: bool = False  # served by the embedded DNS server
    owns_netns: bool = True  # False when joining another container's namespace
    dns_servers: tuple[str, ...] = ()  # --dns: where the embedded server forwards
    userns: str = ""  # the pinned user namespace owning ``netns`` (a remapped container)


@dataclass
class NetworkState:
    networks: dict[str, NetworkRecord] = field(default_factory=dict)
    attachments: dict[str, dict[str, tuple[str, ...]]] = field(default_factory=dict)
    sandboxes: dict[str, Sandbox] = field(default_factory=dict)


def _network_from(d: dict[str, Any]) -> NetworkRecord:
    pool = d.get("pool")
    rec = NetworkRecord(**{k: v for k, v in d.items() if k != "pool"})
    if pool:
        rec = replace(rec, pool=Pool(pool["subnet"], pool["gateway"],
                                     frozenset(pool.get("allocated", ()))))
    return rec


def _network_to(rec: NetworkRecord) -> dict[str, Any]:
    d = asdict(rec)
    if rec.pool is not None:
        d["pool"] = {"subnet": rec.pool.subnet, "gateway": rec.pool.gateway,
                     "allocated": sorted(rec.pool.allocated)}
    return d


def _sandbox_from(d: dict[str, Any]) -> Sandbox:
    eps = tuple(Endpoint(**{**e, "aliases": tuple(e.get("aliases", ()))})
                for e in d.get("endpoints", ()))
    ports = tuple(PortMapping(**p) for p in d.get("ports", ()))
    rest = {k: v for k, v in d.items() if k not in ("endpoints", "ports", "dns_servers")}
    return Sandbox(**rest, endpoints=eps, ports=ports,
                   dns_servers=tuple(d.get("dns_servers", ())))


class NetworkStore:
    def __init__(self, path: Path) -> None:
        self._path = path

    @property
    def path(self) -> Path:
        return self._path

    def load(self) -> NetworkState:
        try:
            data = json.loads(self._path.read_text())
        except FileNotFoundError:
            return NetworkState()
        state = NetworkState()
        for d in data.get("networks", ()):
            rec = _network_from(d)
            state.networks[rec.id] = rec
        for cid, nets in data.get("attachments", {}).items():
            state.attachments[cid] = {nid: tuple(a) for nid, a in nets.items()}
        for cid, sb in data.get("sandboxes", {}).items():
            state.sandboxes[cid] = _sandbox_from(sb)
        return state

    def save(self, state: NetworkState, durable: bool = True) -> None:
        data = {
            "networks": [_network_to(n) for n in state.networks.values()],
            "attachments": {cid: {nid: list(a) for nid, a in nets.items()}
                            for cid, nets in state.attachments.items()},
            "sandboxes": {cid: asdict(sb) for cid, sb in state.sandboxes.items()},
        }
        tmp = self._path.with_name(f".{self._path.name}.tmp")
        with open(tmp, "w") as f:
            # compact: ``indent`` switches json to its pure-Python encoder
            f.write(json.dumps(data, separators=(",", ":")))
            if durable:
                f.flush()
                os.fsync(f.fileno())
        tmp.replace(self._path)
