"""Docker's JSON for networks and for a container's network settings (Engine API 1.41)."""

from __future__ import annotations

from typing import Any

from berth.engine.network_store import Endpoint, NetworkRecord
from berth.engine.networks import ContainerNetworkView
from berth.errors import InvalidArgument


def parse_endpoints(body: dict[str, Any]) -> dict[str, Any] | None:
    """``NetworkingConfig.EndpointsConfig`` of a create body: {network: {"Aliases": [...]}}."""
    nc = body.get("NetworkingConfig")
    if not isinstance(nc, dict):
        return None
    eps = nc.get("EndpointsConfig")
    return eps if isinstance(eps, dict) else None


def parse_create(body: Any) -> dict[str, Any]:
    """``POST /networks/create`` → keyword arguments of ``NetworkService.create``."""
    if not isinstance(body, dict):
        raise InvalidArgument("invalid network config")
    ipam = body.get("IPAM") or {}
    configs = ipam.get("Config") or []
    if len(configs) > 1:
        raise InvalidArgument("berth supports one IPAM config (one IPv4 subnet) per network")
    subnet = gateway = ""
    if configs:
        cfg = configs[0] or {}
        subnet = cfg.get("Subnet") or ""
        gateway = cfg.get("Gateway") or ""
        if cfg.get("IPRange") or cfg.get("AuxiliaryAddresses"):
            raise InvalidArgument("IPRange and AuxiliaryAddresses are not supported by berth")
    if body.get("EnableIPv6"):
        raise InvalidArgument("IPv6 networks are not supported by berth")
    return {
        "name": str(body.get("Name") or ""), "driver": str(body.get("Driver") or "bridge"),
        "subnet": subnet, "gateway": gateway, "internal": bool(body.get("Internal")),
        "attachable": bool(body.get("Attachable")), "labels": dict(body.get("Labels") or {}),
        "options": dict(body.get("Options") or {}),
        "check_duplicate": bool(body.get("CheckDuplicate", True)),
    }


def render_network(rec: NetworkRecord,
                   containers: dict[str, tuple[str, Endpoint]] | None = None) -> dict[str, Any]:
    """One network as ``GET /networks/{id}`` shows it (``containers``: id → (name, endpoint))."""
    config: list[dict[str, str]] = []
    if rec.pool is not None:
        entry = {"Subnet": rec.pool.subnet}
        if not rec.default_bridge or rec.user_gateway:
            entry["Gateway"] = rec.pool.gateway
        config.append(entry)
    return {
        "Name": rec.name, "Id": rec.id, "Created": rec.created, "Scope": "local",
        "Driver": rec.driver, "EnableIPv6": False,
        "IPAM": {"Driver": "default", "Options": None if rec.builtin else {}, "Config": config},
        "Internal": rec.internal, "Attachable": rec.attachable, "Ingress": False,
        "ConfigFrom": {"Network": ""}, "ConfigOnly": False,
        "Containers": {
            cid: {"Name": name, "EndpointID": ep.endpoint_id, "MacAddress": ep.mac,
                  "IPv4Address": f"{ep.address}/{ep.prefixlen}", "IPv6Address": ""}
            for cid, (name, ep) in (containers or {}).items()},
        "Options": dict(rec.options), "Labels": dict(rec.labels),
    }


def _endpoint_settings(rec: NetworkRecord, ep: Endpoint | None,
                       aliases: tuple[str, ...]) -> dict[str, Any]:
    return {
        "IPAMConfig": None, "Links": None, "Aliases": list(aliases) or None,
        "NetworkID": rec.id, "EndpointID": ep.endpoint_id if ep else "",
        "Gateway": ep.gateway if ep else "", "IPAddress": ep.address if ep else "",
        "IPPrefixLen": ep.prefixlen if ep else 0, "IPv6Gateway": "", "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0, "MacAddress": ep.mac if ep else "", "DriverOpts": None,
    }


def container_extras(view: ContainerNetworkView) -> dict[str, Any]:
    """The inspect ``NetworkSettings`` and the list's ``Ports``/``Networks`` of a container."""
    networks = {rec.name: _endpoint_settings(rec, ep, aliases)
                for rec, ep, aliases in view.networks}
    ports = {key: None if binds is None else
             [{"HostIp": ip, "HostPort": str(port)} for ip, port in binds]
             for key, binds in sorted(view.ports.items())}
    listed: list[dict[str, Any]] = []
    for key, binds in ports.items():
        port, _, proto = key.partition("/")
        if binds is None:
            listed.append({"PrivatePort": int(port), "Type": proto})
        for b in binds or ():
            listed.append({"IP": b["HostIp"], "PrivatePort": int(port),
                           "PublicPort": int(b["HostPort"]), "Type": proto})
    ep = view.primary if view.primary_bridge else None
    settings = {
        "Bridge": "", "SandboxID": view.sandbox_id, "HairpinMode": False,
        "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0, "Ports": ports,
        "SandboxKey": view.sandbox_key, "SecondaryIPAddresses": None,
        "SecondaryIPv6Addresses": None, "EndpointID": ep.endpoint_id if ep else "",
        "Gateway": ep.gateway if ep else "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
        "IPAddress": ep.address if ep else "", "IPPrefixLen": ep.prefixlen if ep else 0,
        "IPv6Gateway": "", "MacAddress": ep.mac if ep else "", "Networks": networks,
    }
    return {"NetworkSettings": settings, "Ports": listed, "Networks": networks}
