"""A container's root filesystem as a whole: ``export`` (a tar of it) and ``diff`` (what its
writable layer changed, ``C``/``A``/``D`` lines in the daemon's order)."""

from __future__ import annotations

from berth.cli.download import check_output, write_output
from berth.cli.flags import Command, Flag

TYPE_CHECKING = False
if TYPE_CHECKING:
    from berth.cli.context import Cli

EXPORT = Command("export", "export [OPTIONS] CONTAINER",
                 "Export a container's filesystem as a tar archive", [
                     Flag("output", "o", "str", help="Write to a file, instead of STDOUT"),
                 ], min_args=1, max_args=1, aliases=("container export", "export"))


def export(cli: Cli, argv: list[str]) -> int:
    opts, args = cli.parse(EXPORT, argv)
    check_output(cli, opts["output"], "failed to export container")
    resp = cli.client.request("GET", f"/containers/{args[0]}/export")
    write_output(cli, resp, opts["output"])
    return 0


DIFF = Command("diff", "diff CONTAINER",
               "Inspect changes to files or directories on a container's filesystem",
               min_args=1, max_args=1, aliases=("container diff", "diff"))

_KINDS = {0: "C", 1: "A", 2: "D"}


def diff(cli: Cli, argv: list[str]) -> int:
    _, args = cli.parse(DIFF, argv)
    for change in cli.client.get_json(f"/containers/{args[0]}/changes") or []:
        cli.out(f"{_KINDS.get(change.get('Kind'), '?')} {change.get('Path', '')}")
    return 0
