"""``build``: tar the context (honouring .dockerignore), ``POST /build``, print the stream.

The legacy builder protocol (``version=1``), as the docker CLI uses with a daemon that does not
advertise BuildKit (capture 19): chunked ``application/x-tar`` body, ``X-Registry-Config``.
"""

from __future__ import annotations

import os

from berth.cli.context import StatusError
from berth.cli.flags import Command, Flag

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Any

    from berth.cli.context import Cli

BUILD = Command("build", "build [OPTIONS] PATH | URL | -", "Build an image from a Dockerfile", [
    Flag("add-host", "", "list", help="Add a custom host-to-IP mapping (\"host:ip\")"),
    Flag("build-arg", "", "list", help="Set build-time variables"),
    Flag("cache-from", "", "list", help="Images to consider as cache sources"),
    Flag("file", "f", "str", help="Name of the Dockerfile (Default is \"PATH/Dockerfile\")"),
    Flag("force-rm", "", help="Always remove intermediate containers"),
    Flag("iidfile", "", "str", help="Write the image ID to the file"),
    Flag("label", "", "list", help="Set metadata for an image"),
    Flag("network", "", "str", default="default", help="Set the networking mode for the RUN "
        "instructions during build"),
    Flag("no-cache", "", help="Do not use cache when building the image"),
    Flag("platform", "", "str", help="Set platform if server is multi-platform capable"),
    Flag("progress", "", "str", default="auto", help="Set type of progress output (auto, "
        "plain, tty)"),
    Flag("pull", "", help="Always attempt to pull a newer version of the image"),
    Flag("quiet", "q", help="Suppress the build output and print image ID on success"),
    Flag("rm", "", default=True, help="Remove intermediate containers after a successful build"),
    Flag("tag", "t", "list", help="Name and optionally a tag in the \"name:tag\" format"),
    Flag("target", "", "str", help="Set the target build stage to build."),
], min_args=1, max_args=1, aliases=("image build", "build"))


def _clean(pattern: str) -> str:
    parts: list[str] = []
    for part in pattern.replace("\\", "/").split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return "/".join(parts)


def parse_dockerignore(text: str) -> list[tuple[bool, str]]:
    """→ [(negated, cleaned pattern)] in file order; comments and blanks dropped."""
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        if negated:
            line = line[1:].strip()
        cleaned = _clean(line)
        if cleaned:
            out.append((negated, cleaned))
    return out


def _regex(pattern: str) -> Any:
    import re

    out = ""
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                out += "(.*/)?"
                i += 1
            else:
                out += ".*"
            continue
        if ch == "*":
            out += "[^/]*"
        elif ch == "?":
            out += "[^/]"
        elif ch == "[":
            end = pattern.find("]", i)
            if end < 0:
                out += re.escape(ch)
            else:
                body = pattern[i + 1 : end].replace("\\", "\\\\")
                out += "[" + ("^" + body[1:] if body.startswith("!") else body) + "]"
                i = end
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        else:
            out += re.escape(ch)
        i += 1
    return re.compile(out + "$")


class IgnoreMatcher:
    """Docker's .dockerignore semantics: a path is excluded if the last pattern matching it
    (or one of its parent directories) is not an exception."""

    def __init__(self, patterns: list[tuple[bool, str]]) -> None:
        self.rules = [(neg, _regex(p)) for neg, p in patterns]
        self.has_exceptions = any(neg for neg, _ in patterns)

    def excluded(self, rel: str) -> bool:
        parts = rel.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        result = False
        for negated, rx in self.rules:
            if any(rx.match(p) for p in prefixes):
                result = not negated
        return result


def tar_context(root: str, dockerfile_rel: str, extra: dict[str, bytes] | None = None) -> IO[bytes]:
    """The context as an uncompressed tar in an unnamed temp file (rewound), owner 0:0."""
    from berth.cli._tarwrite import TarWriter

    ignore_text = ""
    try:
        with open(os.path.join(root, ".dockerignore"), encoding="utf-8") as fh:
            ignore_text = fh.read()
    except FileNotFoundError:
        pass
    matcher = IgnoreMatcher(parse_dockerignore(ignore_text))
    keep = {dockerfile_rel, ".dockerignore"}
    if extra:
        # A Dockerfile from stdin or outside the context travels under a private name; list
        # it in .dockerignore (as the docker CLI does) so that COPY cannot see it.
        extra = dict(extra)
        extra[".dockerignore"] = (ignore_text.rstrip("\n") + "\n" + "\n".join(
            n for n in extra if n != ".dockerignore") + "\n").lstrip("\n").encode()
        keep.discard(".dockerignore")
    out = _unnamed_temp_file()
    tar = TarWriter(out)
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/")
        dirnames.sort()
        kept_dirs = []
        for name in dirnames:
            rel = f"{rel_dir}/{name}" if rel_dir else name
            if matcher.excluded(rel) and not matcher.has_exceptions:
                continue
            kept_dirs.append(name)
            if not matcher.excluded(rel):
                tar.add_path(os.path.join(dirpath, name), rel)
        dirnames[:] = kept_dirs
        for name in sorted(filenames):
            rel = f"{rel_dir}/{name}" if rel_dir else name
            if (matcher.excluded(rel) and rel not in keep) or rel in (extra or {}):
                continue
            tar.add_path(os.path.join(dirpath, name), rel)
    for name, data in (extra or {}).items():
        tar.add_bytes(name, data)
    tar.close()
    out.seek(0)
    return out


