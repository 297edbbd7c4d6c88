"""Resolve ``--user`` inside a container's root filesystem, as Docker does.

The spec is ``name|uid[:group|gid]``. Names are looked up in the container's ``/etc/passwd``
and ``/etc/group`` — never the host's — and those paths are resolved with every symlink
interpreted relative to the rootfs, so a hostile image cannot point them at host files.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import NamedTuple

from berth.errors import FailedPrecondition, InvalidArgument

MAX_ID = 2**31 - 1
_MAX_SYMLINKS = 40


class ResolvedUser(NamedTuple):
    """The process identity for the runtime spec (also unpacks as a 4-tuple)."""

    uid: int
    gid: int
    additional_gids: tuple[int, ...]
    home: str


class _PasswdEntry(NamedTuple):
    name: str
    uid: int
    gid: int
    home: str


class _GroupEntry(NamedTuple):
    name: str
    gid: int
    members: tuple[str, ...]


def open_in_root(root: str, path: str) -> int:
    """Open ``path`` for reading as if ``root`` were ``/``; returns a file descriptor.

    Each component is opened with O_NOFOLLOW relative to its parent; symlinks are read and
    re-walked inside the root (absolute ones from the root, ``..`` never climbs above it).
    Raises FileNotFoundError (or another OSError) like ``open`` would.
    """
    root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    stack = [root_fd]  # open directory fds from the root to the current directory
    try:
        todo = [p for p in path.split("/") if p]
        todo.reverse()
        links = 0
        while todo:
            name = todo.pop()
            if name == ".":
                continue
            if name == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                continue
            fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=stack[-1])
            mode = os.fstat(fd).st_mode
            if stat.S_ISLNK(mode):
                os.close(fd)
                links += 1
                if links > _MAX_SYMLINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
                target = os.readlink(name, dir_fd=stack[-1])
                if target.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop())
                parts = [p for p in target.split("/") if p]
                todo.extend(reversed(parts))
                continue
            if todo and not stat.S_ISDIR(mode):
                os.close(fd)
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
            stack.append(fd)
        if len(stack) == 1:
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        # Re-open the final O_PATH descriptor for reading through /proc/self/fd.
        return os.open(f"/proc/self/fd/{stack[-1]}", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        for fd in stack:
            os.close(fd)


def _read_in_root(root: str, path: str) -> str | None:
    """The file's text, or None when it does not exist in the rootfs."""
    if not os.path.isdir(root):
        raise FailedPrecondition(f"container root filesystem {root} does not exist")
    try:
        fd = open_in_root(root, path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as err:
        raise FailedPrecondition(f"unable to read {path} in the container: {err.strerror}") from err
    with os.fdopen(fd, encoding="utf-8", errors="replace") as f:
        return f.read()


def _int_or_none(text: str) -> int | None:
    text = text.strip()
    if not text or not (text.isdigit() or (text[0] == "-" and text[1:].isdigit())):
        return None
    return int(text)


def _parse_passwd(text: str) -> list[_PasswdEntry]:
    entries = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        parts += [""] * (7 - len(parts))
        uid, gid = _int_or_none(parts[2]), _int_or_none(parts[3])
        entries.append(_PasswdEntry(parts[0], uid or 0, gid or 0, parts[5]))
    return entries


def _parse_group(text: str) -> list[_GroupEntry]:
    entries = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        parts += [""] * (4 - len(parts))
        members = tuple(m for m in parts[3].split(",") if m)
        entries.append(_GroupEntry(parts[0], _int_or_none(parts[2]) or 0, members))
    return entries


def _check_range(value: int) -> int:
    if not 0 <= value <= MAX_ID:
        raise InvalidArgument(f"uids and gids must be in range 0-{MAX_ID}")
    return value


def resolve_user(rootfs: str, user: str, group_add: tuple[str, ...] = ()) -> ResolvedUser:
    """Docker's ``--user`` (and ``--group-add``) resolution against the rootfs.

    Defaults: uid 0, gid 0, home ``/``. A numeric uid needs no passwd entry; a name does
    (``unable to find user xyz: no matching entries in passwd file``). With a named or found
    user and no explicit group, the groups listing the user become supplementary gids; the
    primary gid always is one.
    """
    user_part, _, group_part = user.partition(":")
    passwd_text = _read_in_root(rootfs, "/etc/passwd")
    group_text = _read_in_root(rootfs, "/etc/group")
    users = _parse_passwd(passwd_text) if passwd_text is not None else []
    groups = _parse_group(group_text) if group_text is not None else []

    uid_arg = _int_or_none(user_part)
    uid, gid, home = 0, 0, "/"
    matched_name = ""
    if user_part == "":
        found = [u for u in users if u.uid == 0]
    elif uid_arg is not None:
        found = [u for u in users if u.uid == uid_arg]
    else:
        found = [u for u in users if u.name == user_part]
    if found:
        matched_name, uid, gid, home = found[0]
    elif user_part:
        if uid_arg is None:
            raise FailedPrecondition(
                f"unable to find user {user_part}: no matching entries in passwd file"
            )
        uid = _check_range(uid_arg)

    additional: list[int] = []
    if group_part:
        gid_arg = _int_or_none(group_part)
        if gid_arg is not None:
            match = [g for g in groups if g.gid == gid_arg]
        else:
            match = [g for g in groups if g.name == group_part]
        if match:
            gid = match[0].gid
        elif gid_arg is None:
            raise FailedPrecondition(
                f"unable to find group {group_part}: no matching entries in group file"
            )
        else:
            gid = _check_range(gid_arg)
    elif matched_name:
        additional = [g.gid for g in groups if matched_name in g.members]

    for extra in group_add:
        extra_gid = _int_or_none(extra)
        match = [
            g for g in groups if g.name == extra or (g.gid == extra_gid and extra_gid is not None)
        ]
        if match:
            additional.append(match[0].gid)
        elif extra_gid is not None:
            additional.append(_check_range(extra_gid))
        else:
            raise FailedPrecondition(
                f"Unable to find group {extra}: no matching entries in group file"
            )

    # the primary group is a supplementary group too, as dockerd 20.10.18+ sets it (the fix for
    # CVE-2022-36109: a process must not shed its own group with setgroups)
    deduped = tuple(dict.fromkeys([gid, *additional]))
    return ResolvedUser(uid=uid, gid=gid, additional_gids=deduped, home=home or "/")
