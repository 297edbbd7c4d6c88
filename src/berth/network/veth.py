"""A container's end of a network: a veth pair whose peer is born inside the container's
namespace (moving a link between namespaces waits 15-30 ms on the kernel; creating it there
does not), its address, the default route and loopback."""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

from pyroute2 import IPRoute  # type: ignore[import-untyped]
from pyroute2.netlink.exceptions import NetlinkError  # type: ignore[import-untyped]

from berth.errors import Internal
from berth.network.netns import netns_socket, open_netns


def _in_netns(path: Path) -> IPRoute:
    sock = netns_socket(path, socket.AF_NETLINK, socket.SOCK_DGRAM, 0)  # NETLINK_ROUTE = 0
    return IPRoute(use_socket=sock)


def loopback_up(netns: Path) -> None:
    with _in_netns(netns) as ns:
        ns.link("set", index=1, state="up")


def attach(netns: Path, host_ifname: str, bridge: str, ifname: str, address: str,
           prefixlen: int, gateway: str, mac: str, default_route: bool) -> None:
    """Make ``host_ifname`` on ``bridge`` and its peer ``ifname`` in ``netns``, configured."""
    nsfd = open_netns(netns)
    try:
        with IPRoute() as ipr:
            master = ipr.link_lookup(ifname=bridge)
            if not master:
                raise Internal(f"bridge {bridge} does not exist")
            try:
                ipr.link("add", ifname=host_ifname, kind="veth",
                         peer={"ifname": ifname, "net_ns_fd": nsfd, "address": mac})
            except NetlinkError as err:
                raise Internal(f"cannot create veth {host_ifname}: {err}") from err
            index = ipr.link_lookup(ifname=host_ifname)[0]
            ipr.link("set", index=index, master=master[0], state="up")
    finally:
        os.close(nsfd)
    with _in_netns(netns) as ns:
        ns.link("set", index=1, state="up")
        inner = ns.link_lookup(ifname=ifname)[0]
        ns.addr("add", index=inner, address=address, prefixlen=prefixlen)
        ns.link("set", index=inner, state="up")
        if default_route and gateway:
            ns.route("add", dst="0.0.0.0/0", gateway=gateway)


def detach(host_ifname: str) -> None:
    """Delete a pair by its host end (a synchronous delete: used by ``disconnect`` only)."""
    with IPRoute() as ipr, contextlib.suppress(NetlinkError):
        found = ipr.link_lookup(ifname=host_ifname)
        if found:
            ipr.link("del", index=found[0])


def link_exists(name: str) -> bool:
    with IPRoute() as ipr:
        return bool(ipr.link_lookup(ifname=name))
