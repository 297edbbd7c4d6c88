"""``cp``: files between a container and the local filesystem, as tar streams (captures 31, 32).

To a container: ``HEAD …/archive?path=DEST`` (404 → DEST is a new name), then ``PUT`` the tar
into DEST's directory, the top entry renamed as needed. From a container: ``GET …/archive``;
``-`` as destination writes the tar itself to stdout.
"""

from __future__ import annotations

import os

from berth.cli.client import ApiError
from berth.cli.context import StatusError
from berth.cli.flags import Command, Flag

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Any

    from berth.cli.context import Cli

CP = Command("cp", "cp [OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-\n\tberth cp [OPTIONS] SRC_PATH|- "
             "CONTAINER:DEST_PATH",
             "Copy files/folders between a container and the local filesystem", [
                 Flag("archive", "a", help="Archive mode (copy all uid/gid information)"),
                 Flag("follow-link", "L", help="Always follow symbol link in SRC_PATH"),
                 Flag("quiet", "q", help="Suppress progress output during copy"),
             ], min_args=2, max_args=2, aliases=("container cp", "cp"))


def split_target(arg: str) -> tuple[str, str]:
    """``name:/path`` → (name, path); a local path (``./a:b``, ``/x``) → ("", arg)."""
    if arg.startswith((".", "/")) or ":" not in arg:
        return "", arg
    name, _, path = arg.partition(":")
    return name, path


def cp(cli: Cli, argv: list[str]) -> int:
    opts, args = cli.parse(CP, argv)
    src_ctr, src = split_target(args[0])
    dst_ctr, dst = split_target(args[1])
    if src_ctr and dst_ctr:
        raise StatusError("copying between containers is not supported", 1)
    if not src_ctr and not dst_ctr:
        raise StatusError("must specify at least one container source", 1)
    if src_ctr:
        return _from_container(cli, src_ctr, src, dst, opts)
    return _to_container(cli, src, dst_ctr, dst, opts)


def _stat(cli: Cli, name: str, path: str) -> dict[str, Any] | None:
    import base64
    import json

    resp = cli.client.request("HEAD", f"/containers/{name}/archive", {"path": path}, ok=(404,))
    if resp.status == 404:
        return None
    header = resp.headers.get("x-docker-container-path-stat")
    if not header:
        return {}
    doc = json.loads(base64.b64decode(header))
    return doc if isinstance(doc, dict) else {}


def _to_container(cli: Cli, src: str, name: str, dst: str, opts: dict[str, Any]) -> int:
    query: dict[str, Any] = {"noOverwriteDirNonDir": "true"}
    if opts["archive"]:
        query["copyUIDGID"] = "true"
    if src == "-":
        query["path"] = dst
        cli.client.request("PUT", f"/containers/{name}/archive", query, stream=cli.stdin,
                           headers={"Content-Type": "text/plain"}).read()
        return 0
    if not os.path.lexists(src):
        raise StatusError(f"lstat {os.path.abspath(src)}: no such file or directory", 1)
    stat = _stat(cli, name, dst)
    dst_is_dir = stat is not None and bool(int(stat.get("mode", 0)) & (1 << 31))
    src_base = os.path.basename(src.rstrip("/")) or "."
    contents_only = src.endswith("/.") and os.path.isdir(src)
    if stat is not None and dst_is_dir:
        target_dir, arcname = dst, src_base
    else:
        if dst.endswith(("/", "/.")) and stat is None and not os.path.isdir(src):
            # docker's CLI: a file cannot make the directory a trailing slash asks for
            raise StatusError("no such directory", 1)
        target_dir = os.path.dirname(dst.rstrip("/")) or "/"
        arcname = os.path.basename(dst.rstrip("/"))
    data = _tar_local(src, "" if contents_only else arcname, opts["follow_link"])
    query["path"] = target_dir if not contents_only else dst
    try:
        cli.client.request("PUT", f"/containers/{name}/archive", query, stream=data,
                           headers={"Content-Type": "text/plain"}).read()
    finally:
        data.close()
    return 0


def _tar_local(src: str, arcname: str, follow: bool) -> IO[bytes]:
    import tarfile
    import tempfile

    out = tempfile.TemporaryFile()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT,
                      dereference=follow) as tar:
        if arcname:
            tar.add(src, arcname=arcname)
        else:
            for entry in sorted(os.listdir(src)):
                tar.add(os.path.join(src, entry), arcname=entry)
    out.seek(0)
    return out


def _from_container(cli: Cli, name: str, src: str, dst: str, opts: dict[str, Any]) -> int:
    rebase = ""
    if opts["follow_link"]:
        # -L: copy what a symlink points to, named as the link (Docker's GetRebaseName)
        stat = _stat(cli, name, src)
        if stat and int(stat.get("mode", 0)) & (1 << 27) and stat.get("linkTarget"):
            rebase = os.path.basename(src.rstrip("/"))
            src = str(stat["linkTarget"])
    try:
        resp = cli.client.request("GET", f"/containers/{name}/archive", {"path": src})
    except ApiError as exc:
        raise StatusError(f"Error response from daemon: {exc.message}", 1) from None
    if dst == "-":
        out = getattr(cli.stdout, "buffer", None)
        cli.stdout.flush()
        for data in resp.iter_raw():
            if out is not None:
                out.write(data)
        if out is not None:
            out.flush()
        return 0
    import tarfile
    import tempfile

    with tempfile.TemporaryFile() as spool:
        for data in resp.iter_raw():
            spool.write(data)
        spool.seek(0)
        if os.path.isdir(dst):
            target, rename = dst, rebase or None
        else:
            parent = os.path.dirname(os.path.abspath(dst))
            if not os.path.isdir(parent):
                raise StatusError(f"destination directory {parent} must exist", 1)
            target, rename = parent, os.path.basename(dst)
        with tarfile.open(fileobj=spool, mode="r") as tar:
            members = tar.getmembers()
            if rename and members:
                root = members[0].name.split("/")[0]
                for m in members:
                    first, sep, rest = m.name.partition("/")
                    if first == root:
                        m.name = rename + (sep + rest if sep else "")
                    elif root == ".":  # "ctr:/" is archived as ".", "bin", ...: all go inside
                        m.name = rename + "/" + m.name
            kwargs: dict[str, Any] = {}
            if hasattr(tarfile, "data_filter"):
                kwargs["filter"] = _extract_filter(bool(opts["archive"]))
            tar.extractall(target, members=members, numeric_owner=True, **kwargs)
    return 0


def _extract_filter(archive: bool) -> Any:
    """Like ``cp -a`` (Docker's CLI): modes and links as they are, owners only with ``-a``;
    nothing may land outside the destination, nor be written through a link the archive made.
    """
    import tarfile

    def check(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
        root = os.path.realpath(dest)
        name = member.name.lstrip("/")
        parent = os.path.realpath(os.path.join(root, os.path.dirname(name)))
        if parent != root and not parent.startswith(root + os.sep):
            raise tarfile.OutsideDestinationError(member, os.path.join(root, name))
        if member.islnk():
            link = os.path.realpath(os.path.join(root, member.linkname.lstrip("/")))
            if link != root and not link.startswith(root + os.sep):
                raise tarfile.LinkOutsideDestinationError(member, link)
        # None = "leave as is" (tarfile's filter protocol; the stubs type it too narrowly)
        keep: dict[str, Any] = {"uname": None, "gname": None}
        if not archive:
            keep.update(uid=None, gid=None)
        return member.replace(name=name, deep=False, **keep)

    return check