def _unnamed_temp_file() -> IO[bytes]:
    """An O_TMPFILE file in $TMPDIR or /tmp (``tempfile`` costs the CLI a few ms to import)."""
    try:
        fd = os.open(os.environ.get("TMPDIR") or "/tmp", os.O_TMPFILE | os.O_RDWR, 0o600)
    except OSError:
        import tempfile

        return tempfile.TemporaryFile()
    return open(fd, "w+b")  # noqa: SIM115 - the caller closes it


def _check_tags(tags: list[str]) -> None:
    """docker checks ``-t`` before sending the context, not after the build (exit 125)."""
    from berth.cli._ref import plainly_valid

    if all(plainly_valid(tag) for tag in tags):
        return
    from berth.errors import InvalidReference
    from berth.reference import parse_named

    for tag in tags:
        try:
            parse_named(tag)
        except InvalidReference as err:
            raise StatusError(f'invalid argument "{tag}" for "-t, --tag" flag: {err}\n'
                              "See 'berth build --help'.", 125) from None


def build(cli: Cli, argv: list[str]) -> int:
    from berth.cli.client import go_json
    from berth.cli.render import human_size

    opts, args = cli.parse(BUILD, argv)
    _check_tags(opts["tag"])
    source = args[0]
    query: dict[str, Any] = {}
    stream: Any = None
    size = 0
    if source == "-":
        stream = cli.stdin
        query["dockerfile"] = opts["file"] or "Dockerfile"
    elif "://" in source or source.startswith("git@"):
        query["remote"] = source
        query["dockerfile"] = opts["file"] or "Dockerfile"
    else:
        if not os.path.isdir(source):
            raise StatusError(f'unable to prepare context: path "{source}" not found', 1)
        dockerfile = opts["file"] or os.path.join(source, "Dockerfile")
        if opts["file"] == "-":
            dockerfile_data = cli.stdin.read()
            extra = {".dockerfile.stdin": dockerfile_data}
            rel = ".dockerfile.stdin"
        else:
            if not os.path.exists(dockerfile):
                raise StatusError(f"unable to prepare context: unable to evaluate symlinks in "
                                  f"Dockerfile path: lstat {os.path.abspath(dockerfile)}: no "
                                  f"such file or directory", 1)
            rel = os.path.relpath(os.path.abspath(dockerfile), os.path.abspath(source))
            extra = {}
            if rel.startswith(".."):
                with open(dockerfile, "rb") as fh:
                    extra = {".dockerfile.outside": fh.read()}
                rel = ".dockerfile.outside"
        query["dockerfile"] = rel.replace(os.sep, "/")
        stream = tar_context(source, query["dockerfile"], extra)
        size = os.fstat(stream.fileno()).st_size
    if opts["tag"]:
        query["t"] = opts["tag"]
    if opts["build_arg"]:
        args_map = {}
        for item in opts["build_arg"]:
            key, eq, value = item.partition("=")
            if eq:
                args_map[key] = value
            elif key in cli.environ:
                args_map[key] = cli.environ[key]
        query["buildargs"] = go_json(args_map)
    if opts["label"]:
        query["labels"] = go_json(dict(lbl.partition("=")[::2] for lbl in opts["label"]))
    if opts["cache_from"]:
        query["cachefrom"] = go_json(opts["cache_from"])
    if opts["add_host"]:
        query["extrahosts"] = opts["add_host"]
    if opts["target"]:
        query["target"] = opts["target"]
    if opts["no_cache"]:
        query["nocache"] = 1
    if opts["pull"]:
        query["pull"] = 1
    if opts["quiet"]:
        query["q"] = 1
    if not opts["rm"]:
        query["rm"] = 0
    if opts["force_rm"]:
        query["forcerm"] = 1
    if opts["network"] and opts["network"] != "default":
        query["networkmode"] = opts["network"]
    if opts["platform"]:
        query["platform"] = opts["platform"]
    query["version"] = "1"
    if stream is not None and not opts["quiet"]:
        if size:
            cli.out(f"Sending build context to berth daemon  {human_size(size)}")
    headers = {"Content-Type": "application/x-tar", "X-Registry-Config": "e30="}
    try:
        resp = cli.client.request("POST", "/build", query, stream=stream, headers=headers)
        image_id = ""
        for msg in resp.iter_json():
            if msg.get("errorDetail") or msg.get("error"):
                detail = msg.get("errorDetail") or {}
                cli.stdout.flush()
                raise StatusError(str(detail.get("message") or msg.get("error")),
                                  int(detail.get("code") or 1) if isinstance(
                                      detail.get("code"), int) and detail.get("code") else 1)
            aux = msg.get("aux")
            if isinstance(aux, dict) and aux.get("ID"):
                image_id = aux["ID"]
            if "stream" in msg and not opts["quiet"]:
                cli.stdout.write(str(msg["stream"]))
                cli.stdout.flush()
            elif "status" in msg and not opts["quiet"]:
                cli.out(str(msg["status"]))
    finally:
        if stream is not None and stream is not cli.stdin:
            stream.close()
    if opts["quiet"] and image_id:
        cli.out(image_id)
    if opts["iidfile"] and image_id:
        with open(opts["iidfile"], "w", encoding="utf-8") as fh:
            fh.write(image_id)
    return 0
