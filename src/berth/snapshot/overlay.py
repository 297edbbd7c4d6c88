"""Overlay root file systems: describe them as ``Mount`` records, then set them up and tear down.

``overlay_mounts`` is pure. ``prepare_rootfs``/``release_rootfs`` lay out a container's
writable layer (``upper/``, ``work/``, ``rootfs/`` under its directory) and go through
``mount.py`` for the system calls.

The options pin what ``write_diff`` relies on: ``index=off``, ``metacopy=off`` and
``redirect_dir=off`` whatever the host's defaults, so an upper directory always holds whole
files and plain directories. ``volatile`` skips the ``syncfs`` an unmount otherwise runs (see
notes/runtime-floor.md); it is only for writable layers that may be lost in a host crash
(``--rm`` containers, build steps), so callers opt in.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from pathlib import Path

from berth.errors import FailedPrecondition, InvalidArgument, NotFound
from berth.snapshot.mount import Mount, is_mounted, mount_all, unmount

log = logging.getLogger(__name__)

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
_VOLATILE_STAMP = "volatile-boot-id"


def overlay_mounts(
    lower_dirs: list[Path],
    upper: Path,
    work: Path,
    target: Path,
    *,
    volatile: bool = False,
) -> list[Mount]:
    """The mounts that make ``target`` show ``upper`` over ``lower_dirs`` (top layer first).

    With no lower layer (an image without layers) the upper directory is bind-mounted: there is
    nothing to hide, so no whiteouts are needed and ``write_diff`` of ``upper`` still works.
    Many lowers are fine: ``mount_all`` switches to one ``lowerdir+`` per layer when the
    option string outgrows a page.
    """
    for path in (*lower_dirs, upper, work):
        text = str(path)
        if any(c in text for c in ",:\n") or not text.startswith("/"):
            raise InvalidArgument(
                f"invalid overlay directory {text!r}: must be absolute, no , or :"
            )
    if not lower_dirs:
        return [Mount("bind", str(upper), Path(target), ("bind", "rw"))]
    options = [
        "lowerdir=" + ":".join(str(p) for p in lower_dirs),
        f"upperdir={upper}",
        f"workdir={work}",
        "index=off",
        "metacopy=off",
        "redirect_dir=off",
    ]
    if volatile:
        options.append("volatile")
    return [Mount("overlay", "overlay", Path(target), tuple(options))]


def prepare_rootfs(lowers: list[Path], container_dir: Path, *, volatile: bool = False,
                   owner: tuple[int, int] = (0, 0)) -> Path:
    """Create ``upper/ work/ rootfs/`` under ``container_dir`` and mount the overlay on rootfs.

    Returns the rootfs path. A rootfs that is already mounted is returned as is. ``owner``
    owns ``upper`` and ``work``: the container's root, whose "/" it is (remapped or not).
    """
    container_dir = Path(container_dir)
    upper, work, rootfs = (container_dir / n for n in ("upper", "work", "rootfs"))
    for d in (upper, work, rootfs):
        if not d.exists():
            d.mkdir(parents=True)
            # upper's own mode is the container's "/" mode: never the daemon's umask
            os.chmod(d, 0o755)
            if d is not rootfs and owner != (0, 0):
                os.chown(d, *owner)
    if is_mounted(rootfs):
        return rootfs
    _clear_volatile_marker(container_dir, work)
    mounts = overlay_mounts(lowers, upper, work, rootfs, volatile=volatile)
    if volatile and lowers:
        (container_dir / _VOLATILE_STAMP).write_text(_BOOT_ID.read_text())
    mount_all(mounts)
    return rootfs


def release_rootfs(container_dir: Path, *, remove: bool = False, detach: bool = False) -> None:
    """Unmount the container's rootfs if mounted; with ``remove``, delete its writable layer."""
    container_dir = Path(container_dir)
    rootfs = container_dir / "rootfs"
    if rootfs.exists() and is_mounted(rootfs):
        with contextlib.suppress(NotFound):  # unmounted by someone else meanwhile
            unmount(rootfs, detach=detach)
    if remove:
        for name in ("upper", "work", "rootfs"):
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(container_dir / name)
        (container_dir / _VOLATILE_STAMP).unlink(missing_ok=True)


def _clear_volatile_marker(container_dir: Path, work: Path) -> None:
    """A volatile overlay leaves ``work/work/incompat/volatile`` and the kernel then refuses to
    mount again. In the same boot nothing was lost (the page cache still holds the data), so
    the marker may go; after a reboot the upper directory cannot be trusted.
    """
    marker = work / "work" / "incompat" / "volatile"
    if not marker.exists():
        return
    stamp = container_dir / _VOLATILE_STAMP
    recorded = stamp.read_text() if stamp.exists() else ""
    if recorded != _BOOT_ID.read_text():
        raise FailedPrecondition(
            f"the writable layer in {container_dir} was mounted volatile before a host restart;"
            " its content may be incomplete and it must be discarded"
        )
    shutil.rmtree(marker)
