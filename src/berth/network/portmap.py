"""Published ports and the packet filter rules berth's bridges need.

Rules are built as text (pure: ``build_ruleset``) and applied apart (``IptablesTables``), in
chains of berth's own so a host that also runs dockerd keeps its rules untouched: every change
rewrites berth's chains in one ``iptables-restore --noflush`` transaction, and one jump per
built-in chain leads into them.

Published ports use kernel DNAT, 127.0.0.1 included (``route_localnet`` on the bridge and a
masquerade of loopback sources), rather than a userland proxy: packets never climb into the
daemon. Each published host port is also *reserved* with a bound, never listening socket, so
no other program (or another berthd) can take it, and a second binding fails as in Docker.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import shutil
import socket
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from berth.errors import Internal, InvalidArgument, RuntimeFailure

log = logging.getLogger(__name__)

PROTOCOLS = ("tcp", "udp", "sctp")


@dataclass(frozen=True)
class PortMapping:
    """One published port: ``host_ip:host_port`` → ``container_ip:container_port``."""

    proto: str
    host_ip: str  # "0.0.0.0" for every address
    host_port: int
    container_ip: str
    container_port: int


@dataclass(frozen=True)
class BridgeRules:
    bridge: str
    subnet: str
    internal: bool = False
    masquerade: bool = True


def chain_names(prefix: str) -> tuple[str, str, str]:
    """(filter forward, nat dnat, nat postrouting) chains of one daemon."""
    return f"{prefix}-FORWARD", f"{prefix}-DNAT", f"{prefix}-POSTROUTING"


def input_chain(prefix: str) -> str:
    return f"{prefix}-INPUT"


def build_ruleset(prefix: str, bridges: Iterable[BridgeRules],
                  mappings: Iterable[PortMapping]) -> str:
    """iptables-restore input that (re)writes the daemon's chains completely."""
    fwd, dnat, post = chain_names(prefix)
    bridges = list(bridges)
    mappings = list(mappings)
    inp = input_chain(prefix)
    filt = ["*filter", f":{fwd} - [0:0]", f":{inp} - [0:0]"]
    nat = ["*nat", f":{dnat} - [0:0]", f":{post} - [0:0]"]
    for b in bridges:
        br = b.bridge
        # route_localnet lets 127.x cross the bridge for DNAT'ed loopback ports; a container
        # must not use it to reach the host's loopback services (CVE-2020-8558)
        filt.append(f"-A {inp} -i {br} -d 127.0.0.0/8 -m conntrack ! --ctstate "
                    "RELATED,ESTABLISHED -j DROP")
        if b.internal:
            filt.append(f"-A {fwd} -i {br} ! -o {br} -j DROP")
            filt.append(f"-A {fwd} ! -i {br} -o {br} -j DROP")
            filt.append(f"-A {fwd} -i {br} -o {br} -j ACCEPT")
            continue
        filt.append(f"-A {fwd} -o {br} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
        filt.append(f"-A {fwd} -i {br} -j ACCEPT")
        if b.masquerade:
            nat.append(f"-A {post} -s {b.subnet} ! -o {br} -j MASQUERADE")
        # DNAT'ed loopback traffic must not reach the container with a 127.x source
        nat.append(f"-A {post} -s 127.0.0.0/8 -o {br} -j MASQUERADE")
    for m in mappings:
        proto = f"-p {m.proto} -m {m.proto}"
        dest = "" if m.host_ip in ("", "0.0.0.0") else f"-d {m.host_ip}/32 "
        nat.append(f"-A {dnat} {dest}{proto} --dport {m.host_port} -j DNAT "
                   f"--to-destination {m.container_ip}:{m.container_port}")
        filt.append(f"-A {fwd} -d {m.container_ip}/32 {proto} --dport {m.container_port} "
                    "-j ACCEPT")
        # a container reaching itself through its own published port
        nat.append(f"-A {post} -s {m.container_ip}/32 -d {m.container_ip}/32 {proto} "
                   f"--dport {m.container_port} -j MASQUERADE")
    return "\n".join(_unique(filt) + ["COMMIT"] + _unique(nat) + ["COMMIT"]) + "\n"


def _unique(lines: list[str]) -> list[str]:
    return list(dict.fromkeys(lines))


def jump_rules(prefix: str) -> list[tuple[str, str, list[str]]]:
    """(table, built-in chain, rule) for the jumps into the daemon's chains."""
    fwd, dnat, post = chain_names(prefix)
    local = ["-m", "addrtype", "--dst-type", "LOCAL"]
    return [
        ("filter", "FORWARD", ["-j", fwd]),
        ("filter", "INPUT", ["-j", input_chain(prefix)]),
        ("nat", "PREROUTING", [*local, "-j", dnat]),
        ("nat", "OUTPUT", [*local, "-j", dnat]),
        ("nat", "POSTROUTING", ["-j", post]),
    ]


class IptablesTables:
    """Applies rulesets with the host's ``iptables`` (nft or legacy backend, whichever is there:
    dockerd uses the same one, so our chains and its FORWARD policy meet in one table)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._iptables = shutil.which("iptables")
        self._restore = shutil.which("iptables-restore")
        if not (self._iptables and self._restore):
            log.warning("iptables not found: containers get no outbound NAT and published "
                        "ports from other hosts will not work")
        self._jumps_ready = False

    @property
    def available(self) -> bool:
        return bool(self._iptables and self._restore)

    def _run(self, *args: str, stdin: str | None = None, check: bool = True) -> bool:
        assert self._iptables and self._restore
        exe = self._restore if args and args[0] == "--restore" else self._iptables
        argv = [exe, "-w", *(args[1:] if exe == self._restore else args)]
        proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
        if proc.returncode != 0 and check:
            raise Internal(f"{Path(exe).name} {' '.join(args)}: {proc.stderr.strip()}")
        return proc.returncode == 0

    def apply(self, ruleset: str) -> None:
        if not self.available:
            return
        self._run("--restore", "--noflush", stdin=ruleset)
        if not self._jumps_ready:
            for table, chain, rule in jump_rules(self.prefix):
                if not self._run("-t", table, "-C", chain, *rule, check=False):
                    self._run("-t", table, "-I", chain, "1", *rule)
            self._jumps_ready = True

    def remove(self) -> None:
        """Take the jumps and the daemon's chains out again."""
        if not self.available:
            return
        for table, chain, rule in jump_rules(self.prefix):
            while self._run("-t", table, "-D", chain, *rule, check=False):
                pass
        fwd, dnat, post = chain_names(self.prefix)
        for table, name in (("filter", fwd), ("filter", input_chain(self.prefix)),
                            ("nat", dnat), ("nat", post)):
            self._run("-t", table, "-F", name, check=False)
            self._run("-t", table, "-X", name, check=False)
        self._jumps_ready = False


def ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _allocated(ip: str, port: int) -> RuntimeFailure:
    return RuntimeFailure(f"Bind for {ip or '0.0.0.0'}:{port} failed: port is already allocated")


class PortReservations:
    """Bound, never listening sockets that hold the host ports in use by published ports."""

    def __init__(self) -> None:
        self._held: dict[tuple[str, str, int], socket.socket] = {}

    def reserve(self, proto: str, host_ip: str, port: int) -> None:
        key = (proto, host_ip or "0.0.0.0", port)
        if key in self._held or (proto, "0.0.0.0", port) in self._held or (
                key[1] == "0.0.0.0" and any(k[0] == proto and k[2] == port for k in self._held)):
            raise _allocated(key[1], port)
        if proto == "sctp":
            kind, num = socket.SOCK_STREAM, socket.IPPROTO_SCTP
        else:
            kind, num = (socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM), 0
        sock = socket.socket(socket.AF_INET, kind | socket.SOCK_CLOEXEC, num)
        try:
            sock.bind((key[1], port))
        except OSError as err:
            sock.close()
            if err.errno == errno.EADDRINUSE:
                raise _allocated(key[1], port) from err
            raise InvalidArgument(f"Bind for {key[1]}:{port} failed: {err.strerror}") from err
        self._held[key] = sock

    def reserve_any(self, proto: str, host_ip: str, low: int, high: int) -> int:
        """The first port of ``low..high`` that can be reserved (Docker scans from the range's
        start)."""
        for port in range(low, high + 1):
            with contextlib.suppress(RuntimeFailure, InvalidArgument):
                self.reserve(proto, host_ip, port)
                return port
        if low == high:
            raise _allocated(host_ip, low)
        raise RuntimeFailure(f"Bind for {host_ip or '0.0.0.0'}:{low}-{high} failed: "
                             "all ports are allocated")

    def release(self, proto: str, host_ip: str, port: int) -> None:
        sock = self._held.pop((proto, host_ip or "0.0.0.0", port), None)
        if sock is not None:
            sock.close()

    def close(self) -> None:
        for sock in self._held.values():
            sock.close()
        self._held.clear()


def parse_host_port(text: str) -> tuple[int, int]:
    """``""`` → (0, 0) (any); ``"8080"`` → (8080, 8080); ``"8000-8010"`` → (8000, 8010)."""
    if not text:
        return 0, 0
    low, sep, high = text.partition("-")
    try:
        lo = int(low)
        hi = int(high) if sep else lo
    except ValueError as err:
        raise InvalidArgument(f"invalid hostPort: {text}") from err
    if not (0 < lo <= hi <= 65535):
        raise InvalidArgument(f"invalid hostPort: {text}")
    return lo, hi


def parse_port_key(key: str) -> tuple[int, str]:
    """``"80/tcp"`` → (80, "tcp"); the protocol defaults to tcp."""
    port, _, proto = key.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in PROTOCOLS:
        raise InvalidArgument(f"Invalid proto: {proto}")
    try:
        num = int(port)
    except ValueError as err:
        raise InvalidArgument(f"invalid containerPort: {port}") from err
    if not 0 < num <= 65535:
        raise InvalidArgument(f"invalid containerPort: {port}")
    return num, proto
