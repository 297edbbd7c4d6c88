"""System verbs: version, info, df, events, prune, and the type-guessing ``inspect``.

``version`` prints the Client section before it talks to the daemon (so it works, and stays
cheap, without one): nothing heavier than the client is imported until the answer arrives.
"""

from __future__ import annotations

import sys

from berth.cli.context import StatusError
from berth.cli.flags import Command, Flag

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from berth.cli.context import Cli

CLIENT_VERSION = "0.1.0"


def _arch() -> str:
    import os

    machine = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(
        machine, machine)


def _ansic(stamp: str) -> str:
    """``2026-05-07T21:09:36.000000000+00:00`` → Go's ANSIC ``Thu May  7 21:09:36 2026``."""
    import time

    try:
        parsed = time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return stamp
    text = time.strftime("%a %b %d %H:%M:%S %Y", parsed)
    day = text[8:10]
    return text[:8] + (" " + day[1] if day.startswith("0") else day) + text[10:]


def _go_fields(info: Any) -> Any:
    """Templates see Go's field names: ``APIVersion`` is the field behind JSON's
    ``ApiVersion`` in the docker CLI's version structs."""
    if not isinstance(info, dict) or "ApiVersion" not in info:
        return info
    return {("APIVersion" if k == "ApiVersion" else k): v for k, v in info.items()}


VERSION = Command("version", "version [OPTIONS]", "Show the berth version information", [
    Flag("format", "f", "str", help="Format output using a custom template"),
], max_args=0)


def version(cli: Cli, argv: list[str]) -> int:
    opts, _ = cli.parse(VERSION, argv)
    from berth.cli.client import API_VERSION

    pyver = "{}.{}.{}".format(*sys.version_info[:3])
    client_info = {"Version": CLIENT_VERSION, "ApiVersion": API_VERSION,
                   "DefaultAPIVersion": API_VERSION, "GoVersion": f"python{pyver}",
                   "GitCommit": "-", "BuildTime": "-", "Os": "linux", "Arch": _arch(),
                   "Context": "default"}
    if opts["format"]:
        server: Any = None
        error = None
        try:
            server = cli.client.get_json("/version")
        except Exception as exc:  # the template may not need the server part
            error = exc
        from berth.cli.template import render

        cli.out(render(opts["format"], {"Client": _go_fields(client_info),
                                        "Server": _go_fields(server)}))
        if error is not None:
            raise error
        return 0
    w = 20
    lines = ["Client:",
             " Version:".ljust(w) + CLIENT_VERSION,
             " API version:".ljust(w) + API_VERSION,
             " Python version:".ljust(w) + pyver,
             " Git commit:".ljust(w) + "-",
             " Built:".ljust(w) + "-",
             " OS/Arch:".ljust(w) + f"linux/{_arch()}",
             " Context:".ljust(w) + "default"]
    cli.out("\n".join(lines))
    cli.stdout.flush()
    info = cli.client.get_json("/version")
    cli.out()
    out = [f"Server: {info.get('Platform', {}).get('Name', '')}".rstrip()]
    for comp in info.get("Components") or []:
        name = comp.get("Name", "")
        details = comp.get("Details") or {}
        out.append(f" {name}:")
        out.append("  Version:".ljust(w) + str(comp.get("Version", "")))
        if name == "Engine":
            out.append("  API version:".ljust(w) + f"{details.get('ApiVersion', '')} (minimum "
                       f"version {details.get('MinAPIVersion', '')})")
            out.append("  Go version:".ljust(w) + str(details.get("GoVersion", "")))
            out.append("  Git commit:".ljust(w) + str(details.get("GitCommit", "")))
            out.append("  Built:".ljust(w) + _ansic(str(details.get("BuildTime", ""))))
            out.append("  OS/Arch:".ljust(w) + f"{details.get('Os', '')}/{details.get('Arch', '')}")
            out.append("  Experimental:".ljust(w) + str(details.get("Experimental", "false")))
        else:
            for key, value in details.items():
                out.append(f"  {key}:".ljust(w) + str(value))
    cli.out("\n".join(out))
    return 0


INFO = Command("info", "info [OPTIONS]", "Display system-wide information", [
    Flag("format", "f", "str", help="Format output using a custom template"),
], max_args=0, aliases=("system info", "info"))


