"""Image verbs: ls, inspect, history, tag, rm, load, save, import, prune."""

from __future__ import annotations

import time

from berth.cli import _ref
from berth.cli.client import ApiError
from berth.cli.context import StatusError
from berth.cli.download import check_output, is_terminal, write_output
from berth.cli.flags import Command, Flag
from berth.cli.listing import filters_param, inspect_each, render_rows
from berth.cli.render import ago, human_size, print_json_messages, short_id

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from berth.cli.context import Cli

LS_HEADERS = {"ID": "IMAGE ID", "Repository": "REPOSITORY", "Tag": "TAG", "Digest": "DIGEST",
              "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE",
              "Containers": "CONTAINERS", "VirtualSize": "VIRTUAL SIZE",
              "SharedSize": "SHARED SIZE", "UniqueSize": "UNIQUE SIZE"}
LS_DEFAULT = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
LS_DIGESTS = "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"

LS = Command("ls", "images [OPTIONS] [REPOSITORY[:TAG]]", "List images", [
    Flag("all", "a", help="Show all images (default hides intermediate images)"),
    Flag("digests", "", help="Show digests"),
    Flag("filter", "f", "list", help="Filter output based on conditions provided"),
    Flag("format", "", "str", help="Format output using a custom template"),
    Flag("no-trunc", "", help="Don't truncate output"),
    Flag("quiet", "q", help="Only show image IDs"),
], max_args=1, aliases=("image ls", "image list", "images"))


def image_rows(images: list[dict[str, Any]], now: float, trunc: bool,
               digests: bool) -> list[dict[str, Any]]:
    rows = []
    for img in sorted(images, key=lambda i: -int(i.get("Created") or 0)):
        tags = [t for t in img.get("RepoTags") or [] if t != "<none>:<none>"]
        repo_digests = [d for d in img.get("RepoDigests") or [] if d != "<none>@<none>"]
        by_repo: dict[str, str] = {}
        for d in repo_digests:
            repo, _, dig = d.partition("@")
            by_repo.setdefault(repo, dig)
        base = {
            "ID": short_id(img["Id"]) if trunc else img["Id"],
            "CreatedSince": ago(img.get("Created", 0), now),
            "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S %z %Z",
                                       time.localtime(img.get("Created", 0))),
            "Size": human_size(img.get("Size", 0), 3),
            "VirtualSize": human_size(img.get("VirtualSize", img.get("Size", 0)), 3),
            "SharedSize": human_size(img.get("SharedSize", 0), 3)
            if img.get("SharedSize", -1) >= 0 else "N/A",
            "UniqueSize": human_size(img.get("Size", 0) - max(img.get("SharedSize", 0), 0), 3),
            "Containers": str(img.get("Containers", -1)) if img.get("Containers", -1) >= 0
            else "N/A",
        }
        seen_repos = set()
        for tag in tags:
            repo, _, name = tag.rpartition(":")
            seen_repos.add(repo)
            rows.append({**base, "Repository": repo, "Tag": name,
                         "Digest": by_repo.get(repo, "<none>")})
        for repo, dig in by_repo.items():
            if repo not in seen_repos and (digests or not tags):
                rows.append({**base, "Repository": repo, "Tag": "<none>", "Digest": dig})
        if not tags and not by_repo:
            rows.append({**base, "Repository": "<none>", "Tag": "<none>", "Digest": "<none>"})
    return rows


def ls(cli: Cli, argv: list[str]) -> int:
    opts, args = cli.parse(LS, argv)
    filters = list(opts["filter"])
    if args:
        filters.append(f"reference={args[0]}")
    query: dict[str, Any] = {"filters": filters_param(filters)}
    if opts["all"]:
        query["all"] = 1
    images = cli.client.get_json("/images/json", query)
    rows = image_rows(images, time.time(), not opts["no_trunc"], opts["digests"])
    fmt = opts["format"]
    if opts["quiet"] and not fmt:
        fmt = "{{.ID}}"
    cli.stdout.write(render_rows(fmt, LS_DIGESTS if opts["digests"] else LS_DEFAULT, rows,
                                 LS_HEADERS))
    return 0


INSPECT = Command("inspect", "image inspect [OPTIONS] IMAGE [IMAGE...]",
                  "Display detailed information on one or more images", [
                      Flag("format", "f", "str", help="Format output using a custom template"),
                  ], min_args=1)


def inspect(cli: Cli, argv: list[str]) -> int:
    opts, args = cli.parse(INSPECT, argv)
    return inspect_each(cli, [f"/images/{name}/json" for name in args], opts["format"],
                        None)


