"""IPv4 address management (pure): pick subnets, find gateways, hand out and take back addresses.

Nothing here touches the host; the caller persists the ``Pool`` records it gets back. The
default pools are Docker's: 172.17–31.0.0/16, then 192.168.0.0/16 cut into /20s.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from berth.errors import Conflict, InvalidArgument

IPv4Network = ipaddress.IPv4Network
IPv4Address = ipaddress.IPv4Address


def default_pools() -> list[IPv4Network]:
    pools = [IPv4Network(f"172.{n}.0.0/16") for n in range(17, 32)]
    pools += list(IPv4Network("192.168.0.0/16").subnets(new_prefix=20))
    return pools


def parse_subnet(text: str) -> IPv4Network:
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError as err:
        raise InvalidArgument(f"invalid CIDR address: {text}") from err
    if not isinstance(net, IPv4Network):
        raise InvalidArgument(f"IPv6 subnets are not supported: {text}")
    if net.prefixlen > 30:
        raise InvalidArgument(f"subnet {text} is too small")
    return net


def parse_address(text: str) -> IPv4Address:
    try:
        addr = ipaddress.ip_address(text)
    except ValueError as err:
        raise InvalidArgument(f"invalid address: {text}") from err
    if not isinstance(addr, IPv4Address):
        raise InvalidArgument(f"IPv6 addresses are not supported: {text}")
    return addr


def pick_subnet(taken: Iterable[IPv4Network],
                pools: Iterable[IPv4Network] | None = None) -> IPv4Network:
    """The first pool that overlaps nothing in ``taken`` (host routes, other networks)."""
    used = list(taken)
    for pool in pools if pools is not None else default_pools():
        if not any(pool.overlaps(t) for t in used):
            return pool
    raise Conflict("could not find an available, non-overlapping IPv4 address pool among the "
                   "defaults to assign to the network")


def check_overlap(subnet: IPv4Network, taken: Iterable[IPv4Network]) -> None:
    for other in taken:
        if subnet.overlaps(other):
            raise Conflict("Pool overlaps with other one on this address space")


@dataclass(frozen=True)
class Pool:
    """One network's address space; ``allocated`` holds the addresses in use (not the gateway)."""

    subnet: str
    gateway: str
    allocated: frozenset[str] = field(default_factory=frozenset)

    @property
    def network(self) -> IPv4Network:
        return IPv4Network(self.subnet)

    @property
    def prefixlen(self) -> int:
        return self.network.prefixlen


def new_pool(subnet: IPv4Network, gateway: str = "") -> Pool:
    """A pool whose gateway is ``gateway`` or, as Docker, the subnet's first host address."""
    gw = parse_address(gateway) if gateway else subnet.network_address + 1
    if gw not in subnet:
        raise InvalidArgument(f"gateway {gw} is not in subnet {subnet}")
    return Pool(subnet=str(subnet), gateway=str(gw))


def allocate(pool: Pool, wanted: str = "") -> tuple[Pool, str]:
    """The lowest free host address (or ``wanted``); returns the updated pool."""
    net = pool.network
    if wanted:
        addr = parse_address(wanted)
        if addr not in net:
            raise InvalidArgument(f"no configured subnet contains IP address {wanted}")
        if str(addr) in pool.allocated or str(addr) == pool.gateway:
            raise Conflict("Address already in use")
        return replace(pool, allocated=pool.allocated | {str(addr)}), str(addr)
    for host in net.hosts():
        text = str(host)
        if text != pool.gateway and text not in pool.allocated:
            return replace(pool, allocated=pool.allocated | {text}), text
    raise Conflict(f"no available IPv4 addresses on this network's address pools: {net}")


def release(pool: Pool, address: str) -> Pool:
    return replace(pool, allocated=pool.allocated - {address})


def mac_for(address: str) -> str:
    """Docker's MAC for an address: 02:42 then the four address bytes."""
    octets = [int(o) for o in address.split(".")]
    return "02:42:" + ":".join(f"{o:02x}" for o in octets)