def info(cli: Cli, argv: list[str]) -> int:
    opts, _ = cli.parse(INFO, argv)
    data = cli.client.get_json("/info")
    if opts["format"]:
        from berth.cli.template import render

        cli.out(render(opts["format"], data))
        return 0
    from berth.cli.render import bytes_size

    o = ["Client:", f" Version:    {CLIENT_VERSION}", " Context:    default",
         f" Debug Mode: {'true' if cli.debug else 'false'}", "", "Server:"]
    g = data.get
    o += [f" Containers: {g('Containers', 0)}", f"  Running: {g('ContainersRunning', 0)}",
          f"  Paused: {g('ContainersPaused', 0)}", f"  Stopped: {g('ContainersStopped', 0)}",
          f" Images: {g('Images', 0)}", f" Server Version: {g('ServerVersion', '')}",
          f" Storage Driver: {g('Driver', '')}"]
    o += [f"  {k}: {v}" for k, v in g("DriverStatus") or []]
    o += [f" Logging Driver: {g('LoggingDriver', '')}", f" Cgroup Driver: {g('CgroupDriver', '')}",
          f" Cgroup Version: {g('CgroupVersion', '')}", " Plugins:"]
    plugins = g("Plugins") or {}
    for kind in ("Volume", "Network", "Authorization", "Log"):
        if plugins.get(kind):
            o.append(f"  {kind}: {' '.join(plugins[kind])}")
    swarm = (g("Swarm") or {}).get("LocalNodeState", "inactive")
    o.append(f" Swarm: {swarm}")
    default_rt = g("DefaultRuntime", "")
    runtimes = sorted(g("Runtimes") or {}, key=lambda n: (n != default_rt, n))
    o.append(f" Runtimes: {' '.join(runtimes)}")
    o.append(f" Default Runtime: {g('DefaultRuntime', '')}")
    o.append(f" Init Binary: {g('InitBinary', '')}")
    o.append(f" containerd version: {(g('ContainerdCommit') or {}).get('ID', '')}")
    o.append(f" runc version: {(g('RuncCommit') or {}).get('ID', '')}")
    o.append(f" init version: {(g('InitCommit') or {}).get('ID', '')}")
    if g("SecurityOptions"):
        o.append(" Security Options:")
        for opt in g("SecurityOptions"):
            fields = dict(f.partition("=")[::2] for f in opt.split(","))
            o.append(f"  {fields.pop('name', opt)}")
            for key, value in fields.items():
                o.append(f"   {key.capitalize()}: {value}")
    o += [f" Kernel Version: {g('KernelVersion', '')}",
          f" Operating System: {g('OperatingSystem', '')}", f" OSType: {g('OSType', '')}",
          f" Architecture: {g('Architecture', '')}", f" CPUs: {g('NCPU', 0)}",
          f" Total Memory: {bytes_size(g('MemTotal', 0))}", f" Name: {g('Name', '')}",
          f" ID: {g('ID', '')}", f" Docker Root Dir: {g('DockerRootDir', '')}",
          f" Debug Mode: {'true' if g('Debug') else 'false'}",
          f" Experimental: {'true' if g('ExperimentalBuild') else 'false'}"]
    cidrs = (g("RegistryConfig") or {}).get("InsecureRegistryCIDRs") or []
    if cidrs:
        o.append(" Insecure Registries:")
        o += [f"  {c}" for c in cidrs]
    o.append(f" Live Restore Enabled: {'true' if g('LiveRestoreEnabled') else 'false'}")
    o.append("")
    cli.out("\n".join(o))
    for warning in g("Warnings") or []:
        cli.err(warning)
    return 0


DF = Command("df", "system df [OPTIONS]", "Show berth disk usage", [
    Flag("format", "", "str", help="Format output using a custom template"),
    Flag("verbose", "v", help="Show detailed information on space usage"),
], max_args=0)


def _pct(size: int, reclaimable: int) -> str:
    from berth.cli.render import human_size

    if size > 0:
        return f"{human_size(reclaimable)} ({reclaimable * 100 // size}%)"
    return human_size(reclaimable)


