"""The runtime's verbs on the caller's side: create, start, run, kill, delete, pause, resume.

Each verb is a function of (state root, id, ...) so the CLI stays a thin parser, and the engine
could call them in-process later.
"""

from __future__ import annotations

import os
import select
import signal
import time
from typing import NamedTuple

from berth.errors import (
    AlreadyExists,
    Conflict,
    InvalidArgument,
    NotImplementedByBerth,
    RuntimeFailure,
)
from berth.runtime.cgroups.base import CgroupManager, open_cgroup
from berth.runtime.init.config import (
    NAMESPACE_FLAGS,
    Process,
    Spec,
    id_map_text,
    load_spec,
    validate_id,
)
from berth.runtime.init.messages import MessageReader, send_go
from berth.runtime.init.process import (
    ExecContext,
    InitContext,
    run_exec,
    run_init,
    run_intermediate,
)
from berth.runtime.init.state import (
    EXEC_FIFO,
    ContainerState,
    ContainerStatus,
    container_dir,
    load_state,
    process_start_time,
    remove_state,
    save_state,
    status_of,
    utc_now,
)
from berth.runtime.syscalls import (
    CLONE_NEWCGROUP,
    CLONE_NEWIPC,
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWPID,
    CLONE_NEWUSER,
    CLONE_NEWUTS,
    Syscalls,
)

_SIGNALS_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
                      signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH)


class Created(NamedTuple):
    """A created container: its init's pid and the pipe that reports an exec failure."""

    state: ContainerState
    init_pipe: int


def create(
    root: str,
    container_id: str,
    bundle: str,
    sys: Syscalls,
    *,
    console_socket: str | None = None,
    pid_file: str | None = None,
) -> Created:
    """Set everything up and leave the init blocked on exec.fifo until ``start``."""
    validate_id(container_id)
    spec = load_spec(bundle)
    if spec.process.terminal and not console_socket:
        raise RuntimeFailure("cannot allocate tty without setting console socket")
    os.makedirs(root, 0o711, exist_ok=True)
    directory = container_dir(root, container_id)
    try:
        os.mkdir(directory, 0o711)
    except FileExistsError as err:
        raise AlreadyExists(f"container with id exists: {container_id}") from err
    cgroup = open_cgroup(spec.linux.cgroups_path or container_id)
    pid = 0
    fds: list[int] = []
    try:
        cgroup.create(spec.linux.resources)
        fifo = os.path.join(directory, EXEC_FIFO)
        os.mkfifo(fifo, 0o622)
        os.chmod(fifo, 0o622)  # mkfifo's mode went through the umask
        pid, to_parent_r = _clone_init(spec, cgroup, fifo, console_socket, sys, fds)
        state = ContainerState(
            id=container_id, pid=pid, bundle=spec.bundle, rootfs=spec.root_path,
            created=utc_now(),
            oci_version=spec.oci_version, cgroup_path=cgroup.path, cgroup_dirs=cgroup.paths(),
            start_time=process_start_time(pid) or 0, annotations=spec.annotations,
        )
        save_state(root, state)
        if pid_file:
            _write_atomic(pid_file, str(pid))
        return Created(state, to_parent_r)
    except BaseException:
        if pid:
            _kill_and_reap(pid)
        cgroup.destroy()
        remove_state(root, container_id)
        raise
    finally:
        for fd in fds:
            os.close(fd)


