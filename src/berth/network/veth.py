"""Host-side veth operations through pyroute2. Creating and configuring a container's pair is
``berth.network.rtnl`` (hand-packed requests, ~1.5 ms against ~10 ms here)."""

from __future__ import annotations

import contextlib

from pyroute2 import IPRoute  # type: ignore[import-untyped]
from pyroute2.netlink.exceptions import NetlinkError  # type: ignore[import-untyped]


def detach(host_ifname: str) -> None:
    """Delete a pair by its host end (a synchronous delete: used by ``disconnect`` only)."""
    with IPRoute() as ipr, contextlib.suppress(NetlinkError):
        found = ipr.link_lookup(ifname=host_ifname)
        if found:
            ipr.link("del", index=found[0])


def link_exists(name: str) -> bool:
    with IPRoute() as ipr:
        return bool(ipr.link_lookup(ifname=name))
