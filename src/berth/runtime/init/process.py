"""The container init: what the cloned child does, in order, from clone to exec.

``container_init`` is the one linear recipe; each step says why it sits where it does. It runs
in a child made by a raw clone(2), so it only makes system calls (through ``Syscalls``) and
exits with ``os._exit``: no threads, no at-fork hooks, no signals to itself.
"""

from __future__ import annotations

import array
import fcntl
import os
import signal
import stat
from typing import NamedTuple, NoReturn

from berth.errors import BerthError
from berth.runtime import syscalls as sc
from berth.runtime.init import capabilities as caps
from berth.runtime.init import rootfs
from berth.runtime.init import seccomp as seccomp_filter
from berth.runtime.init.config import Process, Spec
from berth.runtime.init.messages import send, send_error, send_ready, wait_go
from berth.runtime.syscalls import Syscalls

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_TIOCSPTLCK = 0x40045431
_TIOCGPTN = 0x80045430
_TIOCSCTTY = 0x540E


class ExecError(BerthError):
    """The process cannot be started; the text matches runc so the engine can pick 126/127."""


class InitContext(NamedTuple):
    """What the parent prepared before clone; every fd here is O_CLOEXEC."""

    spec: Spec
    to_parent: int
    from_parent: int
    exec_fifo: int  # O_PATH fd of <state>/exec.fifo, reopened for writing through /proc
    console_socket: int | None
    join_namespaces: tuple[tuple[int, int], ...]  # (fd, CLONE_NEW*) entered by setns
    unshare_cgroup: bool
    cgroup_dirs: dict[str, str]


def run_init(ctx: InitContext, sys: Syscalls) -> NoReturn:
    """Child entry point: any failure goes to the parent as text, then the child exits."""
    try:
        container_init(ctx, sys)
    except BaseException as err:  # noqa: BLE001 - everything must reach the parent
        try:
            send_error(ctx.to_parent, _describe(err))
        finally:
            os._exit(1)
    os._exit(1)


def run_intermediate(ctx: InitContext, new_flags: int, to_parent: int, from_parent: int,
                     sys: Syscalls) -> NoReturn:
    """The child between the runtime and an init in a user namespace (runc's stage 1).

    The runtime itself must stay root of the host (cgroups, state files), and a process only
    gets namespaces that belong to a user namespace by creating them *after* entering it; the
    PID namespace then needs one more child to be its PID 1."""
    try:
        # Join by path first, the user namespace before the others, which may belong to it.
        for fd, nstype in ctx.join_namespaces:
            sys.setns(fd, nstype)
            os.close(fd)
        # A new user namespace has no IDs until the runtime writes its maps.
        if new_flags & sc.CLONE_NEWUSER:
            sys.unshare(sc.CLONE_NEWUSER)
            send(to_parent, "map")
            wait_go(from_parent)
        become_userns_root(sys)
        # Every other new namespace now belongs to the user namespace (PID: to our child).
        rest = new_flags & ~sc.CLONE_NEWUSER
        if rest:
            sys.unshare(rest)
        pid = sys.clone(sc.CLONE_PARENT)
        if pid == 0:
            os.close(to_parent)
            os.close(from_parent)
            run_init(ctx._replace(join_namespaces=()), sys)
        send(to_parent, "pid", str(pid))
    except BaseException as err:  # noqa: BLE001 - everything must reach the parent
        try:
            send_error(to_parent, _describe(err))
        finally:
            os._exit(1)
    os._exit(0)


def become_userns_root(sys: Syscalls) -> None:
    """Root of the user namespace just entered: what we create then belongs to its root (an
    unmapped owner could not even be chowned); /proc/self stays ours (a non-dumpable
    process's belongs to the host's root)."""
    sys.setgroups([])
    sys.setresgid(0)
    sys.setresuid(0)
    sys.prctl(sc.PR_SET_DUMPABLE, 1)


def _describe(err: BaseException) -> str:
    if isinstance(err, ExecError):
        return f"unable to start container process: {err}"
    if isinstance(err, OSError) and err.strerror:
        # Our ctypes calls put the call and path in strerror; os.* calls leave them in filename.
        detail = err.strerror
        if err.filename and str(err.filename) not in detail:
            detail = f"{detail}: {err.filename}"
        return f"unable to start container process: error during container init: {detail}"
    return f"unable to start container process: error during container init: {err}"


