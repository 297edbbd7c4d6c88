"""The container's filesystem: mounts, device nodes, pivot_root, masked and read-only paths."""

from __future__ import annotations

import errno
import os
import stat

from berth.errors import InvalidArgument, RuntimeFailure
from berth.runtime import syscalls as sc
from berth.runtime.init.config import DEFAULT_DEVICES, Device, Mount
from berth.runtime.syscalls import Syscalls

# option → (flags to set, flags to clear); anything else is passed to the filesystem as data.
_FLAG_OPTIONS: dict[str, tuple[int, int]] = {
    "ro": (sc.MS_RDONLY, 0), "rw": (0, sc.MS_RDONLY),
    "nosuid": (sc.MS_NOSUID, 0), "suid": (0, sc.MS_NOSUID),
    "nodev": (sc.MS_NODEV, 0), "dev": (0, sc.MS_NODEV),
    "noexec": (sc.MS_NOEXEC, 0), "exec": (0, sc.MS_NOEXEC),
    "sync": (sc.MS_SYNCHRONOUS, 0), "async": (0, sc.MS_SYNCHRONOUS),
    "dirsync": (sc.MS_DIRSYNC, 0), "remount": (sc.MS_REMOUNT, 0),
    "mand": (sc.MS_MANDLOCK, 0), "nomand": (0, sc.MS_MANDLOCK),
    "noatime": (sc.MS_NOATIME, 0), "atime": (0, sc.MS_NOATIME),
    "nodiratime": (sc.MS_NODIRATIME, 0), "diratime": (0, sc.MS_NODIRATIME),
    "relatime": (sc.MS_RELATIME, 0), "norelatime": (0, sc.MS_RELATIME),
    "strictatime": (sc.MS_STRICTATIME, 0), "nostrictatime": (0, sc.MS_STRICTATIME),
    "nosymfollow": (sc.MS_NOSYMFOLLOW, 0),
    "bind": (sc.MS_BIND, 0), "rbind": (sc.MS_BIND | sc.MS_REC, 0),
}
PROPAGATION_FLAGS = {
    "private": sc.MS_PRIVATE, "rprivate": sc.MS_PRIVATE | sc.MS_REC,
    "shared": sc.MS_SHARED, "rshared": sc.MS_SHARED | sc.MS_REC,
    "slave": sc.MS_SLAVE, "rslave": sc.MS_SLAVE | sc.MS_REC,
    "unbindable": sc.MS_UNBINDABLE, "runbindable": sc.MS_UNBINDABLE | sc.MS_REC,
}
_NODE_TYPES = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}
_IGNORED_OPTIONS = {"tmpcopyup", "defaults", "rro", "rrw"}
# statvfs f_flag bits → mount flags that a bind remount must repeat or the kernel refuses it.
_LOCKED = ((os.ST_NOSUID, sc.MS_NOSUID), (os.ST_NODEV, sc.MS_NODEV), (os.ST_NOEXEC, sc.MS_NOEXEC),
           (os.ST_NOATIME, sc.MS_NOATIME), (os.ST_NODIRATIME, sc.MS_NODIRATIME),
           (os.ST_RELATIME, sc.MS_RELATIME))


def parse_mount_options(options: tuple[str, ...]) -> tuple[int, int, str]:
    """Mount options → (flags, propagation flags, data string) as mount(2) wants them."""
    flags = propagation = 0
    data: list[str] = []
    for option in options:
        if option in _FLAG_OPTIONS:
            set_, clear = _FLAG_OPTIONS[option]
            flags = (flags | set_) & ~clear
        elif option in PROPAGATION_FLAGS:
            propagation |= PROPAGATION_FLAGS[option]
        elif option not in _IGNORED_OPTIONS:
            data.append(option)
    return flags, propagation, ",".join(data)


