"""``--userns-remap``: which host user lends its subordinate IDs, and where the daemon's state
then lives. Follows dockerd 20.10 step for step, messages included.

The value is ``default``, ``user``, ``user:group``, ``uid`` or ``uid:gid``. ``default`` means
the ``dockremap`` user and group, created on first use (``adduser --system`` or ``useradd -r``,
as dockerd does) with a 65536-ID range in ``/etc/subuid`` and ``/etc/subgid`` (``usermod -v/-w``)
from the first free ID at or above 100000. Every other name must exist. The user's subuid and
the group's subgid ranges become one ``IdentityMapping`` for every container of the daemon.

All state then moves to ``<data-root>/<uid>.<gid>/`` (the host IDs of container root), so
images unpacked with shifted owners never mix with a non-remapped daemon's. Remapping root
to itself turns user namespaces off but keeps the ``0.0`` directory, as dockerd does.
"""

from __future__ import annotations

import grp
import json
import logging
import os
import pwd
import re
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from berth.engine.model import HostConfig
from berth.errors import InvalidArgument
from berth.oci.idmap import (
    IdentityMapping,
    build_mapping,
    next_free_start,
    parse_subid,
    ranges_for,
)

log = logging.getLogger(__name__)

DEFAULT_SPECIFIER = "default"
DEFAULT_REMAP_USER = "dockremap"
RANGE_SIZE = 65536
SUBUID = Path("/etc/subuid")
SUBGID = Path("/etc/subgid")
_NUMBER = re.compile(r"[+-]?[0-9]+")


class RemapError(InvalidArgument):
    """``--userns-remap`` names something that cannot be used; berthd prints it and exits."""


@dataclass(frozen=True)
class RemappedRoot:
    """The resolved ``--userns-remap``: the names and the mapping every container gets.

    ``mapping`` is empty when root was remapped to itself (user namespaces off)."""

    user: str
    group: str
    mapping: IdentityMapping

    @property
    def enabled(self) -> bool:
        return not self.mapping.empty

    @property
    def directory_name(self) -> str:
        uid, gid = self.mapping.root_pair()
        return f"{uid}.{gid}"


@dataclass(frozen=True)
class SubIDFiles:
    """Where subordinate IDs are read (tests point these at their own files)."""

    subuid: Path = SUBUID
    subgid: Path = SUBGID


def _q(text: str) -> str:
    return json.dumps(text)  # Go's %q for the names dockerd quotes


def setup_remapped_root(value: str, files: SubIDFiles = SubIDFiles()) -> RemappedRoot | None:
    """Resolve ``--userns-remap``; None when it is not set. May create ``dockremap``."""
    if not value:
        return None
    user, group = resolve_names(value, files)
    if user == "root":
        log.warning("User namespaces: root cannot be remapped with itself; user namespaces "
                    "are OFF")
        return RemappedRoot(user, group or "root", IdentityMapping())
    log.info("User namespaces: ID ranges will be mapped to subuid/subgid ranges of: %s", user)
    if group is None:  # only for `default`: the group has the user's name
        group = user
    return RemappedRoot(user, group, load_mapping(user, group, files))


def parse_remap(value: str) -> tuple[str, str | None]:
    """``user[:group]`` → its two parts; more colons are dockerd's error."""
    parts = value.split(":")
    if len(parts) > 2:
        raise RemapError(f"Invalid user/group specification in --userns-remap: {_q(value)}")
    return parts[0], parts[1] if len(parts) == 2 else None


def resolve_names(value: str, files: SubIDFiles = SubIDFiles()) -> tuple[str, str | None]:
    """The user and group names ``value`` stands for, looked up as dockerd does.

    The group is None only for ``default`` (``dockremap``'s group, made with the user)."""
    first, second = parse_remap(value)
    group: str | None = None
    if _is_id(first):
        uid = int(first)
        user = _lookup_uid(uid, f"Uid {uid} has no entry in /etc/passwd").pw_name
        if second is None:
            group = _lookup_gid(uid, f"Gid {uid} has no entry in /etc/group").gr_name
    else:
        name = DEFAULT_REMAP_USER if first == DEFAULT_SPECIFIER else first
        try:
            user = pwd.getpwnam(name).pw_name
        except KeyError as err:
            if first != DEFAULT_SPECIFIER:
                raise RemapError(f"Error during uid lookup for {_q(name)}: "
                                 f"{_getent_missing(name, 'passwd')}") from err
            create_remap_user(DEFAULT_REMAP_USER, files)
            return DEFAULT_REMAP_USER, None
        if second is None:
            try:
                group = grp.getgrnam(name).gr_name
            except KeyError as err:
                raise RemapError(f"Error during gid lookup for {_q(name)}: "
                                 f"{_getent_missing(name, 'group')}") from err
    if second is not None:
        if _is_id(second):
            gid = int(second)
            # sic: dockerd names /etc/passwd here
            group = _lookup_gid(gid, f"Gid {gid} has no entry in /etc/passwd").gr_name
        else:
            try:
                group = grp.getgrnam(second).gr_name
            except KeyError as err:
                raise RemapError(f"Error during groupname lookup for {_q(second)}: "
                                 f"{_getent_missing(second, 'group')}") from err
    return user, group


def _is_id(text: str) -> bool:
    return bool(_NUMBER.fullmatch(text)) and -2**31 <= int(text) < 2**31


def _getent_missing(key: str, database: str) -> str:
    return f"getent unable to find entry {_q(key)} in {database} database"


