"""The few rtnetlink requests a container's veth needs, packed by hand.

pyroute2 costs about 0.5-1 ms of Python per request and holds the GIL meanwhile; a container's
end of a network is five small messages, so they are built here with ``struct`` and sent on a
plain netlink socket: one request creates the pair (peer born in the namespace, host end on the
bridge and up), one datagram configures the namespace (lo up, address, eth up, default route).
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterable
from pathlib import Path

from berth.errors import Internal
from berth.network.netns import netns_socket, open_netns

_NETLINK_ROUTE = 0
_NLMSG_ERROR = 2
_RTM_NEWLINK = 16
_RTM_GETLINK = 18
_RTM_NEWADDR = 20
_RTM_NEWROUTE = 24
_F_REQUEST = 0x1
_F_ACK = 0x4
_F_EXCL = 0x200
_F_CREATE = 0x400
_IFF_UP = 0x1
_IFLA_ADDRESS = 1
_IFLA_IFNAME = 3
_IFLA_MASTER = 10
_IFLA_LINKINFO = 18
_IFLA_NET_NS_FD = 28
_IFLA_INFO_KIND = 1
_IFLA_INFO_DATA = 2
_VETH_INFO_PEER = 1
_IFA_ADDRESS = 1
_IFA_LOCAL = 2
_RTA_GATEWAY = 5
_RT_TABLE_MAIN = 254
_RTPROT_STATIC = 4  # what pyroute2 (and so berth before) gave the route
_RTN_UNICAST = 1

_HDR = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_IFINFO = struct.Struct("=BxHiII")  # family, type, index, flags, change


def _attr(kind: int, payload: bytes) -> bytes:
    size = 4 + len(payload)
    return struct.pack("=HH", size, kind) + payload + b"\0" * (-size % 4)


def _ifinfo(index: int = 0, up: bool = False) -> bytes:
    return _IFINFO.pack(socket.AF_UNSPEC, 0, index, _IFF_UP if up else 0, _IFF_UP if up else 0)


def _mac(text: str) -> bytes:
    return bytes(int(part, 16) for part in text.split(":"))


class _Conn:
    """Sequenced requests on one netlink socket; every request asks for an ack."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._seq = 0

    def request(self, kind: int, flags: int, body: bytes) -> tuple[int, bytes]:
        self._seq += 1
        return self._seq, _HDR.pack(_HDR.size + len(body), kind, flags | _F_REQUEST | _F_ACK,
                                    self._seq, 0) + body

    def send(self, messages: Iterable[tuple[int, bytes]], what: str) -> list[bytes]:
        """Send ``messages`` in one datagram; the replies (non-ack payloads) in order, or the
        first error the kernel reported."""
        seqs = []
        data = b""
        for seq, msg in messages:
            seqs.append(seq)
            data += msg
        self._sock.send(data)
        pending = set(seqs)
        replies: list[bytes] = []
        failure = 0
        while pending:
            buf = self._sock.recv(65536)
            pos = 0
            while pos + _HDR.size <= len(buf):
                size, kind, _, seq, _ = _HDR.unpack_from(buf, pos)
                if size < _HDR.size:
                    break
                payload = buf[pos + _HDR.size:pos + size]
                pos += (size + 3) & ~3
                if kind == _NLMSG_ERROR:
                    (code,) = struct.unpack_from("=i", payload)
                    pending.discard(seq)
                    if code and not failure:
                        failure = -code
                elif seq in pending:
                    replies.append(payload)
        if failure:
            raise Internal(f"{what}: {os.strerror(failure)}")
        return replies


def _host_conn() -> socket.socket:
    return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, _NETLINK_ROUTE)


def _index_in(conn: _Conn, ifname: str) -> int:
    msg = conn.request(_RTM_GETLINK, 0, _ifinfo() + _attr(_IFLA_IFNAME, ifname.encode() + b"\0"))
    replies = conn.send([msg], f"cannot find {ifname}")
    if not replies:
        raise Internal(f"cannot find {ifname}")
    return int(_IFINFO.unpack_from(replies[0])[2])


def attach(netns: Path, host_ifname: str, bridge: str, ifname: str, address: str,
           prefixlen: int, gateway: str, mac: str, default_route: bool) -> None:
    """Make ``host_ifname`` on ``bridge`` and its peer ``ifname`` in ``netns``, configured."""
    try:
        master = socket.if_nametoindex(bridge)
    except OSError as err:
        raise Internal(f"bridge {bridge} does not exist") from err
    nsfd = open_netns(netns)
    try:
        with _host_conn() as sock:
            conn = _Conn(sock)
            peer = (_ifinfo() + _attr(_IFLA_IFNAME, ifname.encode() + b"\0")
                    + _attr(_IFLA_ADDRESS, _mac(mac)) + _attr(_IFLA_NET_NS_FD,
                                                             struct.pack("=I", nsfd)))
            info = (_attr(_IFLA_INFO_KIND, b"veth\0")
                    + _attr(_IFLA_INFO_DATA, _attr(_VETH_INFO_PEER, peer)))
            body = (_ifinfo(up=True) + _attr(_IFLA_IFNAME, host_ifname.encode() + b"\0")
                    + _attr(_IFLA_MASTER, struct.pack("=I", master))
                    + _attr(_IFLA_LINKINFO, info))
            conn.send([conn.request(_RTM_NEWLINK, _F_CREATE | _F_EXCL, body)],
                      f"cannot create veth {host_ifname}")
    finally:
        os.close(nsfd)
    with netns_socket(netns, socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_ROUTE) as sock:
        conn = _Conn(sock)
        inner = _index_in(conn, ifname)
        addr = socket.inet_aton(address)
        msgs = [
            conn.request(_RTM_NEWLINK, 0, _ifinfo(1, up=True)),
            conn.request(_RTM_NEWADDR, _F_CREATE | _F_EXCL,
                         struct.pack("=BBBBI", socket.AF_INET, prefixlen, 0, 0, inner)
                         + _attr(_IFA_LOCAL, addr) + _attr(_IFA_ADDRESS, addr)),
            conn.request(_RTM_NEWLINK, 0, _ifinfo(inner, up=True)),
        ]
        if default_route and gateway:
            msgs.append(conn.request(
                _RTM_NEWROUTE, _F_CREATE | _F_EXCL,
                struct.pack("=BBBBBBBBI", socket.AF_INET, 0, 0, 0, _RT_TABLE_MAIN,
                            _RTPROT_STATIC, 0, _RTN_UNICAST, 0)
                + _attr(_RTA_GATEWAY, socket.inet_aton(gateway))))
        conn.send(msgs, f"cannot configure {ifname} in {netns}")


def loopback_up(netns: Path) -> None:
    with netns_socket(netns, socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_ROUTE) as sock:
        conn = _Conn(sock)
        conn.send([conn.request(_RTM_NEWLINK, 0, _ifinfo(1, up=True))], "cannot bring lo up")