def secure_join(root: str, unsafe: str) -> str:
    """``root/unsafe`` with every symlink resolved as if ``root`` were ``/``.

    A symlink in an image (``/etc -> /host/etc`` or ``../../..``) can never lead a mount point
    or device node outside the rootfs.
    """
    root = os.path.normpath(root)
    pending = [p for p in unsafe.split("/") if p]
    done: list[str] = []
    links = 0
    while pending:
        part = pending.pop(0)
        if part == ".":
            continue
        if part == "..":
            if done:
                done.pop()
            continue
        candidate = os.path.join(root, *done, part)
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            done.append(part)
            continue
        if not stat.S_ISLNK(st.st_mode):
            done.append(part)
            continue
        links += 1
        if links > 255:
            raise InvalidArgument(f"too many levels of symbolic links in {unsafe}")
        target = os.readlink(candidate)
        if target.startswith("/"):
            done = []
        pending = [p for p in target.split("/") if p] + pending
    return os.path.join(root, *done)


def _mkdir_p(path: str) -> None:
    try:
        os.makedirs(path, 0o755, exist_ok=True)
    except OSError as err:
        raise RuntimeFailure(f"mkdir {path}: {err.strerror}") from err


def _touch(path: str) -> None:
    _mkdir_p(os.path.dirname(path))
    if not os.path.exists(path):
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))


def locked_flags(path: str) -> int:
    """The per-mount flags already on ``path`` that a bind remount has to keep."""
    try:
        f_flag = os.statvfs(path).f_flag
    except OSError:
        return 0
    return sum(ms for st, ms in _LOCKED if f_flag & st)


def remount_readonly(sys: Syscalls, path: str, rec: bool = False) -> None:
    flags = sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | (sc.MS_REC if rec else 0)
    sys.mount(None, path, None, flags | locked_flags(path), None)


def mount_entry(
    sys: Syscalls, rootfs: str, bundle: str, m: Mount, cgroup_dirs: dict[str, str]
) -> None:
    """Perform one ``mounts`` entry below ``rootfs`` (host path, before pivot_root)."""
    dest = secure_join(rootfs, m.destination)
    flags, propagation, data = parse_mount_options(m.options)
    if m.type == "cgroup" or m.type == "cgroup2":
        _mount_cgroups(sys, dest, flags, cgroup_dirs)
        return
    if m.type == "bind" or flags & sc.MS_BIND:
        source = m.source if m.source.startswith("/") else os.path.join(bundle, m.source)
        if os.path.isdir(source):
            _mkdir_p(dest)
        else:
            _touch(dest)
        sys.mount(source, dest, None, sc.MS_BIND | (flags & sc.MS_REC), None)
        # The bind itself ignores ro/nosuid/...: they take effect only through a remount.
        extra = flags & ~(sc.MS_BIND | sc.MS_REC | sc.MS_REMOUNT)
        if extra:
            sys.mount(None, dest, None,
                      sc.MS_BIND | sc.MS_REMOUNT | extra | locked_flags(dest), None)
    else:
        _mkdir_p(dest)
        sys.mount(m.source or m.type, dest, m.type, flags, data or None)
    if propagation:
        sys.mount(None, dest, None, propagation, None)


def _mount_cgroups(sys: Syscalls, dest: str, flags: int, cgroup_dirs: dict[str, str]) -> None:
    """Show the container its own cgroup: each host group dir bound where its hierarchy goes."""
    _mkdir_p(dest)
    readonly = flags & sc.MS_RDONLY
    base = sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC
    if "" in cgroup_dirs:  # v2: the group itself is the whole hierarchy
        sys.mount(cgroup_dirs[""], dest, None, sc.MS_BIND | sc.MS_REC, None)
        if readonly:
            remount_readonly(sys, dest)
        return
    sys.mount("tmpfs", dest, "tmpfs", base, "mode=755")
    for name, host_dir in sorted(cgroup_dirs.items()):
        target = os.path.join(dest, name)
        _mkdir_p(target)
        sys.mount(host_dir, target, None, sc.MS_BIND | sc.MS_REC, None)
        if readonly:
            remount_readonly(sys, target)
    if readonly:
        sys.mount(None, dest, None, sc.MS_REMOUNT | sc.MS_RDONLY | base, "mode=755")