def container_init(ctx: InitContext, sys: Syscalls) -> None:
    spec = ctx.spec
    proc = spec.process
    root = spec.root_path

    # Join pre-existing namespaces (e.g. the network the engine prepared) before anything sees
    # the mount table, so later mounts land in the right namespace.
    for fd, nstype in ctx.join_namespaces:
        sys.setns(fd, nstype)
        os.close(fd)

    # The parent puts us into the cgroup now; limits must hold before any container code runs.
    wait_go(ctx.from_parent)

    # A cgroup namespace made after joining the group shows the container its own group as "/".
    if ctx.unshare_cgroup:
        sys.unshare(sc.CLONE_NEWCGROUP)

    # Keep our mount events from reaching the host: everything becomes a slave (runc's default).
    propagation = rootfs.PROPAGATION_FLAGS.get(spec.linux.rootfs_propagation,
                                               sc.MS_SLAVE | sc.MS_REC)
    sys.mount(None, "/", None, propagation, None)

    # pivot_root needs the new root to be a mount point; a plain directory becomes one this way.
    sys.mount(root, root, None, sc.MS_BIND | sc.MS_REC, None)

    # oom_score_adj through the host /proc while we still see it.
    if proc.oom_score_adj is not None:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(proc.oom_score_adj))

    # The spec's mounts, in order: later entries may sit on top of earlier ones (/dev, /dev/pts).
    for mount in spec.mounts:
        rootfs.mount_entry(sys, root, spec.bundle, mount, ctx.cgroup_dirs)

    # Device nodes and /dev links go into the fresh /dev tmpfs.
    rootfs.create_devices(sys, root, spec.linux.devices)
    has_devpts = any(m.type == "devpts" and m.destination == "/dev/pts" for m in spec.mounts)
    rootfs.create_dev_links(root, with_ptmx=has_devpts)

    # runc creates a missing cwd as root, before the user switch.
    os.makedirs(rootfs.secure_join(root, proc.cwd), 0o755, exist_ok=True)

    # Swap roots and drop every host mount from view.
    rootfs.pivot_root(sys, root)

    # Identity of the UTS namespace.
    if spec.hostname:
        sys.sethostname(spec.hostname)
    if spec.domainname:
        sys.setdomainname(spec.domainname)

    # sysctls before /proc/sys turns read-only below.
    rootfs.write_sysctls(spec.linux.sysctl)

    # Docker's hardening of /proc and /sys, then the read-only root.
    rootfs.readonly_paths(sys, spec.linux.readonly_paths)
    rootfs.mask_paths(sys, spec.linux.masked_paths)
    if spec.root_readonly:
        rootfs.remount_readonly(sys, "/")

    become_process(proc, sys, ctx.to_parent, ctx.console_socket, ctx.exec_fifo)


def become_process(
    proc: Process, sys: Syscalls, to_parent: int, console_socket: int | None,
    exec_fifo: int | None,
) -> None:
    """The common tail of create and exec: terminal, limits, identity, then exec.

    With ``exec_fifo`` the process waits for ``start`` before exec; without (exec) it goes on.
    """

    # The terminal comes from the container's own devpts, so its slave is visible inside.
    if proc.terminal and console_socket is not None:
        _setup_console(console_socket, proc.user.uid)

    # Limits the process inherits across exec (no CAP_SYS_RESOURCE needed to lower them).
    for limit in proc.rlimits:
        try:
            sys.setrlimit(limit.resource, limit.soft, limit.hard)
        except (OSError, ValueError) as err:
            raise BerthError(f"error setting rlimit type {limit.resource}: {err}") from err

    # Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load it while we still have
    # it (runc's order). Everything below must then be allowed by the profile (Docker's is).
    if proc.seccomp is not None and not proc.no_new_privileges:
        seccomp_filter.install(proc.seccomp)

    # Bounding set first: dropping needs CAP_SETPCAP, which the user switch may take away.
    top = caps.last_cap()
    spec_caps = proc.capabilities
    if spec_caps is not None:
        caps.drop_bounding(sys, spec_caps.bounding, top)
        caps.keep_caps_across_setuid(sys, True)

    # Groups, then gid, then uid: after setuid we could no longer change the others.
    user = proc.user
    sys.setgroups(list(user.additional_gids))
    sys.setresgid(user.gid)
    sys.setresuid(user.uid)
    os.umask(user.umask if user.umask is not None else 0o022)

    # Now the final sets: permitted survived setuid thanks to KEEPCAPS.
    if spec_caps is not None:
        caps.apply_sets(sys, spec_caps.effective, spec_caps.permitted, spec_caps.inheritable,
                        spec_caps.ambient, top)
        caps.keep_caps_across_setuid(sys, False)
    if proc.no_new_privileges:
        sys.prctl(sc.PR_SET_NO_NEW_PRIVS, 1)

    sys.chdir(proc.cwd)

    # Resolve the program as the user, so "not found"/"permission denied" reach create.
    path = resolve_executable(proc.args[0], proc.env_value("PATH"))
    env = dict(item.partition("=")[::2] for item in proc.env)
    if "HOME" not in env:  # runc and crun fill it in from the image's /etc/passwd
        env["HOME"] = home_of(user.uid)

    # Tell the parent we are ready, then block on the fifo until `start` opens it.
    send_ready(to_parent)
    if exec_fifo is not None:
        # setuid cleared "dumpable", hiding /proc/self/fd from a non-root user; exec resets it.
        sys.prctl(sc.PR_SET_DUMPABLE, 1)
        fifo = os.open(f"/proc/self/fd/{exec_fifo}", os.O_WRONLY | os.O_CLOEXEC)
        os.write(fifo, b"0")
        os.close(fifo)
        os.close(exec_fifo)

    # Python starts with SIGPIPE and SIGXFSZ ignored; ignored dispositions survive exec, and
    # `yes | head` must end by SIGPIPE in a container as anywhere else.
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)
    # With no_new_privs the filter can wait until the last moment: only execve runs under it.
    if proc.seccomp is not None and proc.no_new_privileges:
        seccomp_filter.install(proc.seccomp)
    try:
        os.execve(path, list(proc.args), env)
    except OSError as err:
        raise ExecError(f'exec: "{proc.args[0]}": {(err.strerror or "").lower()}') from err


