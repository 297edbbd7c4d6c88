"""Network verbs: create, ls, inspect, rm, connect, disconnect, prune."""

from __future__ import annotations

from berth.cli.client import ApiError
from berth.cli.context import StatusError
from berth.cli.flags import Command, Flag
from berth.cli.listing import confirm, filters_param, inspect_each, render_rows

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from berth.cli.context import Cli

CREATE = Command("create", "network create [OPTIONS] NETWORK", "Create a network", [
    Flag("attachable", "", help="Enable manual container attachment"),
    Flag("driver", "d", "str", default="bridge", help="Driver to manage the Network"),
    Flag("gateway", "", "list", help="IPv4 or IPv6 Gateway for the master subnet"),
    Flag("internal", "", help="Restrict external access to the network"),
    Flag("ip-range", "", "list", help="Allocate container ip from a sub-range"),
    Flag("ipam-driver", "", "str", default="default", help="IP Address Management Driver"),
    Flag("ipv6", "", help="Enable or disable IPv6 networking"),
    Flag("label", "", "list", help="Set metadata on a network"),
    Flag("opt", "o", "list", help="Set driver specific options"),
    Flag("subnet", "", "list", help="Subnet in CIDR format that represents a network segment"),
], min_args=1, max_args=1)


def create(cli: Cli, argv: list[str]) -> int:
    opts, args = cli.parse(CREATE, argv)
    configs = []
    for i, subnet in enumerate(opts["subnet"]):
        cfg = {"Subnet": subnet}
        if i < len(opts["ip_range"]):
            cfg["IPRange"] = opts["ip_range"][i]
        if i < len(opts["gateway"]):
            cfg["Gateway"] = opts["gateway"][i]
        configs.append(cfg)
    if len(opts["gateway"]) > len(configs):
        raise StatusError("every ip-range or gateway must have a corresponding subnet", 1)
    body: dict[str, Any] = {
        "Name": args[0], "CheckDuplicate": True, "Driver": opts["driver"],
        "Scope": "", "EnableIPv6": opts["ipv6"],
        "IPAM": {"Driver": opts["ipam_driver"], "Options": {}, "Config": configs},
        "Internal": opts["internal"], "Attachable": opts["attachable"], "Ingress": False,
        "ConfigOnly": False, "ConfigFrom": None,
        "Options": dict(o.partition("=")[::2] for o in opts["opt"]),
        "Labels": dict(lbl.partition("=")[::2] for lbl in opts["label"]),
    }
    result = cli.client.post_json("/networks/create", json=body)
    if result.get("Warning"):
        cli.err(f"WARNING: {result['Warning']}")
    cli.out(result["Id"])
    return 0


LS = Command("ls", "network ls [OPTIONS]", "List networks", [
    Flag("filter", "f", "list", help="Provide filter values (e.g. \"driver=bridge\")"),
    Flag("format", "", "str", help="Format output using a custom template"),
    Flag("no-trunc", "", help="Do not truncate the output"),
    Flag("quiet", "q", help="Only display network IDs"),
], max_args=0)
HEADERS = {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE",
           "IPv6": "IPV6", "Internal": "INTERNAL", "Labels": "LABELS", "CreatedAt": "CREATED AT"}


def ls(cli: Cli, argv: list[str]) -> int:
    opts, _ = cli.parse(LS, argv)
    nets = cli.client.get_json("/networks", {"filters": filters_param(opts["filter"])})
    trunc = not opts["no_trunc"]
    rows = []
    for n in sorted(nets, key=lambda n: n.get("Name", "")):
        labels = n.get("Labels") or {}
        rows.append({"ID": n["Id"][:12] if trunc else n["Id"], "Name": n.get("Name", ""),
                     "Driver": n.get("Driver", ""), "Scope": n.get("Scope", ""),
                     "IPv6": "true" if n.get("EnableIPv6") else "false",
                     "Internal": "true" if n.get("Internal") else "false",
                     "CreatedAt": n.get("Created", ""),
                     "Labels": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
                     "Label": lambda key, labels=labels: labels.get(key, "")})
    fmt = opts["format"]
    if opts["quiet"] and not fmt:
        fmt = "{{.ID}}"
    cli.stdout.write(render_rows(fmt, "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}", rows,
                                 HEADERS))
    return 0


