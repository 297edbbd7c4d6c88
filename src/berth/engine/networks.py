"""The network service: Docker's networks (``bridge``, ``host``, ``none`` and user-defined
bridges) and each running container's place on them.

A container's network life, driven by ``ContainerService``:
  create   → ``on_create``: the networks it will join (and its aliases) are recorded;
  start    → ``setup``: a network namespace pinned under ``<exec-root>/netns/<id>``, one veth
             per network born inside it (``rtnl``), addresses from IPAM, host ports reserved,
             the packet filter rewritten when the ruleset changed, the embedded DNS listening in
             the namespace (user networks). ``--network none`` under runc/crun pins nothing:
             the runtime makes the namespace and brings lo up itself;
  A container in a user namespace (``--userns-remap``) gets its namespace from
             ``netns.create_userns_netns``: owned by a new user namespace, pinned beside it
             (``<id>.user``), which its runtime joins;
  exit     → ``teardown``: all of it undone; the pin is dropped in the background and the
             kernel removes the veths (a synchronous delete waits 20-30 ms on RCU);
  remove   → ``on_remove``: the recorded attachments forgotten.
berthd may restart while containers run: ``restore`` re-adopts what ``networks.json`` lists.

Each berthd owns one default bridge (``berth0``, or the next free ``berthN`` when another
daemon on this host holds that name) and iptables chains named after it, so several daemons and
a dockerd can share a host without touching each other's rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from berth.engine.container_files import write_network_files
from berth.engine.model import ContainerRecord
from berth.engine.network_store import (
    DRIVER_BRIDGE,
    DRIVER_HOST,
    DRIVER_NULL,
    Endpoint,
    NetworkRecord,
    NetworkState,
    NetworkStore,
    Sandbox,
)
from berth.errors import (
    AlreadyExists,
    Conflict,
    Internal,
    InvalidArgument,
    NotFound,
    RuntimeFailure,
)
from berth.network import ipam, netns, rtnl
from berth.network.dns import DnsServer, host_nameservers
from berth.network.portmap import (
    BridgeRules,
    IptablesTables,
    PortMapping,
    PortReservations,
    build_ruleset,
    ephemeral_range,
    parse_host_port,
    parse_port_key,
)
from berth.oci.idmap import IdentityMapping

log = logging.getLogger(__name__)

_LOCK_DIR = Path("/run/berth-net")
# runtimes that bring lo up in a network namespace they create themselves (berth-runtime does not)
_RUNTIMES_WITH_LOOPBACK = frozenset({"runc", "crun"})


def _now() -> str:
    t = datetime.now(UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond:06d}000Z"


def _links() -> Any:
    # pyroute2 costs ~0.2 s at import: load it when the first link is touched, in berthd only
    from berth.network import bridge, veth

    return bridge, netns, veth


# (action, network id, attributes): Docker's "network" events
NetworkEventSink = Callable[[str, str, dict[str, str]], object]


@dataclass(frozen=True)
class Namespaces:
    """What ``setup`` gives the runtime spec.

    ``network``: "host", "" (the runtime makes one) or the path of the namespace to join.
    ``user``: for a remapped container, the user namespace owning that network namespace:
    its path, "" (none pinned: the runtime makes one) or "host" (it joined a container
    without one, which then shares the host's, as in Docker).
    """

    network: str
    user: str = ""


@dataclass(frozen=True)
class ContainerNetworkView:
    """What inspect and ps show of a container's networking."""

    networks: tuple[tuple[NetworkRecord, Endpoint | None, tuple[str, ...]], ...]
    ports: dict[str, list[tuple[str, int]] | None]  # "80/tcp" → [(host ip, host port)] | None
    sandbox_key: str
    sandbox_id: str
    primary: Endpoint | None
    primary_bridge: str


class NetworkService:
    def __init__(self, data_root: Path, exec_root: Path,
                 on_event: NetworkEventSink | None = None) -> None:
        self._on_event = on_event or (lambda action, net_id, attrs: None)
        self._store = NetworkStore(data_root / "networks.json")
        self._netns_dir = exec_root / "netns"
        self._state = self._store.load()
        _rederive_pools(self._state)
        self._lock = asyncio.Lock()
        self._bridges_up: set[str] = set()  # ensured by this daemon: not re-checked per container
        self._rules_applied: str | None = None  # the ruleset last written: unchanged → no restore
        self._unpinning: dict[str, asyncio.Task[None]] = {}  # netns path → its background unpin
        self._ports = PortReservations()
        self._dns = DnsServer(self._resolve, self._upstreams)
        self._bridge_lock_fd = -1
        self._builtin_networks()
        self._tables = IptablesTables(self._default().bridge.upper())

    # -- built-ins and the default bridge ---------------------------------------------------

    def _builtin_networks(self) -> None:
        have = {n.name for n in self._state.networks.values()}
        for name, driver in (("none", DRIVER_NULL), ("host", DRIVER_HOST)):
            if name not in have:
                rec = NetworkRecord(id=secrets.token_hex(32), name=name, driver=driver,
                                    created=_now())
                self._state.networks[rec.id] = rec
        default = next((n for n in self._state.networks.values() if n.default_bridge), None)
        bridge = self._claim_bridge_name(default.bridge if default else "")
        if default is None:
            default = NetworkRecord(
                id=secrets.token_hex(32), name="bridge", driver=DRIVER_BRIDGE, created=_now(),
                bridge=bridge, default_bridge=True,
                options={"com.docker.network.bridge.default_bridge": "true",
                         "com.docker.network.bridge.enable_icc": "true",
                         "com.docker.network.bridge.enable_ip_masquerade": "true",
                         "com.docker.network.bridge.host_binding_ipv4": "0.0.0.0",
                         "com.docker.network.bridge.name": bridge,
                         "com.docker.network.driver.mtu": "1500"})
        elif default.bridge != bridge:
            opts = dict(default.options)
            opts["com.docker.network.bridge.name"] = bridge
            default = replace(default, bridge=bridge, options=opts)
        self._state.networks[default.id] = default
        self._store.save(self._state)

    def _claim_bridge_name(self, wanted: str) -> str:
        """Hold ``berthN`` for this daemon's lifetime (a flock under /run), so two daemons on one
        host never share a default bridge or iptables chains."""
        _LOCK_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)
        candidates = ([wanted] if wanted else []) + [f"berth{i}" for i in range(64)]
        me = str(self._store.path.parent.resolve()).encode()
        for name in candidates:
            fd = os.open(_LOCK_DIR / f"{name}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            # a daemon that stopped with containers running keeps its bridge (and its chains)
            # across the restart: only its own data root may take that name back
            owner = os.pread(fd, 4096, 0).strip()
            if owner and owner != me and Path("/sys/class/net", name).exists() and \
                    Path(os.fsdecode(owner)).exists():
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.pwrite(fd, me + b"\n", 0)
            self._bridge_lock_fd = fd
            return name
        raise Conflict("no free default bridge name (berth0..berth63 all held)")

    def _default(self) -> NetworkRecord:
        return next(n for n in self._state.networks.values() if n.default_bridge)

    def _taken_subnets(self, exclude: str = "") -> list[ipam.IPv4Network]:
        bridge, _, _ = _links()
        ours = frozenset(n.bridge for n in self._state.networks.values() if n.bridge)
        taken: list[ipam.IPv4Network] = bridge.host_networks(ours)
        taken += [n.pool.network for n in self._state.networks.values()
                  if n.pool is not None and n.id != exclude]
        return taken

    async def _ensure_bridge(self, net: NetworkRecord) -> NetworkRecord:
        """The bridge exists, addressed; the default network gets its subnet on first use."""
        if net.pool is not None and net.bridge in self._bridges_up:
            return net
        bridge, _, _ = _links()
        if net.default_bridge and net.pool is not None and not net.pool.allocated and \
                not await asyncio.to_thread(bridge.bridge_exists, net.bridge):
            # the subnet is re-picked while unused: another daemon may have taken it meanwhile
            taken = await asyncio.to_thread(self._taken_subnets, net.id)
            if any(net.pool.network.overlaps(t) for t in taken):
                net = replace(net, pool=None)
        if net.pool is None:
            taken = await asyncio.to_thread(self._taken_subnets, net.id)
            net = replace(net, pool=ipam.new_pool(ipam.pick_subnet(taken)))
            self._state.networks[net.id] = net
            self._store.save(self._state)
        pool = net.pool
        assert pool is not None
        await asyncio.to_thread(bridge.ensure_bridge, net.bridge, pool.gateway, pool.prefixlen)
        await asyncio.to_thread(bridge.enable_ip_forward)
        self._bridges_up.add(net.bridge)
        return net

    # -- lookup -----------------------------------------------------------------------------

    def list_networks(self) -> list[NetworkRecord]:
        return sorted(self._state.networks.values(), key=lambda n: n.created)

    def get(self, ref: str) -> NetworkRecord:
        """By full ID, by name, or by unique ID prefix, as Docker."""
        nets = self._state.networks
        if ref in nets:
            return nets[ref]
        for n in nets.values():
            if n.name == ref:
                return n
        matches = [n for n in nets.values() if ref and n.id.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise InvalidArgument(f"network {ref} is ambiguous ({len(matches)} matches found "
                                  "based on ID prefix)")
        raise NotFound(f"network {ref} not found")

    def active_containers(self, net_id: str) -> dict[str, tuple[Sandbox, Endpoint]]:
        out = {}
        for cid, sb in self._state.sandboxes.items():
            for ep in sb.endpoints:
                if ep.network_id == net_id:
                    out[cid] = (sb, ep)
        return out

    # -- network verbs ----------------------------------------------------------------------

    async def create(self, name: str, driver: str = "bridge", subnet: str = "",
                     gateway: str = "", internal: bool = False, attachable: bool = False,
                     labels: dict[str, str] | None = None,
                     options: dict[str, str] | None = None,
                     check_duplicate: bool = True) -> NetworkRecord:
        if not name:
            raise InvalidArgument("network name is required")
        driver = driver or DRIVER_BRIDGE
        if any(n.name == name for n in self._state.networks.values()):
            if name in ("bridge", "host", "none"):
                raise Conflict(f"{name} is a pre-defined network and cannot be created")
            raise AlreadyExists(f"network with name {name} already exists")
        if driver != DRIVER_BRIDGE:
            raise NotFound(f"plugin \"{driver}\" not found")
        async with self._lock:
            if self._default().pool is None:  # the default bridge picks its subnet first
                await self._ensure_bridge(self._default())
            taken = await asyncio.to_thread(self._taken_subnets)
            if subnet:
                net = ipam.parse_subnet(subnet)
                ipam.check_overlap(net, taken)
            else:
                if gateway:
                    raise InvalidArgument("every ip-range or gateway must have a corresponding "
                                          "subnet")
                net = ipam.pick_subnet(taken)
            net_id = secrets.token_hex(32)
            rec = NetworkRecord(
                id=net_id, name=name, driver=DRIVER_BRIDGE, created=_now(),
                bridge=f"br-{net_id[:12]}", pool=ipam.new_pool(net, gateway),
                user_subnet=str(net) if subnet else "", user_gateway=gateway,
                internal=internal, attachable=attachable, labels=dict(labels or {}),
                options=dict(options or {}))
            self._state.networks[net_id] = rec
            self._store.save(self._state)
            try:
                await self._ensure_bridge(rec)
                await self._apply_rules()
            except BaseException:
                del self._state.networks[net_id]
                self._store.save(self._state)
                self._bridges_up.discard(rec.bridge)
                bridge, _, _ = _links()
                await asyncio.to_thread(bridge.delete_bridge, rec.bridge)
                raise
        self._on_event("create", rec.id, {"name": rec.name, "type": rec.driver})
        return rec

    async def remove(self, ref: str) -> None:
        rec = self.get(ref)
        if rec.builtin:
            raise Conflict(f"{rec.name} is a pre-defined network and cannot be removed")
        async with self._lock:
            if self.active_containers(rec.id):
                raise Conflict(f"error while removing network: network {rec.name} id {rec.id} "
                               "has active endpoints")
            del self._state.networks[rec.id]
            for nets in self._state.attachments.values():
                nets.pop(rec.id, None)
            self._store.save(self._state)
            self._bridges_up.discard(rec.bridge)
            bridge, _, _ = _links()
            await asyncio.to_thread(bridge.delete_bridge, rec.bridge)
            await self._apply_rules()
        self._on_event("destroy", rec.id, {"name": rec.name, "type": rec.driver})

    async def prune(self, keep: Callable[[NetworkRecord], bool] | None = None) -> list[str]:
        deleted = []
        for rec in self.list_networks():
            if rec.builtin or self.active_containers(rec.id) or (keep and keep(rec)):
                continue
            with contextlib.suppress(Conflict, NotFound):
                await self.remove(rec.id)
                deleted.append(rec.name)
        return deleted

    async def connect(self, ref: str, record: ContainerRecord, aliases: tuple[str, ...],
                      cdir: Path) -> None:
        net = self.get(ref)
        mode = record.host_config.network_mode
        if mode in ("host", "none") or mode.startswith("container:"):
            raise InvalidArgument("container sharing network namespace with another container "
                                  "or host cannot be connected to any other network")
        if net.driver != DRIVER_BRIDGE:
            raise InvalidArgument("container cannot be disconnected from host network or "
                                  "connected to host network")
        nets = self._state.attachments.setdefault(record.id, {})
        if net.id in nets:
            raise Conflict(f"endpoint with name {record.name} already exists in network "
                           f"{net.name}")
        if aliases and not net.user_defined:
            raise InvalidArgument("network-scoped alias is supported only for containers in "
                                  "user defined networks")
        nets[net.id] = aliases
        self._store.save(self._state)
        sb = self._state.sandboxes.get(record.id)
        if sb is not None and sb.netns:
            async with self._lock:
                try:
                    ep = await self._attach(sb, net, aliases, record, f"eth{len(sb.endpoints)}")
                except BaseException:
                    nets.pop(net.id, None)
                    self._store.save(self._state)
                    raise
                sb = replace(sb, endpoints=(*sb.endpoints, ep))
                self._state.sandboxes[record.id] = sb
                self._store.save(self._state, durable=False)
                self._endpoint_event("connect", ep, record.id)
                if net.user_defined and not sb.dns:
                    await self._dns.serve(record.id, Path(sb.netns))
                    self._state.sandboxes[record.id] = replace(sb, dns=True)
                    self._store.save(self._state, durable=False)

    async def disconnect(self, ref: str, record: ContainerRecord, force: bool = False) -> None:
        net = self.get(ref)
        nets = self._state.attachments.get(record.id, {})
        if net.id not in nets:
            raise InvalidArgument(f"container {record.id} is not connected to network "
                                  f"{net.name}")
        del nets[net.id]
        sb = self._state.sandboxes.get(record.id)
        if sb is not None:
            async with self._lock:
                keep = []
                for ep in sb.endpoints:
                    if ep.network_id != net.id:
                        keep.append(ep)
                        continue
                    _, _, veth = _links()
                    await asyncio.to_thread(veth.detach, ep.host_ifname)
                    self._release_address(ep)
                    self._endpoint_event("disconnect", ep, record.id)
                self._state.sandboxes[record.id] = replace(sb, endpoints=tuple(keep))
                await self._apply_rules()
        self._store.save(self._state)

    # -- container hooks --------------------------------------------------------------------

    def on_create(self, record: ContainerRecord, endpoints: dict[str, Any] | None) -> None:
        """Record the networks ``record`` joins; raise Docker's error for a bad network mode."""
        mode = record.host_config.network_mode or "default"
        for key in record.host_config.port_bindings:
            parse_port_key(key)
        aliases: tuple[str, ...] = ()
        cfg = (endpoints or {}).get(mode) or {}
        if isinstance(cfg, dict):
            aliases = tuple(a for a in (cfg.get("Aliases") or ()) if isinstance(a, str))
        if mode in ("host", "none") or mode.startswith("container:"):
            if mode.startswith("container:") and not mode[len("container:"):]:
                raise InvalidArgument("invalid container format container:<name|id>")
            return
        net = self._default() if mode in ("default", "bridge") else self.get(mode)
        if net.driver == DRIVER_HOST or net.driver == DRIVER_NULL:
            return
        if aliases and not net.user_defined:
            raise InvalidArgument("network-scoped alias is supported only for containers in "
                                  "user defined networks")
        self._state.attachments[record.id] = {net.id: aliases}
        # the default bridge without aliases is what a lost record falls back to anyway
        self._store.save(self._state, durable=not net.default_bridge or bool(aliases))

    def on_remove(self, container_id: str) -> None:
        if self._state.attachments.pop(container_id, None) is not None:
            self._store.save(self._state, durable=False)

    async def setup(self, record: ContainerRecord, cdir: Path,
                    lookup: Callable[[str], ContainerRecord],
                    ids: IdentityMapping | None = None) -> Namespaces:
        """Give a starting container its network, the namespaces to put in its spec.

        ``ids``: the container gets a user namespace with this mapping (``--userns-remap``),
        and a namespace pinned for it belongs to that user namespace."""
        t0 = time.perf_counter()
        try:
            return await self._setup(record, cdir, lookup, ids)
        finally:
            log.debug("net setup %s (%s): %.2f ms", record.id[:12],
                      record.host_config.network_mode or "default",
                      (time.perf_counter() - t0) * 1000)

    async def _setup(self, record: ContainerRecord, cdir: Path,
                     lookup: Callable[[str], ContainerRecord],
                     ids: IdentityMapping | None) -> Namespaces:
        mode = record.host_config.network_mode or "default"
        if mode == "host":
            await asyncio.to_thread(write_network_files, cdir, record)
            return Namespaces("host")
        if mode.startswith("container:"):
            other = lookup(mode[len("container:"):])
            peer = self._state.sandboxes.get(other.id)
            joined = peer.netns if peer is not None else ""
            userns = peer.userns if peer is not None else ""
            if not joined and peer is not None and other.status.pid:
                joined = f"/proc/{other.status.pid}/ns/net"  # a namespace its runtime made
                userns = _own_userns(other.status.pid)
            if not other.is_running or peer is None or not joined:
                raise Conflict(f"cannot join network of a non running container: {other.id}")
            self._state.sandboxes[record.id] = Sandbox(
                container_id=record.id, name=record.name, netns=joined,
                sandbox_id=peer.sandbox_id, owns_netns=False, userns=userns)
            self._store.save(self._state, durable=False)
            address = peer.endpoints[0].address if peer.endpoints else None
            await asyncio.to_thread(write_network_files, cdir, record, address)
            # Docker's rule: sharing a network namespace means sharing its user namespace
            return Namespaces(joined, userns or "host")
        if mode == "none" and record.runtime in _RUNTIMES_WITH_LOOPBACK:
            # nothing to configure but lo, which these runtimes bring up in the namespace they
            # make: no pinned namespace, no netlink, no unpin at exit
            self._state.sandboxes[record.id] = Sandbox(
                container_id=record.id, name=record.name, netns="",
                sandbox_id=secrets.token_hex(32), dns_servers=tuple(record.host_config.dns))
            self._store.save(self._state, durable=False)
            await asyncio.to_thread(write_network_files, cdir, record, None)
            return Namespaces("")
        path = self._netns_dir / record.id[:24]
        user_path = path.with_name(path.name + ".user") if ids is not None else None
        async with self._lock:
            await self._unpinned(path)
            if user_path is not None:
                await self._unpinned(user_path)
            await asyncio.to_thread(_fresh_netns, path, user_path, ids)
            # saved once configured: a pin a crash leaves unlisted is swept by ``restore``
            sb = Sandbox(container_id=record.id, name=record.name, netns=str(path),
                         sandbox_id=secrets.token_hex(32),
                         dns_servers=tuple(record.host_config.dns),
                         userns=str(user_path or ""))
            self._state.sandboxes[record.id] = sb
            try:
                if mode == "none":
                    await asyncio.to_thread(rtnl.loopback_up, path)
                else:
                    sb = await self._join_networks(sb, record)
                self._state.sandboxes[record.id] = sb
                self._store.save(self._state, durable=False)
                await self._apply_rules()
                if sb.dns:
                    await self._dns.serve(record.id, path)
                primary = sb.endpoints[0].address if sb.endpoints else None
                await asyncio.to_thread(write_network_files, cdir, record, primary)
                if sb.dns:
                    await asyncio.to_thread(_write_dns_resolv, cdir, record)
            except BaseException:
                await self._teardown_locked(record.id)
                raise
        return Namespaces(str(path), sb.userns)

    async def _join_networks(self, sb: Sandbox, record: ContainerRecord) -> Sandbox:
        nets = self._state.attachments.get(record.id)
        if nets is None:  # created before networks were recorded: Docker's default
            nets = {self._default().id: ()}
        for i, (net_id, aliases) in enumerate(list(nets.items())):
            net = self._state.networks.get(net_id)
            if net is None:
                raise NotFound(f"network {net_id} not found")
            ep = await self._attach(sb, net, aliases, record, f"eth{i}")
            sb = replace(sb, endpoints=(*sb.endpoints, ep), dns=sb.dns or net.user_defined)
            self._state.sandboxes[record.id] = sb
            self._endpoint_event("connect", ep, record.id)
        if not sb.endpoints:
            return sb
        first = sb.endpoints[0]
        try:
            ports = self._publish(record, first.address)
        except RuntimeFailure as err:
            raise RuntimeFailure(
                f"driver failed programming external connectivity on endpoint {record.name} "
                f"({first.endpoint_id}): {err.message}") from err
        return replace(sb, ports=tuple(ports))

    async def _attach(self, sb: Sandbox, net: NetworkRecord, aliases: tuple[str, ...],
                      record: ContainerRecord, ifname: str) -> Endpoint:
        net = await self._ensure_bridge(net)
        assert net.pool is not None
        pool, address = ipam.allocate(net.pool)
        net = replace(net, pool=pool)
        self._state.networks[net.id] = net  # saved with the sandbox (pools are re-derived)
        if net.user_defined:
            aliases = (record.short_id, *aliases)
        ep = Endpoint(network_id=net.id, endpoint_id=secrets.token_hex(32), ifname=ifname,
                      host_ifname="veth" + secrets.token_hex(4)[:7], address=address,
                      prefixlen=pool.prefixlen, gateway=pool.gateway,
                      mac=record.config.mac_address or ipam.mac_for(address), aliases=aliases)
        attach = functools.partial(
            rtnl.attach, Path(sb.netns), ep.host_ifname, net.bridge, ifname, address,
            pool.prefixlen, "" if net.internal else pool.gateway, ep.mac, ifname == "eth0")
        try:
            try:
                await asyncio.to_thread(attach)
            except Internal:
                if not await asyncio.to_thread(_links()[0].bridge_exists, net.bridge):
                    # someone deleted the bridge we ensured earlier: make it again, once
                    self._bridges_up.discard(net.bridge)
                    await self._ensure_bridge(net)
                    await asyncio.to_thread(attach)
                else:
                    raise
        except BaseException:
            self._release_address(ep)
            raise
        return ep

    def _publish(self, record: ContainerRecord, address: str) -> list[PortMapping]:
        """Reserve host ports for ``-p``/``-P``; all or nothing."""
        h = record.host_config
        wanted: list[tuple[str, str, str]] = []  # (port key, host ip, host port spec)
        for key, bindings in h.port_bindings.items():
            for host_ip, host_port in bindings or (("", ""),):
                wanted.append((key, host_ip, host_port))
        if h.publish_all_ports:
            for key in record.config.exposed_ports:
                if key not in h.port_bindings:
                    wanted.append((key, "", ""))
        done: list[PortMapping] = []
        try:
            for key, host_ip, spec in wanted:
                port, proto = parse_port_key(key)
                host_ip = host_ip or "0.0.0.0"
                low, high = parse_host_port(spec)
                if low == high and low:
                    self._ports.reserve(proto, host_ip, low)
                    chosen = low
                else:
                    if not low:
                        low, high = ephemeral_range()
                    chosen = self._ports.reserve_any(proto, host_ip, low, high)
                done.append(PortMapping(proto, host_ip, chosen, address, port))
        except BaseException:
            for m in done:
                self._ports.release(m.proto, m.host_ip, m.host_port)
            raise
        return done

    def _endpoint_event(self, action: str, ep: Endpoint, container_id: str) -> None:
        net = self._state.networks.get(ep.network_id)
        if net is not None:
            self._on_event(action, net.id, {"container": container_id, "name": net.name,
                                            "type": net.driver})

    def _release_address(self, ep: Endpoint) -> None:
        net = self._state.networks.get(ep.network_id)
        if net is not None and net.pool is not None:
            self._state.networks[net.id] = replace(net, pool=ipam.release(net.pool, ep.address))

    async def teardown(self, container_id: str) -> None:
        t0 = time.perf_counter()
        async with self._lock:
            await self._teardown_locked(container_id)
        log.debug("net teardown %s: %.2f ms", container_id[:12],
                  (time.perf_counter() - t0) * 1000)

    async def _teardown_locked(self, container_id: str) -> None:
        sb = self._state.sandboxes.pop(container_id, None)
        if sb is None:
            return
        self._dns.stop(container_id)
        for m in sb.ports:
            self._ports.release(m.proto, m.host_ip, m.host_port)
        for ep in sb.endpoints:
            self._release_address(ep)
            self._endpoint_event("disconnect", ep, container_id)
        self._store.save(self._state, durable=False)
        if sb.ports or sb.endpoints:
            await self._apply_rules()
        if sb.netns and sb.owns_netns:
            self._unpin_later(sb.netns)
            if sb.userns:
                self._unpin_later(sb.userns)

    def _unpin_later(self, path: str) -> None:
        """Unpin a namespace off the caller's path: the unmount waits on the kernel, and the
        kernel then removes the namespace and its veths by itself (no synchronous delete)."""
        async def unpin() -> None:
            try:
                await asyncio.to_thread(netns.delete_netns, Path(path))
            except Exception as err:  # noqa: BLE001 - a leftover pin is swept at the next start
                log.warning("cannot unpin network namespace %s: %s", path, err)
            finally:
                if self._unpinning.get(path) is task:
                    del self._unpinning[path]

        task = asyncio.get_running_loop().create_task(unpin())
        self._unpinning[path] = task

    async def _unpinned(self, path: Path) -> None:
        """Wait for a background unpin of ``path`` (a restarted container reuses its path)."""
        pending = self._unpinning.get(str(path))
        if pending is not None:
            await asyncio.gather(pending, return_exceptions=True)

    async def _apply_rules(self) -> None:
        bridges = [BridgeRules(n.bridge, n.pool.subnet, internal=n.internal)
                   for n in self._state.networks.values()
                   if n.driver == DRIVER_BRIDGE and n.pool is not None]
        mappings = [m for sb in self._state.sandboxes.values() for m in sb.ports]
        text = build_ruleset(self._tables.prefix, bridges, mappings)
        if text == self._rules_applied:  # most containers publish nothing: nothing to rewrite
            return
        self._rules_applied = None
        await asyncio.to_thread(self._tables.apply, text)
        self._rules_applied = text

    # -- DNS --------------------------------------------------------------------------------

    def _resolve(self, container_id: str, name: str) -> list[str] | None:
        me = self._state.sandboxes.get(container_id)
        if me is None:
            return None
        mine = {ep.network_id for ep in me.endpoints
                if (n := self._state.networks.get(ep.network_id)) and n.user_defined}
        found: list[str] = []
        for sb in self._state.sandboxes.values():
            for ep in sb.endpoints:
                if ep.network_id not in mine:
                    continue
                names = {sb.name.lower(), *(a.lower() for a in ep.aliases)}
                if name in names and ep.address not in found:
                    found.append(ep.address)
        return found or None

    def _upstreams(self, container_id: str) -> list[str]:
        sb = self._state.sandboxes.get(container_id)
        if sb is not None and sb.dns_servers:
            return list(sb.dns_servers)
        try:
            return host_nameservers(Path("/etc/resolv.conf").read_text())
        except OSError:
            return []

    # -- inspect ----------------------------------------------------------------------------

    def view(self, record: ContainerRecord) -> ContainerNetworkView:
        sb = self._state.sandboxes.get(record.id)
        eps = {ep.network_id: ep for ep in (sb.endpoints if sb else ())}
        attached = self._state.attachments.get(record.id, {})
        rows: list[tuple[NetworkRecord, Endpoint | None, tuple[str, ...]]] = []
        mode = record.host_config.network_mode or "default"
        if mode in ("host", "none"):
            net = next(n for n in self._state.networks.values() if n.name == mode)
            rows.append((net, None, ()))
        for net_id, aliases in attached.items():
            if (found := self._state.networks.get(net_id)) is not None:
                ep = eps.get(net_id)
                rows.append((found, ep, ep.aliases if ep else aliases))
        ports: dict[str, list[tuple[str, int]] | None] = {}
        if sb is not None and sb.endpoints:
            for key in record.config.exposed_ports:
                ports[key] = None
            for key in record.host_config.port_bindings:
                ports.setdefault(key, None)
            for m in sb.ports:
                key = f"{m.container_port}/{m.proto}"
                ports[key] = (ports.get(key) or []) + [(m.host_ip, m.host_port)]
        primary = sb.endpoints[0] if sb and sb.endpoints else None
        primary_bridge = ""
        if primary is not None:
            pnet = self._state.networks.get(primary.network_id)
            primary_bridge = pnet.bridge if pnet and pnet.default_bridge else ""
        return ContainerNetworkView(
            networks=tuple(rows), ports=ports,
            sandbox_key=_sandbox_key(sb, record), sandbox_id=sb.sandbox_id if sb else "",
            primary=primary,
            primary_bridge=primary_bridge)

    # -- daemon start and stop --------------------------------------------------------------

    async def restore(self) -> None:
        """Re-adopt the network state of containers that kept running while berthd was down."""
        await asyncio.to_thread(self._sweep_pins)
        if not self._state.sandboxes:
            return
        async with self._lock:
            for cid, sb in list(self._state.sandboxes.items()):
                if sb.netns and sb.owns_netns and not netns.is_netns(Path(sb.netns)):
                    await self._teardown_locked(cid)
                    continue
                # bridges stay while containers run (close() keeps them): nothing to re-make
                for m in sb.ports:
                    try:
                        self._ports.reserve(m.proto, m.host_ip, m.host_port)
                    except Exception as err:  # noqa: BLE001 - keep the rule, warn
                        log.warning("cannot re-reserve %s:%d/%s: %s", m.host_ip, m.host_port,
                                    m.proto, err)
                if sb.dns and sb.netns:
                    try:
                        await self._dns.serve(cid, Path(sb.netns))
                    except Exception as err:  # noqa: BLE001 - the container keeps running
                        log.warning("cannot serve DNS for %s: %s", cid[:12], err)
            await self._apply_rules()

    def _sweep_pins(self) -> None:
        """Unpin namespaces no sandbox lists (a crash between pinning and saving)."""
        listed = {p for sb in self._state.sandboxes.values() for p in (sb.netns, sb.userns) if p}
        try:
            pins = list(self._netns_dir.iterdir())
        except FileNotFoundError:
            return
        for pin in pins:
            if str(pin) not in listed:
                log.info("removing stale network namespace %s", pin)
                netns.delete_netns(pin)

    async def close(self) -> None:
        """Stop serving; when no container runs, take the bridges and rules away too."""
        self._dns.close()
        self._ports.close()
        if self._unpinning:
            await asyncio.gather(*self._unpinning.values(), return_exceptions=True)
        if not self._state.sandboxes and self._touched():
            bridge, _, _ = _links()
            for net in self._state.networks.values():
                if net.bridge:
                    await asyncio.to_thread(bridge.delete_bridge, net.bridge)
            await asyncio.to_thread(self._tables.remove)
            self._bridges_up.clear()
            self._rules_applied = None
        if self._bridge_lock_fd >= 0:
            os.close(self._bridge_lock_fd)
            self._bridge_lock_fd = -1

    def _touched(self) -> bool:
        """Whether any bridge of ours may exist (skips the pyroute2 import otherwise)."""
        return any(n.pool is not None for n in self._state.networks.values())

    def state(self) -> NetworkState:
        return self._state


def _fresh_netns(path: Path, user_path: Path | None = None,
                 ids: IdentityMapping | None = None) -> None:
    netns.delete_netns(path)  # a stale pin of an earlier run
    if user_path is None or ids is None:
        netns.create_netns(path)
        return
    netns.delete_netns(user_path)
    netns.create_userns_netns(path, user_path, ids)


def _own_userns(pid: int) -> str:
    """``/proc/<pid>/ns/user`` when that process has a user namespace of its own, else ""."""
    theirs = f"/proc/{pid}/ns/user"
    try:
        return theirs if os.readlink(theirs) != os.readlink("/proc/self/ns/user") else ""
    except OSError:
        return ""


def _sandbox_key(sb: Sandbox | None, record: ContainerRecord) -> str:
    if sb is None:
        return ""
    if not sb.netns and record.status.pid:  # the runtime made it: the process pins it
        return f"/proc/{record.status.pid}/ns/net"
    return sb.netns


def _rederive_pools(state: NetworkState) -> None:
    """Addresses in use are those of the sandboxes listed (the pools are saved without fsync,
    so after a crash they may lag behind)."""
    used: dict[str, set[str]] = {}
    for sb in state.sandboxes.values():
        for ep in sb.endpoints:
            used.setdefault(ep.network_id, set()).add(ep.address)
    for net in list(state.networks.values()):
        if net.pool is not None:
            pool = replace(net.pool, allocated=frozenset(used.get(net.id, ())))
            state.networks[net.id] = replace(net, pool=pool)


def _write_dns_resolv(cdir: Path, record: ContainerRecord) -> None:
    """resolv.conf of a container on a user-defined network: the embedded server, ndots:0."""
    h = record.host_config
    search = list(h.dns_search)
    options = list(h.dns_options)
    if not search:
        try:
            for line in Path("/etc/resolv.conf").read_text().splitlines():
                parts = line.split()
                if parts and parts[0] in ("search", "domain"):
                    search = parts[1:]
        except OSError:
            pass
    if not any(o.startswith("ndots:") for o in options):
        options.append("ndots:0")
    lines = []
    if search:
        lines.append("search " + " ".join(search))
    lines.append("nameserver 127.0.0.11")
    lines.append("options " + " ".join(options))
    tmp = cdir / ".resolv.conf.tmp"
    tmp.write_text("\n".join(lines) + "\n")
    os.chmod(tmp, 0o644)
    tmp.replace(cdir / "resolv.conf")