def create_devices(sys: Syscalls, rootfs: str, devices: tuple[Device, ...]) -> None:
    """mknod the spec's devices plus runc's defaults; bind the host node if mknod is refused."""
    listed = {d.path for d in devices}
    defaults = tuple(Device(p, t, ma, mi) for p, t, ma, mi in DEFAULT_DEVICES if p not in listed)
    for dev in (*devices, *defaults):
        dest = secure_join(rootfs, dev.path)
        if os.path.lexists(dest):
            continue
        _mkdir_p(os.path.dirname(dest))
        kind = _NODE_TYPES[dev.type]
        try:
            sys.mknod(dest, kind | (dev.file_mode & 0o7777), os.makedev(dev.major, dev.minor))
        except PermissionError:
            _touch(dest)
            sys.mount(dev.path, dest, None, sc.MS_BIND, None)
            continue
        os.chmod(dest, dev.file_mode & 0o7777)  # mknod's mode went through the umask
        os.chown(dest, dev.uid, dev.gid)


def create_dev_links(rootfs: str, with_ptmx: bool) -> None:
    """/dev/fd and the stdio links every program expects; ptmx goes to the private devpts."""
    links = [("/proc/self/fd", "/dev/fd"), ("/proc/self/fd/0", "/dev/stdin"),
             ("/proc/self/fd/1", "/dev/stdout"), ("/proc/self/fd/2", "/dev/stderr")]
    if with_ptmx:
        links.append(("pts/ptmx", "/dev/ptmx"))
    if os.path.exists("/proc/kcore"):  # runc's rule (crun adds it always)
        links.append(("/proc/kcore", "/dev/core"))
    for target, name in links:
        dest = secure_join(rootfs, name)
        if with_ptmx and name == "/dev/ptmx" and os.path.lexists(dest):
            os.unlink(dest)
        try:
            os.symlink(target, dest)
        except FileExistsError:
            pass


def pivot_root(sys: Syscalls, rootfs: str) -> None:
    """pivot_root(".", ".") stacks the old root on the new one; detaching it drops the host view."""
    sys.chdir(rootfs)
    sys.pivot_root(".", ".")
    # Keep the detach from propagating to the host (the old root may have shared mounts).
    sys.mount(None, ".", None, sc.MS_SLAVE | sc.MS_REC, None)
    sys.umount2(".", sc.MNT_DETACH)
    sys.chdir("/")


def mask_paths(sys: Syscalls, paths: tuple[str, ...]) -> None:
    """/dev/null over files, an empty read-only tmpfs over directories (after pivot_root)."""
    for path in paths:
        try:
            is_dir = os.path.isdir(path) and not os.path.islink(path)
            if is_dir:
                sys.mount("tmpfs", path, "tmpfs", sc.MS_RDONLY, None)
            elif os.path.lexists(path):
                sys.mount("/dev/null", path, None, sc.MS_BIND, None)
        except OSError as err:
            if err.errno not in (errno.ENOENT, errno.ENOTDIR):
                raise


def readonly_paths(sys: Syscalls, paths: tuple[str, ...]) -> None:
    """Bind each path onto itself, then remount the bind read-only (after pivot_root)."""
    for path in paths:
        if not os.path.lexists(path):
            continue
        sys.mount(path, path, None, sc.MS_BIND | sc.MS_REC, None)
        remount_readonly(sys, path, rec=True)


def write_sysctls(sysctls: tuple[tuple[str, str], ...]) -> None:
    for key, value in sysctls:
        path = "/proc/sys/" + key.replace(".", "/")
        try:
            with open(path, "w") as f:
                f.write(value)
        except OSError as err:
            raise RuntimeFailure(f"write sysctl key {key}: {err.strerror}") from err
