"""Volume verbs: create, ls, inspect, rm, prune."""

from __future__ import annotations

from berth.cli.client import ApiError
from berth.cli.context import StatusError
from berth.cli.flags import Command, Flag
from berth.cli.listing import confirm, filters_param, inspect_each, render_rows
from berth.cli.render import human_size

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from berth.cli.context import Cli

CREATE = Command("create", "volume create [OPTIONS] [VOLUME]", "Create a volume", [
    Flag("driver", "d", "str", default="local", help="Specify volume driver name"),
    Flag("label", "", "list", help="Set metadata for a volume"),
    Flag("name", "", "str", help="Specify volume name", hidden=True),
    Flag("opt", "o", "list", help="Set driver specific options"),
], max_args=1)


def create(cli: Cli, argv: list[str]) -> int:
    opts, args = cli.parse(CREATE, argv)
    if args and opts["name"] and args[0] != opts["name"]:
        raise StatusError("conflicting options: either specify --name or provide positional arg, "
                          "not both", 1)
    body: dict[str, Any] = {"Driver": opts["driver"], "Name": args[0] if args else opts["name"]}
    if opts["opt"]:
        body["DriverOpts"] = dict(o.partition("=")[::2] for o in opts["opt"])
    if opts["label"]:
        body["Labels"] = dict(lbl.partition("=")[::2] for lbl in opts["label"])
    vol = cli.client.post_json("/volumes/create", json=body)
    cli.out(vol["Name"])
    return 0


LS = Command("ls", "volume ls [OPTIONS]", "List volumes", [
    Flag("filter", "f", "list", help="Provide filter values (e.g. \"dangling=true\")"),
    Flag("format", "", "str", help="Format output using a custom template"),
    Flag("quiet", "q", help="Only display volume names"),
], max_args=0)
HEADERS = {"Name": "VOLUME NAME", "Driver": "DRIVER", "Scope": "SCOPE",
           "Mountpoint": "MOUNTPOINT", "Labels": "LABELS", "Links": "LINKS", "Size": "SIZE",
           "CreatedAt": "CREATED AT"}


def ls(cli: Cli, argv: list[str]) -> int:
    opts, _ = cli.parse(LS, argv)
    result = cli.client.get_json("/volumes", {"filters": filters_param(opts["filter"])})
    rows = []
    for v in sorted(result.get("Volumes") or [], key=lambda v: v.get("Name", "")):
        labels = v.get("Labels") or {}
        usage = v.get("UsageData") or {}
        rows.append({"Name": v.get("Name", ""), "Driver": v.get("Driver", ""),
                     "Scope": v.get("Scope", ""), "Mountpoint": v.get("Mountpoint", ""),
                     "CreatedAt": v.get("CreatedAt", ""),
                     "Labels": ",".join(f"{k}={val}" for k, val in sorted(labels.items())),
                     "Label": lambda key, labels=labels: labels.get(key, ""),
                     "Links": str(usage.get("RefCount", "N/A")),
                     "Size": human_size(usage["Size"]) if usage.get("Size", -1) >= 0 else "N/A"})
    for warning in result.get("Warnings") or []:
        cli.err(warning)
    fmt = opts["format"]
    if opts["quiet"] and not fmt:
        fmt = "{{.Name}}"
    cli.stdout.write(render_rows(fmt, "table {{.Driver}}\t{{.Name}}", rows, HEADERS))
    return 0


INSPECT = Command("inspect", "volume inspect [OPTIONS] VOLUME [VOLUME...]",
                  "Display detailed information on one or more volumes", [
                      Flag("format", "f", "str", help="Format output using a custom template"),
                  ], min_args=1)


def inspect(cli: Cli, argv: list[str]) -> int:
    opts, args = cli.parse(INSPECT, argv)
    return inspect_each(cli, [f"/volumes/{name}" for name in args], opts["format"],
                        None)


RM = Command("rm", "volume rm [OPTIONS] VOLUME [VOLUME...]", "Remove one or more volumes", [
    Flag("force", "f", help="Force the removal of one or more volumes"),
], min_args=1)


def rm(cli: Cli, argv: list[str]) -> int:
    opts, args = cli.parse(RM, argv)
    failed = False
    for name in args:
        try:
            cli.client.request("DELETE", f"/volumes/{name}",
                               {"force": 1} if opts["force"] else None)
            cli.out(name)
        except ApiError as exc:
            cli.err(f"Error response from daemon: {exc.message}")
            failed = True
    return 1 if failed else 0


PRUNE = Command("prune", "volume prune [OPTIONS]", "Remove unused local volumes", [
    Flag("all", "a", help="Remove all unused volumes, not just anonymous ones"),
    Flag("filter", "", "list", help="Provide filter values (e.g. \"label=<label>\")"),
    Flag("force", "f", help="Do not prompt for confirmation"),
], max_args=0)


def prune(cli: Cli, argv: list[str]) -> int:
    opts, _ = cli.parse(PRUNE, argv)
    filters = list(opts["filter"])
    if opts["all"]:
        filters.append("all=true")
    if not opts["force"] and not confirm(cli, "WARNING! This will remove anonymous local volumes "
                                              "not used by at least one container."):
        return 0
    result = cli.client.request("POST", "/volumes/prune",
                                {"filters": filters_param(filters)}).json() or {}
    deleted = result.get("VolumesDeleted") or []
    if deleted:
        cli.out("Deleted Volumes:")
        for name in deleted:
            cli.out(name)
        cli.out()
    cli.out(f"Total reclaimed space: {human_size(result.get('SpaceReclaimed') or 0)}")
    return 0
