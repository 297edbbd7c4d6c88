"""The init's ordering decisions, checked against a recording Syscalls (no kernel changes).

The integration tests next to this one run the same code against the real kernel; here the
order and arguments of the calls are the specification.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from berth.errors import InvalidArgument
from berth.runtime import syscalls as sc
from berth.runtime.init import capabilities as caps
from berth.runtime.init import rootfs
from berth.runtime.init.config import Mount, parse_spec


class RecordingSyscalls:
    """Records every call as (name, args); mknod fails like it would without CAP_MKNOD."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Any:
        def record(*args: Any) -> int:
            self.calls.append((name, args))
            if name == "mknod":
                raise PermissionError(1, "Operation not permitted")
            return 0

        return record


def test_bind_mount_is_bound_then_remounted_read_only(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    root.mkdir()
    source = tmp_path / "src"
    source.mkdir()
    rec = RecordingSyscalls()
    m = Mount("/data", "bind", str(source), ("rbind", "ro", "nosuid", "rprivate"))
    rootfs.mount_entry(rec, str(root), str(tmp_path), m, {})
    dest = str(root / "data")
    assert [c[0] for c in rec.calls] == ["mount", "mount", "mount"]
    assert rec.calls[0][1] == (str(source), dest, None, sc.MS_BIND | sc.MS_REC, None)
    flags = rec.calls[1][1][3]
    assert flags & (sc.MS_REMOUNT | sc.MS_BIND | sc.MS_RDONLY | sc.MS_NOSUID) == (
        sc.MS_REMOUNT | sc.MS_BIND | sc.MS_RDONLY | sc.MS_NOSUID)
    assert rec.calls[2][1] == (None, dest, None, sc.MS_PRIVATE | sc.MS_REC, None)
    assert (root / "data").is_dir()


def test_devpts_options_split_into_flags_and_data() -> None:
    flags, propagation, data = rootfs.parse_mount_options(
        ("nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"))
    assert flags == sc.MS_NOSUID | sc.MS_NOEXEC
    assert propagation == 0
    assert data == "newinstance,ptmxmode=0666,mode=0620,gid=5"


def test_v1_cgroup_mount_binds_each_hierarchy(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    root.mkdir()
    rec = RecordingSyscalls()
    dirs = {"memory": "/sys/fs/cgroup/memory/c1", "pids": "/sys/fs/cgroup/pids/c1"}
    rootfs.mount_entry(rec, str(root), str(tmp_path),
                       Mount("/sys/fs/cgroup", "cgroup", "cgroup", ("ro",)), dirs)
    dest = str(root / "sys/fs/cgroup")
    targets = [(c[1][0], c[1][1]) for c in rec.calls if c[1][3] & sc.MS_BIND
               and not c[1][3] & sc.MS_REMOUNT]
    assert targets == [(dirs["memory"], dest + "/memory"), (dirs["pids"], dest + "/pids")]
    assert rec.calls[0][1][:3] == ("tmpfs", dest, "tmpfs")
    assert rec.calls[-1][1][3] & sc.MS_RDONLY  # the tmpfs itself goes read-only last


def test_mknod_refused_falls_back_to_binding_the_host_node(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    (root / "dev").mkdir(parents=True)
    rec = RecordingSyscalls()
    rootfs.create_devices(rec, str(root), ())
    binds = [c[1][:2] for c in rec.calls if c[0] == "mount"]
    assert ("/dev/null", str(root / "dev/null")) in binds
    assert (root / "dev/null").is_file()  # the empty file the host node is bound onto


def test_pivot_root_detaches_the_old_root_after_making_it_slave() -> None:
    rec = RecordingSyscalls()
    rootfs.pivot_root(rec, "/new")
    assert rec.calls == [
        ("chdir", ("/new",)),
        ("pivot_root", (".", ".")),
        ("mount", (None, ".", None, sc.MS_SLAVE | sc.MS_REC, None)),
        ("umount2", (".", sc.MNT_DETACH)),
        ("chdir", ("/",)),
    ]


def test_bounding_drop_and_ambient_need_permitted_and_inheritable() -> None:
    rec = RecordingSyscalls()
    keep = caps.parse_capabilities(["CAP_KILL", "CAP_CHOWN"], "bounding")
    caps.drop_bounding(rec, keep, 5)
    assert rec.calls == [("prctl", (sc.PR_CAPBSET_DROP, n)) for n in (1, 2, 3, 4)]
    rec.calls.clear()
    kill = caps.parse_capabilities(["CAP_KILL"], "x")
    chown = caps.parse_capabilities(["CAP_CHOWN"], "x")
    caps.apply_sets(rec, kill, kill | chown, kill, kill | chown, 5)
    assert rec.calls == [
        ("capset", (kill, kill | chown, kill)),
        ("prctl", (sc.PR_CAP_AMBIENT, sc.PR_CAP_AMBIENT_CLEAR_ALL)),
        ("prctl", (sc.PR_CAP_AMBIENT, sc.PR_CAP_AMBIENT_RAISE, 5)),  # CAP_CHOWN: not inheritable
    ]


def test_secure_join_never_leaves_the_root(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "abs").symlink_to("/etc")
    (root / "rel").symlink_to("../../../../..")
    (root / "loop").symlink_to("loop")
    assert rootfs.secure_join(str(root), "/abs/passwd") == str(root / "etc/passwd")
    assert rootfs.secure_join(str(root), "/rel/etc") == str(root / "etc")
    assert rootfs.secure_join(str(root), "/../../x") == str(root / "x")
    with pytest.raises(InvalidArgument, match="too many levels of symbolic links"):
        rootfs.secure_join(str(root), "/loop/x")


def test_spec_validation_happens_whole(tmp_path: Path) -> None:
    (tmp_path / "rootfs").mkdir()
    raw = {"ociVersion": "1.0.2", "root": {"path": "rootfs"},
           "process": {"args": ["sh"], "cwd": "/", "env": ["PATH=/bin"]},
           "hostname": "h",
           "linux": {"namespaces": [{"type": "mount"}, {"type": "pid"}, {"type": "uts"}],
                     "resources": {"memory": {"limit": 100}, "devices": [{"allow": False}]}}}
    spec = parse_spec(raw, str(tmp_path))
    assert spec.root_path == str(tmp_path / "rootfs")
    assert spec.linux.resources.memory_limit == 100
    assert spec.linux.resources.devices[0].to_v1() == "a"
    assert spec.process.env_value("PATH") == "/bin"
