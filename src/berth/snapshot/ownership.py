"""Owners in a remapped daemon's writable layer: hand what the daemon wrote to the container.

A build step's COPY, ADD or WORKDIR writes into an overlay as the daemon, with the owners a
Dockerfile names: container IDs (0:0, or ``--chown``'s). In a ``--userns-remap`` daemon every
owner on disk must be a host ID of the mapping instead, or the container could not use the file
and the layer could not be written back (``write_diff`` maps host IDs to container IDs).
``adopt_tree`` shifts every owner of the upper directory that is not one of the mapping's host
IDs yet; what the step copied up from a lower layer is already shifted and stays as it is.
The two sets cannot be confused: a container ID inside the host range has no mapping at all.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from berth.oci.idmap import IdentityMapping

# chown clears these; they are put back as they were
_KEPT_XATTRS = ("security.capability",)


def adopt_tree(root: Path, ids: IdentityMapping) -> None:
    """Shift to the host every owner under ``root`` (itself excluded) that is not yet."""
    if ids.empty:
        return
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            _adopt(os.path.join(dirpath, name), ids)


def _adopt(path: str, ids: IdentityMapping) -> None:
    st = os.lstat(path)
    if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
        return  # an overlay whiteout: the kernel's, written back as it is
    if ids.host_owns(st.st_uid, st.st_gid):
        return
    uid, gid = st.st_uid, st.st_gid
    if not ids.is_host_uid(uid):
        uid = ids.uid_to_host(uid)
    if not ids.is_host_gid(gid):
        gid = ids.gid_to_host(gid)
    link = stat.S_ISLNK(st.st_mode)
    kept = {} if link else _read_xattrs(path)
    os.chown(path, uid, gid, follow_symlinks=False)
    if not link:
        os.chmod(path, stat.S_IMODE(st.st_mode))  # set-id bits, which chown cleared
        for name, value in kept.items():
            os.setxattr(path, name, value)


def _read_xattrs(path: str) -> dict[str, bytes]:
    out = {}
    for name in _KEPT_XATTRS:
        try:
            out[name] = os.getxattr(path, name, follow_symlinks=False)
        except OSError as err:
            if err.errno not in (errno.ENODATA, errno.ENOTSUP):
                raise
    return out