HISTORY = Command("history", "history [OPTIONS] IMAGE", "Show the history of an image", [
    Flag("format", "", "str", help="Format output using a custom template"),
    Flag("human", "H", default=True, help="Print sizes and dates in human readable format"),
    Flag("no-trunc", "", help="Don't truncate output"),
    Flag("quiet", "q", help="Only show image IDs"),
], min_args=1, max_args=1, aliases=("image history", "history"))
HISTORY_HEADERS = {"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT",
                   "CreatedBy": "CREATED BY", "Size": "SIZE", "Comment": "COMMENT"}
HISTORY_DEFAULT = ("table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t"
                   "{{.Comment}}")


def history(cli: Cli, argv: list[str]) -> int:
    opts, args = cli.parse(HISTORY, argv)
    items = cli.client.get_json(f"/images/{args[0]}/history")
    now = time.time()
    trunc = not opts["no_trunc"]
    human = opts["human"]
    rows = []
    for h in items:
        ident = h.get("Id", "")
        created_by = str(h.get("CreatedBy", "")).replace("\t", " ")
        if trunc:
            from berth.cli.render import ellipsis

            created_by = ellipsis(created_by, 45)
        rows.append({
            "ID": "<missing>" if ident in ("", "<missing>")
            else (short_id(ident) if trunc else ident),
            "CreatedSince": ago(h.get("Created", 0), now) if human else
            time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(h.get("Created", 0))),
            "CreatedAt": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(h.get("Created", 0))),
            "CreatedBy": created_by,
            "Size": human_size(h.get("Size", 0), 3) if human else str(h.get("Size", 0)),
            "Comment": h.get("Comment", ""),
            "Tags": ",".join(h.get("Tags") or []),
        })
    fmt = opts["format"]
    if opts["quiet"] and not fmt:
        fmt = "{{.ID}}"
    cli.stdout.write(render_rows(fmt, HISTORY_DEFAULT, rows, HISTORY_HEADERS))
    return 0


TAG = Command("tag", "tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]",
              "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE", interspersed=False,
              min_args=2, max_args=2, aliases=("image tag", "tag"))


def _check_tag_target(target: str) -> None:
    """The docker client parses the target before asking the daemon (exit 1)."""
    if _ref.plainly_valid(target):
        return
    from berth.errors import InvalidReference
    from berth.reference import ERR_UPPERCASE, parse_named

    try:
        parse_named(target)
    except InvalidReference as err:
        first = target.partition("/")[0]
        if err.message == ERR_UPPERCASE and "/" in target and first != first.lower():
            return  # docker 28's client reads that first part as a registry host: daemon's call
        raise StatusError(f'Error parsing reference: "{target}" is not a valid '
                          f"repository/tag: {err.message}", 1) from None


def tag(cli: Cli, argv: list[str]) -> int:
    _, args = cli.parse(TAG, argv)
    _check_tag_target(args[1])
    repo, tag_name, digest = _ref.split(args[1])
    if digest:
        raise StatusError("refusing to create a tag with a digest reference", 1)
    cli.client.request("POST", f"/images/{args[0]}/tag",
                       {"repo": _ref.qualified_repo(repo), "tag": tag_name or "latest"})
    return 0


RM = Command("rm", "rmi [OPTIONS] IMAGE [IMAGE...]", "Remove one or more images", [
    Flag("force", "f", help="Force removal of the image"),
    Flag("no-prune", "", help="Do not delete untagged parents"),
], min_args=1, aliases=("image rm", "image remove", "rmi"))


def rm(cli: Cli, argv: list[str]) -> int:
    opts, args = cli.parse(RM, argv)
    query: dict[str, Any] = {}
    if opts["force"]:
        query["force"] = 1
    if opts["no_prune"]:
        query["noprune"] = 1
    failed = False
    for name in args:
        try:
            for item in cli.client.request("DELETE", f"/images/{name}", query).json() or []:
                if item.get("Untagged"):
                    cli.out(f"Untagged: {item['Untagged']}")
                if item.get("Deleted"):
                    cli.out(f"Deleted: {item['Deleted']}")
        except ApiError as exc:
            cli.err(f"Error response from daemon: {exc.message}")
            failed = True
    return 1 if failed else 0


LOAD = Command("load", "load [OPTIONS]", "Load an image from a tar archive or STDIN", [
    Flag("input", "i", "str", help="Read from tar archive file, instead of STDIN"),
    Flag("quiet", "q", help="Suppress the load output"),
], max_args=0, aliases=("image load", "load"))


