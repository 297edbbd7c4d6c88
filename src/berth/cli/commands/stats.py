"""``stats``: docker's figures (CPU %, memory less inactive file cache, net and block I/O)."""

from __future__ import annotations

import time

from berth.cli.client import ApiError
from berth.cli.context import StatusError
from berth.cli.listing import render_rows
from berth.cli.render import bytes_size, human_size

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from berth.cli.context import Cli

HEADERS = {"ID": "CONTAINER ID", "Container": "CONTAINER", "Name": "NAME", "CPUPerc": "CPU %",
           "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %", "NetIO": "NET I/O",
           "BlockIO": "BLOCK I/O", "PIDs": "PIDS"}
DEFAULT = ("table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t"
           "{{.BlockIO}}\t{{.PIDs}}")


def stats_row(s: dict[str, Any], container: str, trunc: bool = True) -> dict[str, Any]:
    cpu = s.get("cpu_stats") or {}
    pre = s.get("precpu_stats") or {}
    cpu_delta = ((cpu.get("cpu_usage") or {}).get("total_usage", 0)
                 - (pre.get("cpu_usage") or {}).get("total_usage", 0))
    sys_delta = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    online = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or [])
    cpu_pct = cpu_delta / sys_delta * online * 100.0 if sys_delta > 0 and cpu_delta > 0 else 0.0
    mem = s.get("memory_stats") or {}
    mstats = mem.get("stats") or {}
    usage = mem.get("usage", 0)
    for key in ("total_inactive_file", "inactive_file"):
        if key in mstats and mstats[key] < usage:
            usage -= mstats[key]
            break
    limit = mem.get("limit", 0)
    mem_pct = usage / limit * 100.0 if limit else 0.0
    rx = sum(n.get("rx_bytes", 0) for n in (s.get("networks") or {}).values())
    tx = sum(n.get("tx_bytes", 0) for n in (s.get("networks") or {}).values())
    read = write = 0
    for entry in (s.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []:
        op = str(entry.get("op", "")).lower()
        if op == "read":
            read += entry.get("value", 0)
        elif op == "write":
            write += entry.get("value", 0)
    ident = str(s.get("id", ""))
    return {
        "ID": ident[:12] if trunc else ident,
        "Container": container,
        "Name": str(s.get("name", "")).lstrip("/") or "--",
        "CPUPerc": f"{cpu_pct:.2f}%",
        "MemUsage": f"{bytes_size(usage)} / {bytes_size(limit)}",
        "MemPerc": f"{mem_pct:.2f}%",
        "NetIO": f"{human_size(rx, 3)} / {human_size(tx, 3)}",
        "BlockIO": f"{human_size(read, 3)} / {human_size(write, 3)}",
        "PIDs": str((s.get("pids_stats") or {}).get("current", 0)),
    }


def run_stats(cli: Cli, opts: dict[str, Any], args: list[str]) -> int:
    client = cli.client
    trunc = not opts["no_trunc"]
    while True:
        names = args
        if not names:
            listing = client.get_json("/containers/json", {"all": 1} if opts["all"] else None)
            names = [c["Id"] for c in listing]
        rows = []
        for name in names:
            try:
                data = client.get_json(f"/containers/{name}/stats", {"stream": 0})
            except ApiError as exc:
                if args:
                    raise StatusError(f"Error response from daemon: {exc.message}", 1) from None
                continue
            rows.append(stats_row(data, name, trunc))
        text = render_rows(opts["format"], DEFAULT, rows, HEADERS)
        if opts["no_stream"]:
            cli.stdout.write(text)
            return 0
        cli.stdout.write("\x1b[2J\x1b[H" + text)
        cli.stdout.flush()
        time.sleep(1)