def _lookup_uid(uid: int, prefix: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwuid(uid)
    except (KeyError, OverflowError) as err:
        raise RemapError(f"{prefix}: {_getent_missing(str(uid), 'passwd')}") from err


def _lookup_gid(gid: int, prefix: str) -> grp.struct_group:
    try:
        return grp.getgrgid(gid)
    except (KeyError, OverflowError) as err:
        raise RemapError(f"{prefix}: {_getent_missing(str(gid), 'group')}") from err


def create_remap_user(name: str, files: SubIDFiles = SubIDFiles()) -> None:
    """dockerd's ``AddNamespaceRangesUser``: a system user and group, then ID ranges."""
    if shutil.which("adduser"):
        argv = ["adduser", "--system", "--shell", "/bin/false", "--no-create-home",
                "--disabled-login", "--disabled-password", "--group", name]
    elif shutil.which("useradd"):
        argv = ["useradd", "-r", "-s", "/bin/false", name]
    else:
        raise RemapError(f"Error during {_q(name)} user creation: cannot add user; no "
                         "useradd/adduser binary found")
    _run(argv, name)
    ensure_ranges(name, files)


def ensure_ranges(name: str, files: SubIDFiles = SubIDFiles()) -> None:
    """Give ``name`` a 65536-ID range in each file that has none for it yet."""
    for path, flag in ((files.subuid, "-v"), (files.subgid, "-w")):
        existing = parse_subid(_read(path), str(path))
        if ranges_for(existing, name):
            continue
        start = next_free_start(existing, RANGE_SIZE)
        _run(["usermod", flag, f"{start}-{start + RANGE_SIZE - 1}", name], name)


def _run(argv: list[str], name: str) -> None:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    except OSError as err:
        raise RemapError(f"Error during {_q(name)} user creation: {err}") from err
    if proc.returncode != 0:
        raise RemapError(f"Error during {_q(name)} user creation: {argv[0]} failed: "
                         f"{(proc.stderr or proc.stdout).strip()}")


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def load_mapping(user: str, group: str, files: SubIDFiles = SubIDFiles()) -> IdentityMapping:
    """The user's subuid and the group's subgid ranges (by name or numeric ID)."""
    uid_names = (user, *_ids_of_user(user))
    gid_names = (group, *_ids_of_group(group))
    uids = ranges_for(parse_subid(_read(files.subuid), str(files.subuid)), *uid_names)
    if not uids:
        raise RemapError(f"Can't create ID mappings: no subuid ranges found for user {_q(user)}")
    gids = ranges_for(parse_subid(_read(files.subgid), str(files.subgid)), *gid_names)
    if not gids:
        raise RemapError(
            f"Can't create ID mappings: no subgid ranges found for group {_q(group)}")
    return build_mapping(uids, gids)


def _ids_of_user(name: str) -> tuple[str, ...]:
    try:
        return (str(pwd.getpwnam(name).pw_uid),)
    except KeyError:
        return ()


def _ids_of_group(name: str) -> tuple[str, ...]:
    try:
        return (str(grp.getgrnam(name).gr_gid),)
    except KeyError:
        return ()


# -- the data root ------------------------------------------------------------------------------


def setup_daemon_root(data_root: Path, remap: RemappedRoot | None) -> Path:
    """Create the data root (and ``<uid>.<gid>/`` below it when remapped); returns the
    directory the daemon keeps its state in.

    Remapped, both are 0710 root:<remapped gid>, so container root can reach the layers and
    the container files it must mount, and nobody else can; each directory above must let
    the remapped IDs pass (dockerd's check, and message)."""
    data_root.mkdir(parents=True, exist_ok=True, mode=0o711)
    if remap is None:
        data_root.chmod(0o711)
        return data_root
    uid, gid = remap.mapping.root_pair()
    root = data_root / remap.directory_name
    for path in (data_root, root):
        path.mkdir(exist_ok=True)
        os.chown(path, 0, gid)
        path.chmod(0o710)
    if remap.enabled:
        for parent in root.parents:
            if parent == Path("/"):
                break
            if not _can_traverse(parent, uid, gid):
                raise RemapError(
                    f"a subdirectory in your graphroot path ({root}) restricts access to the "
                    f"remapped root uid/gid; please fix by allowing 'o+x' permissions on "
                    f"existing directories")
    return root


def _can_traverse(path: Path, uid: int, gid: int) -> bool:
    try:
        st = path.stat()
    except OSError:
        return False
    mode = stat.S_IMODE(st.st_mode)
    return bool(mode & 0o001 or (st.st_uid == uid and mode & 0o100)
                or (st.st_gid == gid and mode & 0o010))


# -- containers ---------------------------------------------------------------------------------


def container_is_remapped(remap: RemappedRoot | None, host: HostConfig) -> bool:
    """Whether the container gets a user namespace: remapping on, and not ``--userns=host``."""
    return remap is not None and remap.enabled and host.userns_mode != "host"


def validate_host_config(remap: RemappedRoot | None, host: HostConfig) -> None:
    """dockerd's create-time refusals for a remapped daemon (``--userns=host`` lifts them)."""
    if remap is None or host.userns_mode == "host":
        return
    if host.privileged:
        raise InvalidArgument("privileged mode is incompatible with user namespaces.  You must "
                              "run the container in the host namespace when running "
                              "privileged mode")
    if host.network_mode == "host":
        raise InvalidArgument(
            "cannot share the host's network namespace when user namespaces are enabled")
    if host.pid_mode == "host":
        raise InvalidArgument(
            "cannot share the host PID namespace when user namespaces are enabled")