def load(cli: Cli, argv: list[str]) -> int:
    opts, _ = cli.parse(LOAD, argv)
    if opts["input"]:
        try:
            source: Any = open(opts["input"], "rb")
        except OSError as err:  # docker: "open PATH: no such file or directory", exit 1
            raise StatusError(f"open {opts['input']}: {(err.strerror or str(err)).lower()}",
                              1) from None
    else:
        if is_terminal(cli.stdin):
            raise StatusError("requested load from stdin, but stdin is empty", 1)
        source = cli.stdin
    try:
        resp = cli.client.request("POST", "/images/load", {"quiet": 1 if opts["quiet"] else 0},
                                  stream=source, headers={"Content-Type": "application/x-tar"})
        if "json" in resp.headers.get("content-type", ""):
            error = print_json_messages(resp.iter_json(), cli.stdout, is_terminal(cli.stdout))
            if error:
                raise StatusError(error["message"], 1)
        else:
            cli.stdout.write(resp.read().decode(errors="replace"))
    finally:
        if source is not cli.stdin:
            source.close()
    return 0


SAVE = Command("save", "save [OPTIONS] IMAGE [IMAGE...]",
               "Save one or more images to a tar archive (streamed to STDOUT by default)", [
                   Flag("output", "o", "str", help="Write to a file, instead of STDOUT"),
               ], min_args=1, aliases=("image save", "save"))


def save(cli: Cli, argv: list[str]) -> int:
    opts, args = cli.parse(SAVE, argv)
    check_output(cli, opts["output"], "failed to save image")  # before asking the daemon
    resp = cli.client.request("GET", "/images/get", {"names": args})
    write_output(cli, resp, opts["output"])
    return 0


IMPORT = Command("import", "import [OPTIONS] file|URL|- [REPOSITORY[:TAG]]",
                 "Import the contents from a tarball to create a filesystem image", [
                     Flag("change", "c", "list", help="Apply Dockerfile instruction to the "
                         "created image"),
                     Flag("message", "m", "str", help="Set commit message for imported image"),
                     Flag("platform", "", "str", help="Set platform if server is "
                         "multi-platform capable"),
                 ], min_args=1, max_args=2, aliases=("image import", "import"))


def import_(cli: Cli, argv: list[str]) -> int:
    opts, args = cli.parse(IMPORT, argv)
    source_arg = args[0]
    query: dict[str, Any] = {"fromSrc": "-", "message": opts["message"] or None}
    if opts["change"]:
        query["changes"] = opts["change"]
    if opts["platform"]:
        query["platform"] = opts["platform"]
    if len(args) > 1:
        repo, tag_name, _ = _ref.split(args[1])
        query["repo"] = repo
        query["tag"] = tag_name or None
    stream: Any = None
    if source_arg == "-":
        stream = cli.stdin
    elif "://" in source_arg:
        query["fromSrc"] = source_arg
    else:
        try:
            stream = open(source_arg, "rb")
        except OSError as err:  # docker: "open PATH: no such file or directory", exit 1
            raise StatusError(f"open {source_arg}: {(err.strerror or str(err)).lower()}",
                              1) from None
    try:
        resp = cli.client.request("POST", "/images/create", query, stream=stream,
                                  headers={"Content-Type": "application/x-tar"}
                                  if stream is not None else None)
        error = print_json_messages(resp.iter_json(), cli.stdout, is_terminal(cli.stdout))
        if error:
            raise StatusError(error["message"], 1)
    finally:
        if stream is not None and stream is not cli.stdin:
            stream.close()
    return 0


PRUNE = Command("prune", "image prune [OPTIONS]", "Remove unused images", [
    Flag("all", "a", help="Remove all unused images, not just dangling ones"),
    Flag("filter", "", "list", help="Provide filter values (e.g. \"until=<timestamp>\")"),
    Flag("force", "f", help="Do not prompt for confirmation"),
], max_args=0)


def prune(cli: Cli, argv: list[str]) -> int:
    from berth.cli.listing import confirm

    opts, _ = cli.parse(PRUNE, argv)
    filters = list(opts["filter"])
    warning = "WARNING! This will remove all dangling images."
    if opts["all"]:
        warning = ("WARNING! This will remove all images without at least one container "
                   "associated to them.")
        filters.append("dangling=false")
    else:
        filters.append("dangling=true")
    if not opts["force"] and not confirm(cli, warning):
        return 0
    result = cli.client.request("POST", "/images/prune",
                                {"filters": filters_param(filters)}).json() or {}
    deleted = result.get("ImagesDeleted") or []
    if deleted:
        cli.out("Deleted Images:")
        for item in deleted:
            for key in ("Untagged", "Deleted"):
                if item.get(key):
                    cli.out(f"{key.lower()}: {item[key]}")
        cli.out()
    cli.out(f"Total reclaimed space: {human_size(result.get('SpaceReclaimed') or 0)}")
    return 0