def df_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    from berth.cli.render import human_size

    images = data.get("Images") or []
    total = int(data.get("LayersSize") or 0)
    used = sum(i.get("VirtualSize", i.get("Size", 0)) - i.get("SharedSize", 0)
               for i in images if i.get("Containers") and i.get("SharedSize", 0) != -1)
    containers = data.get("Containers") or []
    c_size = sum(c.get("SizeRw") or 0 for c in containers)
    c_active = [c for c in containers if c.get("State") in ("running", "paused")]
    c_reclaim = c_size - sum(c.get("SizeRw") or 0 for c in c_active)
    volumes = data.get("Volumes") or []
    v_sizes = [((v.get("UsageData") or {}).get("Size", -1), (v.get("UsageData") or {}).get(
        "RefCount", 0)) for v in volumes]
    v_size = sum(s for s, _ in v_sizes if s > 0)
    v_reclaim = sum(s for s, r in v_sizes if s > 0 and r == 0)
    cache = data.get("BuildCache") or []
    b_size = sum(b.get("Size", 0) for b in cache if not b.get("Shared"))
    b_reclaim = sum(b.get("Size", 0) for b in cache if not b.get("Shared") and not b.get("InUse"))
    return [
        {"Type": "Images", "TotalCount": str(len(images)),
         "Active": str(sum(1 for i in images if i.get("Containers"))),
         "Size": human_size(total), "Reclaimable": _pct(total, total - used)},
        {"Type": "Containers", "TotalCount": str(len(containers)), "Active": str(len(c_active)),
         "Size": human_size(c_size), "Reclaimable": _pct(c_size, c_reclaim)},
        {"Type": "Local Volumes", "TotalCount": str(len(volumes)),
         "Active": str(sum(1 for _, r in v_sizes if r > 0)), "Size": human_size(v_size),
         "Reclaimable": _pct(v_size, v_reclaim)},
        {"Type": "Build Cache", "TotalCount": str(len(cache)),
         "Active": str(sum(1 for b in cache if b.get("InUse"))), "Size": human_size(b_size),
         "Reclaimable": _pct(b_size, b_reclaim) if b_size and b_size != b_reclaim
         else human_size(b_reclaim)},
    ]


def df(cli: Cli, argv: list[str]) -> int:
    from berth.cli.listing import render_rows

    opts, _ = cli.parse(DF, argv)
    data = cli.client.get_json("/system/df")
    headers = {"Type": "TYPE", "TotalCount": "TOTAL", "Active": "ACTIVE", "Size": "SIZE",
               "Reclaimable": "RECLAIMABLE"}
    cli.stdout.write(render_rows(
        opts["format"], "table "
            "{{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}",
        df_rows(data), headers))
    return 0


EVENTS = Command("events", "events [OPTIONS]", "Get real time events from the server", [
    Flag("filter", "f", "list", help="Filter output based on conditions provided"),
    Flag("format", "", "str", help="Format output using a custom template"),
    Flag("since", "", "str", help="Show all events created since timestamp"),
    Flag("until", "", "str", help="Stream events until this timestamp"),
], max_args=0, aliases=("system events", "events"))


def event_line(ev: dict[str, Any]) -> str:
    """``2026-12-03T12:28:45.371658311Z container create ID (image=busybox, name=x)``."""
    import time

    nanos = int(ev.get("timeNano") or int(ev.get("time", 0)) * 1_000_000_000)
    secs, frac = divmod(nanos, 1_000_000_000)
    local = time.localtime(secs)
    offset = local.tm_gmtoff or 0
    sign = "+" if offset > 0 else "-"
    zone = "Z" if offset == 0 else f"{sign}{abs(offset) // 3600:02d}:{abs(offset) % 3600 // 60:02d}"
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", local) + f".{frac:09d}{zone}"
    actor = ev.get("Actor") or {}
    attrs = actor.get("Attributes") or {}
    text = f"{stamp} {ev.get('Type', '')} {ev.get('Action', '')} {actor.get('ID', '')}"
    if attrs:
        text += " (" + ", ".join(f"{k}={attrs[k]}" for k in sorted(attrs)) + ")"
    return text


def events(cli: Cli, argv: list[str]) -> int:
    import time

    from berth.cli.commands.container import parse_time
    from berth.cli.listing import filters_param

    opts, _ = cli.parse(EVENTS, argv)
    query: dict[str, Any] = {"filters": filters_param(opts["filter"])}
    now = time.time()
    if opts["since"]:
        query["since"] = parse_time(opts["since"], now)
    if opts["until"]:
        query["until"] = parse_time(opts["until"], now)
    resp = cli.client.request("GET", "/events", query)
    tmpl = None
    if opts["format"]:
        from berth.cli import template

        fmt = "{{json .}}" if opts["format"] == "json" else opts["format"]
        tmpl = template.parse(template.expand_escapes(fmt))
    for ev in resp.iter_json():
        cli.out(tmpl.execute(ev) if tmpl else event_line(ev))
        cli.stdout.flush()
    return 0