def _clone_init(
    spec: Spec, cgroup: CgroupManager, fifo: str, console_socket: str | None, sys: Syscalls,
    fds: list[int],
) -> tuple[int, int]:
    """Clone the init with every new namespace at once, place it in the cgroup, await "ready".

    With a user namespace an intermediate child makes the namespaces (``_clone_via``)."""
    join: list[tuple[int, int]] = []
    flags = 0
    unshare_cgroup = False
    userns = spec.linux.namespace("user")
    if userns is not None and (pid_ns := spec.linux.namespace("pid")) and pid_ns.path:
        raise NotImplementedByBerth("joining a PID namespace from a user namespace is not "
                                    "supported by berth-runtime yet")
    # the user namespace first: the others may belong to it
    for ns in sorted(spec.linux.namespaces, key=lambda n: n.type != "user"):
        flag = NAMESPACE_FLAGS[ns.type]
        if ns.path:
            fd = os.open(ns.path, os.O_RDONLY | os.O_CLOEXEC)
            fds.append(fd)
            if ns.type == "pid":
                sys.setns(fd, flag)  # only our children enter it, which is what we want
            else:
                join.append((fd, flag))
        elif ns.type == "cgroup":
            unshare_cgroup = True  # after joining the group, see container_init
        else:
            flags |= flag
    console_fd = _connect_console(console_socket, fds) if spec.process.terminal else None
    exec_fifo = os.open(fifo, os.O_PATH | os.O_CLOEXEC)
    fds.append(exec_fifo)
    to_parent_r, to_parent_w = os.pipe2(os.O_CLOEXEC)
    from_parent_r, from_parent_w = os.pipe2(os.O_CLOEXEC)
    fds.extend((to_parent_w, from_parent_r, from_parent_w))
    ctx = InitContext(spec, to_parent_w, from_parent_r, exec_fifo, console_fd, tuple(join),
                      unshare_cgroup, cgroup.paths())
    if userns is not None:
        pid = _clone_via(ctx, flags, (to_parent_r, from_parent_w), sys)
    else:
        pid = sys.clone(flags)
        if pid == 0:
            os.close(to_parent_r)
            os.close(from_parent_w)
            run_init(ctx, sys)
    reader = MessageReader(to_parent_r)
    try:
        os.close(to_parent_w)
        fds.remove(to_parent_w)
        cgroup.add_pid(pid)
        send_go(from_parent_w)
        message = reader.next()
    except BaseException:
        os.close(to_parent_r)
        _kill_and_reap(pid)
        raise
    if message is None or message.kind != "ready":
        os.close(to_parent_r)
        _kill_and_reap(pid)
        text = message.text if message else "container init exited during setup"
        raise RuntimeFailure(text, exit_code=_exit_code_for(text))
    return pid, to_parent_r


def _clone_via(ctx: InitContext, flags: int, parent_ends: tuple[int, int],
               sys: Syscalls) -> int:
    """The init of a container with a user namespace, made by an intermediate child (see
    ``process.run_intermediate``); it is still our child (CLONE_PARENT). Returns its pid."""
    up_r, up_w = os.pipe2(os.O_CLOEXEC)
    down_r, down_w = os.pipe2(os.O_CLOEXEC)
    try:
        mid = sys.clone(0)
        if mid == 0:
            for fd in (up_r, down_w, *parent_ends):
                os.close(fd)
            run_intermediate(ctx, flags, up_w, down_r, sys)
        os.close(up_w)
        os.close(down_r)
        up_w = down_r = -1
        try:
            reader = MessageReader(up_r)
            message = reader.next()
            if message is not None and message.kind == "map":
                linux = ctx.spec.linux
                # gid_map before uid_map is runc's order; both by us, root of the parent
                for kind, ranges in (("gid", linux.gid_mappings), ("uid", linux.uid_mappings)):
                    with open(f"/proc/{mid}/{kind}_map", "w") as f:
                        f.write(id_map_text(ranges))
                send_go(down_w)
                message = reader.next()
        finally:
            os.waitpid(mid, 0)
        if message is None or message.kind != "pid":
            text = message.text if message else "container init exited during setup"
            raise RuntimeFailure(text, exit_code=_exit_code_for(text))
        return int(message.text)
    finally:
        for fd in (up_r, up_w, down_r, down_w):
            if fd >= 0:
                os.close(fd)


def _connect_console(path: str | None, fds: list[int]) -> int | None:
    """Connect to the caller's console socket; the init sends the pty master over it."""
    if not path:
        return None
    import socket  # only with a terminal: the module costs ~9 ms to import

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as err:
        sock.close()
        raise RuntimeFailure(f"failed to connect to console socket: {err}") from err
    fd = sock.detach()
    fds.append(fd)
    return fd


