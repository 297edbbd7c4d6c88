"""The ``local`` volume driver: a directory ``volumes/<name>/_data`` under the data root.

With options (``type``, ``device``, ``o``) the directory is a mount point instead, as with
Docker's local driver: ``type=tmpfs`` mounts a tmpfs, ``type=none,o=bind,device=/path`` binds a
host directory. Such a volume is mounted when a container first uses it and unmounted when the
volume is removed or the daemon stops (running containers keep their own reference).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from berth.errors import BerthError, Conflict, InvalidArgument, NotFound
from berth.snapshot.mount import Mount, is_mounted, mount_all, unmount

log = logging.getLogger(__name__)

DRIVER = "local"
_VALID_OPTS = ("type", "device", "o", "size")
# an option that needs others beside it (Docker's mandatoryOpts)
_REQUIRED_WITH = {"device": ("type",), "type": ("device",), "o": ("device", "type")}


def validate_options(name: str, opts: Mapping[str, str]) -> None:
    for key in opts:
        if key not in _VALID_OPTS:
            raise InvalidArgument(f'create {name}: invalid option: "{key}"')
    for key, needed in _REQUIRED_WITH.items():
        if key in opts:
            for other in needed:
                if other not in opts:
                    raise InvalidArgument(f'create {name}: missing required option: "{other}"')


class LocalDriver:
    def __init__(self, root: Path, owner: tuple[int, int] = (0, 0)) -> None:
        """``owner``: of each volume's ``_data`` (a ``--userns-remap`` daemon's root)."""
        self.root = root
        self._owner = owner
        root.mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o701)

    def path(self, name: str) -> Path:
        return self.root / name / "_data"

    def create(self, name: str, opts: Mapping[str, str]) -> Path:
        validate_options(name, opts)
        data = self.path(name)
        data.parent.mkdir(mode=0o701, exist_ok=True)
        data.mkdir(mode=0o755, exist_ok=True)
        os.chmod(data, 0o755)  # never the daemon's umask
        if self._owner != (0, 0):
            os.chown(data, *self._owner)
        return data

    def mount(self, name: str, opts: Mapping[str, str]) -> Path:
        """Make the volume's data reachable at ``path(name)``; a no-op without options."""
        data = self.path(name)
        if not opts.get("type") or is_mounted(data):
            return data
        fstype, device = opts["type"], opts.get("device", "")
        options = tuple(o for o in opts.get("o", "").split(",") if o)
        if fstype == "none" or "bind" in options or "rbind" in options:
            if not os.path.exists(device):
                raise NotFound(f"error while mounting volume '{data}': failed to mount local "
                               f"volume: mount {device}:{data}, flags: 0x1000: "
                               "no such file or directory")
            if not any(o in ("bind", "rbind") for o in options):
                options = ("bind", *options)
            mount = Mount("bind", device, data, options)
        else:
            mount = Mount(fstype, device or fstype, data, options)
        try:
            mount_all([mount])
        except BerthError as err:
            raise InvalidArgument(f"error while mounting volume '{data}': failed to mount "
                                  f"local volume: {err}") from err
        return data

    def unmount(self, name: str) -> None:
        data = self.path(name)
        for _ in range(8):  # stacked mounts, should a crash have left one behind
            if not (data.exists() and is_mounted(data)):
                return
            with contextlib.suppress(NotFound):
                unmount(data, detach=True)

    def remove(self, name: str) -> None:
        self.unmount(name)
        if self.path(name).exists() and is_mounted(self.path(name)):
            # never delete through a mount: a bind volume's device is the user's data
            raise Conflict(f"remove {name}: volume data is still mounted")
        shutil.rmtree(self.root / name, ignore_errors=True)

    def is_empty(self, name: str) -> bool:
        try:
            with os.scandir(self.path(name)) as it:
                return next(it, None) is None
        except FileNotFoundError:
            return True

    def size(self, name: str) -> int:
        total = 0
        for dirpath, _dirs, files in os.walk(self.path(name)):
            for f in files:
                with contextlib.suppress(OSError):
                    total += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
        return total
