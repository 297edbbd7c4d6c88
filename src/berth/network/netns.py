"""Network namespaces as bind-mounted files, made without forking the daemon.

A thread may change its own network namespace (``unshare``/``setns`` with CLONE_NEWNET act on
the calling thread only), so a worker thread makes a namespace, pins it with a bind mount of
``/proc/thread-self/ns/net`` and returns to the daemon's namespace. Sockets keep the namespace
they were made in, which is how the daemon speaks netlink or serves DNS inside a container.
Call these from a worker thread (``asyncio.to_thread``), never from the event loop's thread.

A remapped container (``--userns-remap``) needs its network namespace to belong to its user
namespace: sysfs and the ``net.*`` sysctls are refused otherwise. A thread of a threaded process
cannot make a user namespace, so ``create_userns_netns`` forks a short-lived child that does,
maps it from here and pins both; the container's runtime then joins the pair.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from berth.errors import Internal, NotFound
from berth.oci.idmap import IdentityMapping
from berth.snapshot.mount import Mount, mount_all, unmount

_CLONE_NEWNET = 0x40000000
_CLONE_NEWUSER = 0x10000000


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        code = ctypes.get_errno()
        raise Internal(f"{what}: {os.strerror(code)}")


@contextlib.contextmanager
def _entered(target_fd: int) -> Iterator[None]:
    """Run the block with this thread in the namespace of ``target_fd``."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(_libc().setns(target_fd, _CLONE_NEWNET), "setns")
        try:
            yield
        finally:
            # a thread left in a container's namespace would poison every later job on it
            if _libc().setns(home, _CLONE_NEWNET) != 0:
                raise SystemExit("berthd: cannot return to the host network namespace")
    finally:
        os.close(home)


def create_netns(path: Path) -> None:
    """A new, empty network namespace pinned at ``path`` (lo down, as the kernel makes it)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o711)
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
    os.close(fd)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            _check(_libc().unshare(_CLONE_NEWNET), "unshare(CLONE_NEWNET)")
            try:
                mount_all([Mount("bind", "/proc/thread-self/ns/net", path, ("bind",))])
            finally:
                if _libc().setns(home, _CLONE_NEWNET) != 0:
                    raise SystemExit("berthd: cannot return to the host network namespace")
        except BaseException:
            path.unlink(missing_ok=True)
            raise
    finally:
        os.close(home)


def create_userns_netns(net_path: Path, user_path: Path, ids: IdentityMapping) -> None:
    """A new user namespace mapped by ``ids`` and a network namespace it owns, pinned at
    ``user_path`` and ``net_path``. Forks once (the child only unshares and waits)."""
    for path in (net_path, user_path):
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o711)
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444))
    libc = _libc()  # loaded before the fork: the child must not dlopen
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    done_r, done_w = os.pipe2(os.O_CLOEXEC)
    try:
        pid = os.fork()
    except BaseException:
        for fd in (ready_r, ready_w, done_r, done_w):
            os.close(fd)
        raise
    if pid == 0:  # the child: system calls only, then _exit
        code = 0
        try:
            os.close(ready_r)
            os.close(done_w)  # else our own copy would keep the parent's close from reaching us
            if libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNET) != 0:
                code = ctypes.get_errno() or 1
            os.write(ready_w, str(code).encode())
            os.read(done_r, 1)
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(done_r)
    pinned: list[Path] = []
    try:
        answer = os.read(ready_r, 16)
        if answer != b"0":
            code = int(answer or b"0") or 1
            raise Internal(f"unshare(CLONE_NEWUSER|CLONE_NEWNET): {os.strerror(code)}")
        # written by us, root of the parent namespace: no setgroups restriction is needed
        for kind in ("uid", "gid"):
            with open(f"/proc/{pid}/{kind}_map", "w") as f:
                f.write(ids.proc_text(kind))
        for ns, path in (("user", user_path), ("net", net_path)):
            mount_all([Mount("bind", f"/proc/{pid}/ns/{ns}", path, ("bind",))])
            pinned.append(path)
    except BaseException:
        for path in (net_path, user_path):
            if path in pinned:
                with contextlib.suppress(NotFound):
                    unmount(path, detach=True)
            path.unlink(missing_ok=True)
        raise
    finally:
        os.close(ready_r)
        os.close(done_w)  # the child's read returns: it exits
        os.waitpid(pid, 0)


def delete_netns(path: Path) -> None:
    """Unpin the namespace; the kernel destroys it (and its veth end) once no process holds it.
    Unpins a user namespace just the same."""
    with contextlib.suppress(NotFound):
        unmount(path, detach=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def netns_socket(path: Path, family: int, kind: int, proto: int = 0) -> socket.socket:
    """A socket that lives in the namespace pinned at ``path``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as err:
        raise NotFound(f"network namespace {path} does not exist") from err
    try:
        with _entered(fd):
            return socket.socket(family, kind | socket.SOCK_CLOEXEC, proto)
    finally:
        os.close(fd)


def open_netns(path: Path) -> int:
    """An fd of the namespace at ``path`` (the caller closes it)."""
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as err:
        if err.errno == errno.ENOENT:
            raise NotFound(f"network namespace {path} does not exist") from err
        raise


def is_netns(path: Path) -> bool:
    """Whether ``path`` still pins a namespace (after a reboot the mount is gone)."""
    try:
        return os.stat(path).st_dev != os.stat(path.parent).st_dev
    except OSError:
        return False