INSPECT = Command("inspect", "network inspect [OPTIONS] NETWORK [NETWORK...]",
                  "Display detailed information on one or more networks", [
                      Flag("format", "f", "str", help="Format output using a custom template"),
                      Flag("verbose", "v", help="Verbose output for diagnostics"),
                  ], min_args=1)


def inspect(cli: Cli, argv: list[str]) -> int:
    opts, args = cli.parse(INSPECT, argv)
    return inspect_each(cli, [f"/networks/{name}" for name in args], opts["format"],
                        {"verbose": "true"} if opts["verbose"] else None)


RM = Command("rm", "network rm NETWORK [NETWORK...]", "Remove one or more networks", [
    Flag("force", "f", help="Do not error if the network does not exist"),
], min_args=1)


def rm(cli: Cli, argv: list[str]) -> int:
    opts, args = cli.parse(RM, argv)
    failed = False
    for name in args:
        try:
            cli.client.request("DELETE", f"/networks/{name}")
            cli.out(name)
        except ApiError as exc:
            if opts["force"] and exc.status == 404:
                continue
            cli.err(f"Error response from daemon: {exc.message}")
            failed = True
    return 1 if failed else 0


CONNECT = Command("connect", "network connect [OPTIONS] NETWORK CONTAINER",
                  "Connect a container to a network", [
                      Flag("alias", "", "list", help="Add network-scoped alias for the container"),
                      Flag("ip", "", "str", help="IPv4 address (e.g., \"172.30.100.104\")"),
                      Flag("ip6", "", "str", help="IPv6 address (e.g., \"2001:db8::33\")"),
                      Flag("link", "", "list", help="Add link to another container"),
                  ], min_args=2, max_args=2)


def connect(cli: Cli, argv: list[str]) -> int:
    opts, args = cli.parse(CONNECT, argv)
    endpoint: dict[str, Any] = {"Aliases": opts["alias"] or None, "Links": opts["link"] or None}
    if opts["ip"] or opts["ip6"]:
        endpoint["IPAMConfig"] = {"IPv4Address": opts["ip"], "IPv6Address": opts["ip6"]}
    cli.client.request("POST", f"/networks/{args[0]}/connect",
                       json={"Container": args[1], "EndpointConfig": endpoint})
    return 0


DISCONNECT = Command("disconnect", "network disconnect [OPTIONS] NETWORK CONTAINER",
                     "Disconnect a container from a network", [
                         Flag("force", "f", help="Force the container to disconnect from a "
                             "network"),
                     ], min_args=2, max_args=2)


def disconnect(cli: Cli, argv: list[str]) -> int:
    opts, args = cli.parse(DISCONNECT, argv)
    cli.client.request("POST", f"/networks/{args[0]}/disconnect",
                       json={"Container": args[1], "Force": opts["force"]})
    return 0


PRUNE = Command("prune", "network prune [OPTIONS]", "Remove all unused networks", [
    Flag("filter", "", "list", help="Provide filter values (e.g. \"until=<timestamp>\")"),
    Flag("force", "f", help="Do not prompt for confirmation"),
], max_args=0)


def prune(cli: Cli, argv: list[str]) -> int:
    opts, _ = cli.parse(PRUNE, argv)
    if not opts["force"] and not confirm(
            cli, "WARNING! This will remove all custom networks not used by at least one "
                 "container."):
        return 0
    result = cli.client.request("POST", "/networks/prune",
                                {"filters": filters_param(opts["filter"])}).json() or {}
    deleted = result.get("NetworksDeleted") or []
    if deleted:
        cli.out("Deleted Networks:")
        for name in deleted:
            cli.out(name)
    return 0
