"""Container verbs that are plain requests: ls, inspect, logs, stop, restart, kill, rm, wait,
pause, unpause, top, rename, prune, port, commit, stats."""

from __future__ import annotations

import time

from berth.cli import _ref
from berth.cli.client import ApiError
from berth.cli.context import StatusError
from berth.cli.flags import Command, Flag
from berth.cli.listing import filters_param, inspect_each, render_rows
from berth.cli.render import (
    ago,
    display_names,
    format_ports,
    human_size,
    quoted_command,
    short_id,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from berth.cli.context import Cli

PS_HEADERS = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND",
              "CreatedAt": "CREATED AT", "RunningFor": "CREATED", "Ports": "PORTS",
              "State": "STATE", "Status": "STATUS", "Size": "SIZE", "Names": "NAMES",
              "Labels": "LABELS", "Mounts": "MOUNTS", "Networks": "NETWORKS",
              "LocalVolumes": "LOCAL VOLUMES", "Label": "LABEL"}
PS_DEFAULT = ("table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t"
              "{{.Ports}}\t{{.Names}}")

LS = Command("ls", "ps [OPTIONS]", "List containers", [
    Flag("all", "a", help="Show all containers (default shows just running)"),
    Flag("filter", "f", "list", help="Filter output based on conditions provided"),
    Flag("format", "", "str", help="Format output using a custom template"),
    Flag("last", "n", "int", default=-1, help="Show n last created containers (includes all "
        "states)"),
    Flag("latest", "l", help="Show the latest created container (includes all states)"),
    Flag("no-trunc", "", help="Don't truncate output"),
    Flag("quiet", "q", help="Only display container IDs"),
    Flag("size", "s", help="Display total file sizes"),
], max_args=0, aliases=("container ls", "container list", "container ps", "ps"))


