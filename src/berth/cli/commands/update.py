"""``update``: new resource limits and restart policy for containers, running or not.

As the docker CLI: each container is named on stdout once updated, errors follow on stderr
(exit 1 if any), and the daemon's warnings (a discarded block I/O weight) are printed last.
"""

from __future__ import annotations

from berth.cli.client import ApiError
from berth.cli.context import StatusError
from berth.cli.flags import Command, Flag, UsageError, parse_bytes

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from berth.cli.context import Cli

UPDATE = Command("update", "update [OPTIONS] CONTAINER [CONTAINER...]",
                 "Update configuration of one or more containers", [
                     Flag("blkio-weight", "", "int", help="Block IO (relative weight), between "
                         "10 and 1000, or 0 to disable (default 0)"),
                     Flag("cpu-period", "", "int", help="Limit CPU CFS (Completely Fair "
                         "Scheduler) period"),
                     Flag("cpu-quota", "", "int", help="Limit CPU CFS (Completely Fair "
                         "Scheduler) quota"),
                     Flag("cpu-shares", "c", "int", help="CPU shares (relative weight)"),
                     Flag("cpus", "", "float", help="Number of CPUs"),
                     Flag("cpuset-cpus", "", "str", help="CPUs in which to allow execution "
                         "(0-3, 0,1)"),
                     Flag("cpuset-mems", "", "str", help="MEMs in which to allow execution "
                         "(0-3, 0,1)"),
                     Flag("memory", "m", "bytes", help="Memory limit"),
                     Flag("memory-reservation", "", "bytes", help="Memory soft limit"),
                     Flag("memory-swap", "", "str", metavar="bytes", help="Swap limit equal "
                         "to memory plus swap: '-1' to enable unlimited swap"),
                     Flag("pids-limit", "", "optint", help="Tune container pids limit (set -1 "
                         "for unlimited)"),
                     Flag("restart", "", "str", help="Restart policy to apply when a container "
                         "exits"),
                 ], min_args=1, aliases=("container update", "update"))


def _restart_policy(text: str) -> dict[str, Any]:
    """The docker CLI's ``ParseRestartPolicy``: ``name[:count]``, the name checked by the
    daemon."""
    parts = text.split(":")
    if len(parts) > 2:
        raise StatusError("invalid restart policy format", 1)
    count = 0
    if len(parts) == 2:
        try:
            count = int(parts[1])
        except ValueError:
            raise StatusError("maximum retry count must be an integer", 1) from None
    return {"Name": parts[0], "MaximumRetryCount": count}


def update_body(opts: dict[str, Any]) -> dict[str, Any]:
    """The ``POST /containers/{id}/update`` body the docker CLI sends: every resource field,
    zero for "leave as is"; ``PidsLimit`` only when given."""
    swap = 0
    if opts["memory_swap"]:
        try:
            swap = parse_bytes(opts["memory_swap"])
        except ValueError as err:
            raise UsageError(f'invalid argument "{opts["memory_swap"]}" for "--memory-swap" '
                             f"flag: {err}", UPDATE) from None
    body: dict[str, Any] = {
        "BlkioWeight": opts["blkio_weight"], "CpuShares": opts["cpu_shares"],
        "Memory": opts["memory"], "NanoCpus": int(round(opts["cpus"] * 1e9)),
        "CpuPeriod": opts["cpu_period"], "CpuQuota": opts["cpu_quota"],
        "CpusetCpus": opts["cpuset_cpus"], "CpusetMems": opts["cpuset_mems"],
        "MemoryReservation": opts["memory_reservation"], "MemorySwap": swap,
    }
    if opts["pids_limit"] is not None:
        body["PidsLimit"] = opts["pids_limit"]
    body["RestartPolicy"] = (_restart_policy(opts["restart"]) if opts["restart"]
                             else {"Name": "", "MaximumRetryCount": 0})
    return body


def update(cli: Cli, argv: list[str]) -> int:
    opts, args = cli.parse(UPDATE, argv)
    if not any(opts[f.dest] not in (None, 0, 0.0, "") for f in UPDATE.flags):
        raise StatusError("you must provide one or more flags when using this command", 1)
    body = update_body(opts)
    errors: list[str] = []
    warnings: list[str] = []
    for name in args:
        try:
            result = cli.client.post_json(f"/containers/{name}/update", json=body) or {}
        except ApiError as exc:
            errors.append(f"Error response from daemon: {exc.message}")
            continue
        cli.out(name)
        warnings += result.get("Warnings") or []
    if warnings:
        cli.out("\n".join(warnings))
    if errors:
        raise StatusError("\n".join(errors), 1)
    return 0