# user first (the others belong to it), mount last
_EXEC_NAMESPACES = (("user", CLONE_NEWUSER), ("ipc", CLONE_NEWIPC), ("uts", CLONE_NEWUTS),
                    ("net", CLONE_NEWNET), ("cgroup", CLONE_NEWCGROUP), ("mnt", CLONE_NEWNS))


def exec_process(
    root: str, container_id: str, process: Process, sys: Syscalls, *,
    console_socket: str | None = None, pid_file: str | None = None, detach: bool = False,
) -> int:
    """Start ``process`` inside a running container (``runc exec``).

    Returns 0 once it runs with ``detach``, else its exit status as a shell reports it.
    """
    state = load_state(root, container_id)
    status = status_of(root, state)
    if status is ContainerStatus.STOPPED:
        raise Conflict("cannot exec in a stopped container")
    if status is ContainerStatus.PAUSED:
        raise Conflict("cannot exec in a paused container")
    if process.terminal and not console_socket:
        raise RuntimeFailure("cannot allocate tty without setting console socket")
    fds: list[int] = []
    try:
        join: list[tuple[int, int]] = []
        # Enter only what the container does not share with us (--network=host etc.).
        for name, flag in (("pid", CLONE_NEWPID), *_EXEC_NAMESPACES):
            target = f"/proc/{state.pid}/ns/{name}"
            if os.readlink(target) == os.readlink(f"/proc/self/ns/{name}"):
                continue
            fd = os.open(target, os.O_RDONLY | os.O_CLOEXEC)
            fds.append(fd)
            if flag == CLONE_NEWPID:
                sys.setns(fd, flag)  # takes effect for our child only
            else:
                join.append((fd, flag))
        console_fd = _connect_console(console_socket, fds) if process.terminal else None
        to_parent_r, to_parent_w = os.pipe2(os.O_CLOEXEC)
        from_parent_r, from_parent_w = os.pipe2(os.O_CLOEXEC)
        fds.extend((to_parent_r, to_parent_w, from_parent_r, from_parent_w))
        ctx = ExecContext(process, to_parent_w, from_parent_r, console_fd, tuple(join))
        pid = sys.clone(0)
        if pid == 0:
            os.close(to_parent_r)
            os.close(from_parent_w)
            run_exec(ctx, sys)
        os.close(to_parent_w)
        fds.remove(to_parent_w)
        reader = MessageReader(to_parent_r)
        try:
            state.cgroup().add_pid(pid)
            send_go(from_parent_w)
            message = reader.next()
            if message is not None and message.kind == "ready":
                message = reader.next()  # None: the pipe closed at exec
        except BaseException:
            _kill_and_reap(pid)
            raise
        if message is not None:
            _kill_and_reap(pid)
            raise RuntimeFailure(message.text, exit_code=_exit_code_for(message.text))
        if pid_file:
            _write_atomic(pid_file, str(pid))
    finally:
        for fd in fds:
            os.close(fd)
    if detach:
        return 0
    handlers = {sig: signal.signal(sig, lambda s, _f: _forward(pid, s))
                for sig in _SIGNALS_FORWARDED}
    try:
        _, wait_status = os.waitpid(pid, 0)
    finally:
        for sig, old in handlers.items():
            signal.signal(sig, old)
    if os.WIFSIGNALED(wait_status):
        return 128 + os.WTERMSIG(wait_status)
    return os.WEXITSTATUS(wait_status)


def _exit_code_for(text: str) -> int:
    """Docker's codes: 127 when the command does not exist, 126 when it cannot be run."""
    if "executable file not found" in text or "no such file or directory" in text:
        return 127
    if "permission denied" in text:
        return 126
    return 125


def start(root: str, container_id: str) -> ContainerState:
    """Open exec.fifo: the init, blocked on its write end, execs the process."""
    state = load_state(root, container_id)
    status = status_of(root, state)
    if status is ContainerStatus.STOPPED:
        raise Conflict("cannot start a container that has stopped")
    if status is not ContainerStatus.CREATED:
        raise Conflict("cannot start an already running container")
    _release_fifo(root, state)
    return state