def local_time(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %z %Z", time.localtime(ts))


def container_row(c: dict[str, Any], now: float, trunc: bool) -> dict[str, Any]:
    labels = c.get("Labels") or {}
    image = str(c.get("Image", ""))
    if trunc and image.startswith("sha256:"):
        image = short_id(image)
    size = ""
    if "SizeRw" in c or "SizeRootFs" in c:
        size = human_size(c.get("SizeRw") or 0, 3)
        if c.get("SizeRootFs"):
            size += f" (virtual {human_size(c['SizeRootFs'], 3)})"
    mounts = [m.get("Name") or m.get("Source", "") for m in c.get("Mounts") or []]
    networks = sorted(((c.get("NetworkSettings") or {}).get("Networks") or {}).keys())
    return {
        "ID": short_id(c["Id"]) if trunc else c["Id"],
        "Image": image,
        "Command": quoted_command(str(c.get("Command", "")), trunc),
        "CreatedAt": local_time(c.get("Created", 0)),
        "RunningFor": ago(c.get("Created", 0), now),
        "Ports": format_ports(c.get("Ports")),
        "State": c.get("State", ""),
        "Status": c.get("Status", ""),
        "Size": size,
        "Names": display_names(c.get("Names")) if trunc else ",".join(
            n.lstrip("/") for n in c.get("Names") or []),
        "Labels": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
        "Label": lambda key: labels.get(key, ""),
        "Mounts": ",".join(mounts),
        "Networks": ",".join(networks),
        "LocalVolumes": str(sum(1 for m in c.get("Mounts") or [] if m.get("Driver") == "local")),
    }


def ls(cli: Cli, argv: list[str]) -> int:
    opts, _ = cli.parse(LS, argv)
    query: dict[str, Any] = {}
    if opts["all"]:
        query["all"] = 1
    if opts["latest"]:
        query["limit"] = 1
    elif opts["last"] > 0:
        query["limit"] = opts["last"]
    if opts["size"]:
        query["size"] = 1
    query["filters"] = filters_param(opts["filter"])
    items = cli.client.get_json("/containers/json", query)
    trunc = not opts["no_trunc"]
    now = time.time()
    rows = [container_row(c, now, trunc) for c in items]
    fmt = opts["format"]
    if opts["quiet"] and not fmt:
        fmt = "{{.ID}}"
    default = PS_DEFAULT + ("\t{{.Size}}" if opts["size"] else "")
    cli.stdout.write(render_rows(fmt, default, rows, PS_HEADERS))
    return 0


INSPECT = Command("inspect", "inspect [OPTIONS] CONTAINER [CONTAINER...]",
                  "Display detailed information on one or more containers", [
                      Flag("format", "f", "str", help="Format output using a custom template"),
                      Flag("size", "s", help="Display total file sizes"),
                  ], min_args=1, aliases=("container inspect",))


def inspect(cli: Cli, argv: list[str]) -> int:
    opts, args = cli.parse(INSPECT, argv)
    return inspect_each(cli, [f"/containers/{name}/json" for name in args], opts["format"],
                        {"size": 1} if opts["size"] else None)


LOGS = Command("logs", "logs [OPTIONS] CONTAINER", "Fetch the logs of a container", [
    Flag("details", "", help="Show extra details provided to logs"),
    Flag("follow", "f", help="Follow log output"),
    Flag("since", "", "str", help="Show logs since timestamp or relative (e.g. 42m for 42 "
        "minutes)"),
    Flag("tail", "n", "str", default="all", help="Number of lines to show from the end of the "
        "logs"),
    Flag("timestamps", "t", help="Show timestamps"),
    Flag("until", "", "str", help="Show logs before a timestamp or relative (e.g. 42m for 42 "
        "minutes)"),
], min_args=1, max_args=1, aliases=("container logs", "logs"))


def parse_time(value: str, now: float) -> str:
    """docker's ``--since``/``--until``: unix seconds, RFC 3339, or a duration ago (``10m``)."""
    text = value.strip()
    units = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    for unit in sorted(units, key=len, reverse=True):
        if text.endswith(unit) and text[: -len(unit)].replace(".", "", 1).isdigit():
            return f"{now - float(text[: -len(unit)]) * units[unit]:.9f}"
    if text.replace(".", "", 1).isdigit():
        return text
    from datetime import datetime

    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise StatusError(f'invalid value for "since": failed to parse value as time or '
                          f'duration: "{value}"', 1) from None
    if stamp.tzinfo is None:
        stamp = stamp.astimezone()
    return f"{stamp.timestamp():.9f}"


def logs(cli: Cli, argv: list[str]) -> int:
    opts, args = cli.parse(LOGS, argv)
    client = cli.client
    info = client.get_json(f"/containers/{args[0]}/json")
    query: dict[str, Any] = {"stdout": 1, "stderr": 1, "tail": opts["tail"] or "all"}
    if opts["follow"]:
        query["follow"] = 1
    if opts["timestamps"]:
        query["timestamps"] = 1
    if opts["details"]:
        query["details"] = 1
    now = time.time()
    if opts["since"]:
        query["since"] = parse_time(opts["since"], now)
    if opts["until"]:
        query["until"] = parse_time(opts["until"], now)
    resp = client.request("GET", f"/containers/{info['Id']}/logs", query)
    out = getattr(cli.stdout, "buffer", None)
    err = getattr(cli.stderr, "buffer", None)
    if info.get("Config", {}).get("Tty"):
        for data in resp.iter_raw():
            _write(cli.stdout, out, data)
        return 0
    from berth.cli.frames import FrameDecoder

    decoder = FrameDecoder()
    for data in resp.iter_raw():
        for stream, payload in decoder.feed(data):
            if stream == 2:
                cli.stdout.flush()
                _write(cli.stderr, err, payload)
            else:
                _write(cli.stdout, out, payload)
    return 0


def _write(text_stream: Any, binary: Any, data: bytes) -> None:
    if binary is not None:
        text_stream.flush()
        binary.write(data)
        binary.flush()
    else:
        text_stream.write(data.decode(errors="replace"))
        text_stream.flush()


def _each(cli: Cli, names: list[str], action: Any, what: str = "") -> int:
    failed = False
    for name in names:
        try:
            action(name)
            cli.out(name)
        except ApiError as exc:
            cli.err(f"Error response from daemon: {exc.message}")
            failed = True
    return 1 if failed else 0


STOP = Command("stop", "stop [OPTIONS] CONTAINER [CONTAINER...]", "Stop one or more running "
    "containers", [
    Flag("signal", "s", "str", help="Signal to send to the container"),
    Flag("time", "t", "optint", help="Seconds to wait before killing the container"),
], min_args=1, aliases=("container stop", "stop"))


def _stop_query(opts: dict[str, Any]) -> dict[str, Any]:
    query: dict[str, Any] = {}
    if opts.get("signal"):
        query["signal"] = opts["signal"]
    if opts["time"] is not None:
        query["t"] = opts["time"]
    return query


def stop(cli: Cli, argv: list[str]) -> int:
    opts, args = cli.parse(STOP, argv)
    q = _stop_query(opts)
    return _each(cli, args, lambda n: cli.client.request("POST", f"/containers/{n}/stop", q))


RESTART = Command("restart", "restart [OPTIONS] CONTAINER [CONTAINER...]",
                  "Restart one or more containers", STOP.flags, min_args=1,
                  aliases=("container restart", "restart"))


def restart(cli: Cli, argv: list[str]) -> int:
    opts, args = cli.parse(RESTART, argv)
    q = _stop_query(opts)
    return _each(cli, args, lambda n: cli.client.request("POST", f"/containers/{n}/restart", q))


KILL = Command("kill", "kill [OPTIONS] CONTAINER [CONTAINER...]", "Kill one or more running "
    "containers", [
    Flag("signal", "s", "str", help="Signal to send to the container"),
], min_args=1, aliases=("container kill", "kill"))


def kill(cli: Cli, argv: list[str]) -> int:
    opts, args = cli.parse(KILL, argv)
    q = {"signal": opts["signal"]} if opts["signal"] else None
    return _each(cli, args, lambda n: cli.client.request("POST", f"/containers/{n}/kill", q))


RM = Command("rm", "rm [OPTIONS] CONTAINER [CONTAINER...]", "Remove one or more containers", [
    Flag("force", "f", help="Force the removal of a running container (uses SIGKILL)"),
    Flag("link", "l", help="Remove the specified link"),
    Flag("volumes", "v", help="Remove anonymous volumes associated with the container"),
], min_args=1, aliases=("container rm", "container remove", "rm"))


def rm(cli: Cli, argv: list[str]) -> int:
    opts, args = cli.parse(RM, argv)
    q: dict[str, Any] = {}
    if opts["volumes"]:
        q["v"] = 1
    if opts["link"]:
        q["link"] = 1
    if opts["force"]:
        q["force"] = 1
    failed = False
    for name in args:
        try:
            cli.client.request("DELETE", f"/containers/{name}", q)
            cli.out(name)
        except ApiError as exc:
            cli.err(f"Error response from daemon: {exc.message}")
            # docker: with --force a missing container is reported but is not a failure
            failed = failed or not (opts["force"] and exc.status == 404)
    return 1 if failed else 0


WAIT = Command("wait", "wait CONTAINER [CONTAINER...]",
               "Block until one or more containers stop, then print their exit codes",
               min_args=1, aliases=("container wait", "wait"))


def wait(cli: Cli, argv: list[str]) -> int:
    _, args = cli.parse(WAIT, argv)
    failed = False
    for name in args:
        try:
            result = cli.client.request("POST", f"/containers/{name}/wait").json()
            cli.out(str(result.get("StatusCode", 0)))
        except ApiError as exc:
            cli.err(f"Error response from daemon: {exc.message}")
            failed = True
    return 1 if failed else 0


PAUSE = Command("pause", "pause CONTAINER [CONTAINER...]",
                "Pause all processes within one or more containers", min_args=1,
                aliases=("container pause", "pause"))
UNPAUSE = Command("unpause", "unpause CONTAINER [CONTAINER...]",
                  "Unpause all processes within one or more containers", min_args=1,
                  aliases=("container unpause", "unpause"))


def pause(cli: Cli, argv: list[str]) -> int:
    _, args = cli.parse(PAUSE, argv)
    return _each(cli, args, lambda n: cli.client.request("POST", f"/containers/{n}/pause"))


def unpause(cli: Cli, argv: list[str]) -> int:
    _, args = cli.parse(UNPAUSE, argv)
    return _each(cli, args, lambda n: cli.client.request("POST", f"/containers/{n}/unpause"))


TOP = Command("top", "top CONTAINER [ps OPTIONS]", "Display the running processes of a container",
              interspersed=False, min_args=1, aliases=("container top", "top"))


def top(cli: Cli, argv: list[str]) -> int:
    _, args = cli.parse(TOP, argv)
    query = {"ps_args": " ".join(args[1:])} if len(args) > 1 else None
    result = cli.client.get_json(f"/containers/{args[0]}/top", query)
    from berth.cli.render import tabulate

    # docker's top uses a tabwriter with minwidth 20 and padding 1.
    lines = ["\t".join(result.get("Titles") or []) + "\t"]
    lines += ["\t".join(p) + "\t" for p in result.get("Processes") or []]
    cli.stdout.write("".join(line.rstrip() + "\n" for line in tabulate(lines, 20, 1).splitlines()))
    return 0


RENAME = Command("rename", "rename CONTAINER NEW_NAME", "Rename a container", min_args=2,
                 max_args=2, aliases=("container rename", "rename"))


def rename(cli: Cli, argv: list[str]) -> int:
    _, args = cli.parse(RENAME, argv)
    if not args[1].strip():
        raise StatusError("Error: Neither old nor new names may be empty", 1)
    try:
        cli.client.request("POST", f"/containers/{args[0]}/rename", {"name": args[1]})
    except ApiError as exc:  # docker prints the daemon's answer, then its own line
        cli.err(f"Error response from daemon: {exc.message}")
        raise StatusError(f"Error: failed to rename container named {args[0]}", 1) from None
    return 0


PRUNE = Command("prune", "container prune [OPTIONS]", "Remove all stopped containers", [
    Flag("filter", "", "list", help="Provide filter values (e.g. \"until=<timestamp>\")"),
    Flag("force", "f", help="Do not prompt for confirmation"),
], max_args=0)


def prune(cli: Cli, argv: list[str]) -> int:
    from berth.cli.listing import confirm

    opts, _ = cli.parse(PRUNE, argv)
    if not opts["force"] and not confirm(cli, "WARNING! This will remove all stopped containers."):
        return 0
    result = cli.client.request("POST", "/containers/prune",
                                {"filters": filters_param(opts["filter"])}).json() or {}
    deleted = result.get("ContainersDeleted") or []
    if deleted:
        cli.out("Deleted Containers:")
        for cid in deleted:
            cli.out(cid)
        cli.out()
    cli.out(f"Total reclaimed space: {human_size(result.get('SpaceReclaimed') or 0)}")
    return 0


PORT = Command("port", "port CONTAINER [PRIVATE_PORT[/PROTO]]",
               "List port mappings or a specific mapping for the container", min_args=1,
               max_args=2, aliases=("container port", "port"))


def port(cli: Cli, argv: list[str]) -> int:
    _, args = cli.parse(PORT, argv)
    info = cli.client.get_json(f"/containers/{args[0]}/json")
    ports = (info.get("NetworkSettings") or {}).get("Ports") or {}
    if len(args) == 2:
        want = args[1] if "/" in args[1] else args[1] + "/tcp"
        bindings = ports.get(want)
        if not bindings:
            raise StatusError(f"Error: No public port '{want}' published for {args[0]}", 1)
        for b in bindings:
            cli.out(_host_port(b))
        return 0
    for key in sorted(ports, key=lambda k: (int(k.split("/")[0]), k)):
        for b in ports[key] or []:
            cli.out(f"{key} -> {_host_port(b)}")
    return 0


def _host_port(binding: dict[str, str]) -> str:
    ip = binding.get("HostIp") or "0.0.0.0"
    return f"[{ip}]:{binding.get('HostPort')}" if ":" in ip else f"{ip}:{binding.get('HostPort')}"


COMMIT = Command("commit", "commit [OPTIONS] CONTAINER [REPOSITORY[:TAG]]",
                 "Create a new image from a container's changes", [
                     Flag("author", "a", "str", help="Author (e.g., \"John Hannibal Smith "
                         "<hannibal@a-team.com>\")"),
                     Flag("change", "c", "list", help="Apply Dockerfile instruction to the "
                         "created image"),
                     Flag("message", "m", "str", help="Commit message"),
                     Flag("pause", "p", default=True, help="Pause container during commit"),
                 ], min_args=1, max_args=2, aliases=("container commit", "commit"))


def commit(cli: Cli, argv: list[str]) -> int:
    opts, args = cli.parse(COMMIT, argv)
    query: dict[str, Any] = {"container": args[0], "author": opts["author"],
                             "comment": opts["message"]}
    if opts["change"]:
        query["changes"] = opts["change"]
    if not opts["pause"]:
        query["pause"] = 0
    if len(args) > 1:
        repo, tag, _ = _ref.split(args[1])
        query["repo"] = _ref.qualified_repo(repo)
        query["tag"] = tag
    result = cli.client.request("POST", "/commit", query).json()
    cli.out(result["Id"])
    return 0


STATS = Command("stats", "stats [OPTIONS] [CONTAINER...]",
                "Display a live stream of container(s) resource usage statistics", [
                    Flag("all", "a", help="Show all containers (default shows just running)"),
                    Flag("format", "", "str", help="Format output using a custom template"),
                    Flag("no-stream", "", help="Disable streaming stats and only pull the "
                        "first result"),
                    Flag("no-trunc", "", help="Do not truncate output"),
                ], aliases=("container stats", "stats"))


def stats(cli: Cli, argv: list[str]) -> int:
    from berth.cli.commands.stats import run_stats

    opts, args = cli.parse(STATS, argv)
    return run_stats(cli, opts, args)