PRUNE = Command("prune", "system prune [OPTIONS]", "Remove unused data", [
    Flag("all", "a", help="Remove all unused images not just dangling ones"),
    Flag("filter", "", "list", help="Provide filter values (e.g. \"label=<key>=<value>\")"),
    Flag("force", "f", help="Do not prompt for confirmation"),
    Flag("volumes", "", help="Prune anonymous volumes"),
], max_args=0)


def prune(cli: Cli, argv: list[str]) -> int:
    from berth.cli.listing import confirm, filters_param
    from berth.cli.render import human_size

    opts, _ = cli.parse(PRUNE, argv)
    items = ["all stopped containers", "all networks not used by at least one container"]
    if opts["volumes"]:
        items.append("all anonymous volumes not used by at least one container")
    items.append("all images without at least one container associated to them"
                 if opts["all"] else "all dangling images")
    items.append("unused build cache")
    warning = "WARNING! This will remove:\n" + "".join(f"  - {i}\n" for i in items)
    if not opts["force"] and not confirm(cli, warning):
        return 0
    client = cli.client
    flt = filters_param(opts["filter"])
    reclaimed = 0
    result = client.request("POST", "/containers/prune", {"filters": flt}).json() or {}
    if result.get("ContainersDeleted"):
        cli.out("Deleted Containers:\n" + "\n".join(result["ContainersDeleted"]) + "\n")
    reclaimed += result.get("SpaceReclaimed") or 0
    result = client.request("POST", "/networks/prune", {"filters": flt}).json() or {}
    if result.get("NetworksDeleted"):
        cli.out("Deleted Networks:\n" + "\n".join(result["NetworksDeleted"]) + "\n")
    if opts["volumes"]:
        result = client.request("POST", "/volumes/prune", {"filters": flt}).json() or {}
        if result.get("VolumesDeleted"):
            cli.out("Deleted Volumes:\n" + "\n".join(result["VolumesDeleted"]) + "\n")
        reclaimed += result.get("SpaceReclaimed") or 0
    img_filters = list(opts["filter"]) + [f"dangling={'false' if opts['all'] else 'true'}"]
    result = client.request("POST", "/images/prune",
                            {"filters": filters_param(img_filters)}).json() or {}
    if result.get("ImagesDeleted"):
        cli.out("Deleted Images:")
        for item in result["ImagesDeleted"]:
            for key in ("Untagged", "Deleted"):
                if item.get(key):
                    cli.out(f"{key.lower()}: {item[key]}")
        cli.out()
    reclaimed += result.get("SpaceReclaimed") or 0
    try:
        result = client.request("POST", "/build/prune",
                                {"all": 1 if opts["all"] else None}).json() or {}
        reclaimed += result.get("SpaceReclaimed") or 0
    except Exception:  # noqa: BLE001 - a daemon without a build cache has nothing to prune
        pass
    cli.out(f"Total reclaimed space: {human_size(reclaimed)}")
    return 0


INSPECT = Command("inspect", "inspect [OPTIONS] NAME|ID [NAME|ID...]",
                  "Return low-level information on berth objects", [
                      Flag("format", "f", "str", help="Format output using a custom template"),
                      Flag("size", "s", help="Display total file sizes if the type is container"),
                      Flag("type", "", "str", help="Only inspect objects of the given type"),
                  ], min_args=1)
_KINDS = {"container": "/containers/{}/json", "image": "/images/{}/json",
          "volume": "/volumes/{}", "network": "/networks/{}"}


def inspect(cli: Cli, argv: list[str]) -> int:
    from berth.cli.client import ApiError
    from berth.cli.listing import print_inspect

    opts, args = cli.parse(INSPECT, argv)
    kinds = list(_KINDS)
    if opts["type"]:
        if opts["type"] not in _KINDS:
            raise StatusError(f'"{opts["type"]}" is not a valid value for --type', 1)
        kinds = [opts["type"]]
    found: list[Any] = []
    missing: list[str] = []
    for name in args:
        for kind in kinds:
            try:
                query = {"size": 1} if kind == "container" and opts["size"] else None
                found.append(cli.client.get_json(_KINDS[kind].format(name), query))
                break
            except ApiError as exc:
                if exc.status not in (404, 400):
                    raise
        else:
            missing.append(name)
    print_inspect(cli, found, opts["format"])
    if missing:
        what = f"No such {opts['type']}" if opts["type"] else "No such object"
        raise StatusError("\n".join(f"Error: {what}: {n}" for n in missing), 1)
    return 0