def _release_fifo(root: str, state: ContainerState) -> None:
    fifo = os.path.join(container_dir(root, state.id), EXEC_FIFO)
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while True:
            if poller.poll(100) and os.read(fd, 1):
                break
            if process_start_time(state.pid) != state.start_time:
                raise RuntimeFailure("cannot start a container that has stopped")
    finally:
        os.close(fd)
    os.unlink(fifo)


def run(root: str, container_id: str, bundle: str, sys: Syscalls,
        *, console_socket: str | None = None, pid_file: str | None = None) -> int:
    """create + start + wait + delete; returns the exit status the way a shell reports it."""
    created = create(root, container_id, bundle, sys, console_socket=console_socket,
                     pid_file=pid_file)
    state = created.state
    handlers = {sig: signal.signal(sig, lambda s, _f: _forward(state.pid, s))
                for sig in _SIGNALS_FORWARDED}
    try:
        _release_fifo(root, state)
        # The pipe closes at exec (CLOEXEC); anything else is the init's last word.
        message = MessageReader(created.init_pipe).next()
        os.close(created.init_pipe)
        if message is not None:
            _kill_and_reap(state.pid)
            raise RuntimeFailure(message.text, exit_code=_exit_code_for(message.text))
        _, status = os.waitpid(state.pid, 0)
    finally:
        for sig, old in handlers.items():
            signal.signal(sig, old)
        delete(root, container_id, force=True)
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def _forward(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def kill(root: str, container_id: str, sig: int, *, all_processes: bool = False) -> None:
    state = load_state(root, container_id)
    if status_of(root, state) is ContainerStatus.STOPPED:
        raise Conflict("container not running")
    if all_processes:
        state.cgroup().kill_all(sig)
    else:
        os.kill(state.pid, sig)


def delete(root: str, container_id: str, *, force: bool = False) -> None:
    """Remove a stopped (or, like runc, a never-started) container; --force kills it first."""
    state = load_state(root, container_id)
    status = status_of(root, state)
    if status in (ContainerStatus.RUNNING, ContainerStatus.PAUSED) and not force:
        raise Conflict(f"cannot delete container {container_id} that is not stopped: "
                       f"{status.value}")
    cgroup = state.cgroup()
    if status is not ContainerStatus.STOPPED:
        if status is ContainerStatus.PAUSED:
            cgroup.kill_all(signal.SIGKILL)
            cgroup.thaw()
        _kill_and_wait(state)
    cgroup.destroy()
    remove_state(root, container_id)


def pause(root: str, container_id: str) -> None:
    state = load_state(root, container_id)
    if status_of(root, state) is not ContainerStatus.RUNNING:
        raise Conflict("container not running")
    state.cgroup().freeze()


def resume(root: str, container_id: str) -> None:
    state = load_state(root, container_id)
    if status_of(root, state) is not ContainerStatus.PAUSED:
        raise Conflict("container not paused")
    state.cgroup().thaw()


def _kill_and_wait(state: ContainerState, timeout: float = 5.0) -> None:
    """SIGKILL the init (PID 1 takes its namespace down) and wait until it is gone or a zombie."""
    _forward(state.pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while process_start_time(state.pid) == state.start_time:
        if time.monotonic() > deadline:
            raise RuntimeFailure(f"container {state.id} did not die after SIGKILL")
        try:  # reap it ourselves when we are its parent (run, failed create)
            os.waitpid(state.pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.001)


def _kill_and_reap(pid: int) -> None:
    _forward(pid, signal.SIGKILL)
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def parse_signal(text: str) -> int:
    """``TERM``, ``SIGTERM``, ``term`` or ``15``."""
    if text.isdigit():
        return int(text)
    name = text.upper()
    name = name if name.startswith("SIG") else "SIG" + name
    try:
        return int(signal.Signals[name])
    except KeyError as err:
        raise InvalidArgument(f"unknown signal {text!r}") from err

