"""Linux bridges for berth's networks, through netlink (pyroute2; imported by berthd only)."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
from pathlib import Path

from pyroute2 import IPRoute  # type: ignore[import-untyped]
from pyroute2.netlink.exceptions import NetlinkError  # type: ignore[import-untyped]

from berth.errors import Internal

log = logging.getLogger(__name__)

_ENOENT = 2
_EEXIST = 17
_ENODEV = 19


def _sysctl(path: str, value: str) -> None:
    try:
        Path("/proc/sys", path).write_text(value)
    except OSError as err:
        log.warning("cannot set %s=%s: %s", path.replace("/", "."), value, err)


def ensure_bridge(name: str, gateway: str, prefixlen: int) -> None:
    """Create ``name`` if missing, give it the gateway address, bring it up.

    ``route_localnet`` lets DNAT'ed 127.0.0.1 traffic leave through the bridge (published
    loopback ports without a userland proxy)."""
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=name)
        if not found:
            try:
                ipr.link("add", ifname=name, kind="bridge")
            except NetlinkError as err:
                if err.code != _EEXIST:
                    raise Internal(f"cannot create bridge {name}: {err}") from err
            found = ipr.link_lookup(ifname=name)
        index = found[0]
        have = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"])
                for a in ipr.get_addr(index=index, family=2)}
        for address, plen in have - {(gateway, prefixlen)}:
            # a bridge left by a daemon that died with another subnet
            with contextlib.suppress(NetlinkError):
                ipr.addr("del", index=index, address=address, prefixlen=plen)
        if (gateway, prefixlen) not in have:
            try:
                ipr.addr("add", index=index, address=gateway, prefixlen=prefixlen)
            except NetlinkError as err:
                if err.code != _EEXIST:
                    raise Internal(f"cannot address bridge {name}: {err}") from err
        ipr.link("set", index=index, state="up")
    _sysctl(f"net/ipv4/conf/{name}/route_localnet", "1")
    _sysctl(f"net/ipv6/conf/{name}/disable_ipv6", "1")


def delete_bridge(name: str) -> None:
    with IPRoute() as ipr, contextlib.suppress(NetlinkError):
        found = ipr.link_lookup(ifname=name)
        if found:
            ipr.link("del", index=found[0])


def bridge_exists(name: str) -> bool:
    with IPRoute() as ipr:
        return bool(ipr.link_lookup(ifname=name))


def host_networks(exclude_ifnames: frozenset[str] = frozenset()) -> list[ipaddress.IPv4Network]:
    """Every IPv4 subnet the host routes to (not the default route): what a new network must
    not overlap."""
    out: list[ipaddress.IPv4Network] = []
    with IPRoute() as ipr:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        for route in ipr.get_routes(family=2, table=254):
            dst = route.get_attr("RTA_DST")
            if not dst or route["dst_len"] == 0:
                continue
            if names.get(route.get_attr("RTA_OIF")) in exclude_ifnames:
                continue
            out.append(ipaddress.IPv4Network(f"{dst}/{route['dst_len']}", strict=False))
    return out


def enable_ip_forward() -> None:
    path = Path("/proc/sys/net/ipv4/ip_forward")
    try:
        if path.read_text().strip() != "1":
            path.write_text("1")
    except OSError as err:
        log.warning("cannot enable IP forwarding: %s", err)