class ExecContext(NamedTuple):
    """What the parent of ``exec`` prepared: the container's namespaces, opened before clone."""

    process: Process
    to_parent: int
    from_parent: int
    console_socket: int | None
    join_namespaces: tuple[tuple[int, int], ...]  # mount last: the others are opened fds


def run_exec(ctx: ExecContext, sys: Syscalls) -> NoReturn:
    """Child entry point of ``exec``: join the running container, become the process."""
    try:
        # Namespaces first (the pid one was entered by the parent, so we are already in it).
        for fd, nstype in ctx.join_namespaces:
            sys.setns(fd, nstype)
            os.close(fd)
        if any(nstype == sc.CLONE_NEWUSER for _, nstype in ctx.join_namespaces):
            become_userns_root(sys)
        # The parent moves us into the container's cgroup before anything runs.
        wait_go(ctx.from_parent)
        # Joining the mount namespace put us at its root; the process's cwd is relative to it.
        become_process(ctx.process, sys, ctx.to_parent, ctx.console_socket, None)
    except BaseException as err:  # noqa: BLE001 - everything must reach the parent
        try:
            send_error(ctx.to_parent, _describe(err))
        finally:
            os._exit(1)
    os._exit(1)


def resolve_executable(arg0: str, path_env: str | None) -> str:
    """Look ``arg0`` up like Go's exec.LookPath, with the container's PATH."""
    if "/" in arg0:
        try:
            st = os.stat(arg0)
        except FileNotFoundError as err:
            raise ExecError(f'exec: "{arg0}": stat {arg0}: no such file or directory') from err
        if stat.S_ISDIR(st.st_mode) or not os.access(arg0, os.X_OK):
            raise ExecError(f'exec: "{arg0}": permission denied')
        return arg0
    for directory in (path_env if path_env is not None else DEFAULT_PATH).split(":"):
        candidate = os.path.join(directory or ".", arg0)
        try:
            st = os.stat(candidate)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_mode & 0o111:
            return candidate
    raise ExecError(f'exec: "{arg0}": executable file not found in $PATH')


def home_of(uid: int, passwd: str = "/etc/passwd") -> str:
    """The home directory of ``uid`` in the container's passwd file, "/" when unknown."""
    try:
        with open(passwd, encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.rstrip("\n").split(":")
                if len(fields) >= 6 and fields[2] == str(uid):
                    return fields[5] or "/"
    except OSError:
        pass
    return "/"


def _setup_console(sock_fd: int, uid: int) -> None:
    """Allocate a pty in our devpts, hand the master to the console socket (runc's protocol),
    and make the slave our stdio and controlling terminal."""
    import socket  # already loaded by the parent, which connected the console socket

    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, _TIOCSPTLCK, array.array("i", [0]))
    number = array.array("i", [0])
    fcntl.ioctl(master, _TIOCGPTN, number)
    slave_path = f"/dev/pts/{number[0]}"
    slave = os.open(slave_path, os.O_RDWR | os.O_NOCTTY)
    os.fchown(slave, uid, -1)
    with socket.socket(fileno=sock_fd) as sock:
        fds = array.array("i", [master])
        sock.sendmsg([slave_path.encode()], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
    os.close(master)
    os.setsid()
    fcntl.ioctl(slave, _TIOCSCTTY, 0)
    for target in (0, 1, 2):
        os.dup2(slave, target)
    if slave > 2:
        os.close(slave)
