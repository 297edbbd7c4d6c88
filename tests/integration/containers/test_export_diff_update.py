"""``export``, ``diff`` and ``update`` through the berth CLI, checked against what dockerd 20.10
prints for the same commands (the expected lists below were taken from it)."""

from __future__ import annotations

import io
import tarfile
import uuid
from pathlib import Path

import pytest
from tests.integration.containers._probe import CGROUP_ROOT, wait_for

pytestmark = pytest.mark.usefixtures("daemon")

# what the layered test image's container changes, and docker diff's answer for it
CHANGES = ("echo x >> /etc/passwd; rm /data/file; mkdir /data/dir/more; echo z > /data/rdir/r3; "
           "rm -rf /data/keep; mkdir /data/keep; touch /data/keep/k; rm /bin/printenv; "
           "chmod 700 /data/sticky; mkdir /opt; ln -s /x /opt/l")
DIFF = """\
C /bin
D /bin/printenv
C /data
C /data/dir
A /data/dir/more
D /data/file
C /data/keep
A /data/keep/k
D /data/keep/stay.txt
C /data/rdir
A /data/rdir/r3
C /data/sticky
C /etc
C /etc/passwd
A /opt
A /opt/l
"""


def _name(prefix: str) -> str:
    return f"edu-{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def layered(daemon, test_images):  # type: ignore[no-untyped-def]
    daemon.out("load", "-i", str(test_images.layered_docker_tar))
    yield "layered"
    daemon.cli("rmi", "layered")


def _names(raw: bytes) -> list[str]:
    return tarfile.open(fileobj=io.BytesIO(raw)).getnames()


# -- export ------------------------------------------------------------------------------------

def test_export_of_a_created_container_is_its_image(daemon) -> None:  # type: ignore[no-untyped-def]
    ctr = _name("exp")
    daemon.out("create", "--name", ctr, "busybox", "true")
    try:
        names = _names(daemon.cli("export", ctr, check=True).stdout)
        assert "bin/busybox" in names and "etc/passwd" in names
        assert "." not in names and not any(n.startswith(("./", "/")) for n in names)
        assert names.index("bin") < names.index("bin/busybox")
    finally:
        daemon.cli("rm", "-f", ctr)


def test_export_of_a_running_container_has_its_writes_not_its_volumes(
        daemon, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ctr, vol = _name("exprun"), _name("expvol")
    daemon.out("run", "-d", "--name", ctr, "-v", f"{vol}:/vol", "busybox", "sh", "-c",
               "echo hi > /written; echo v > /vol/in-volume; sleep 60")
    try:
        assert wait_for(lambda: daemon.cli("exec", ctr, "test", "-f", "/vol/in-volume")
                        .returncode == 0)
        out = tmp_path / "ctr.tar"
        assert daemon.out("container", "export", "-o", str(out), ctr) == ""
        with tarfile.open(out) as tar:
            names = tar.getnames()
            written = tar.extractfile("written")
            assert written is not None and written.read() == b"hi\n"
        assert "vol" in names and "vol/in-volume" not in names  # docker exports no volume
        assert out.stat().st_mode & 0o777 == 0o600  # the docker CLI's file mode
    finally:
        daemon.cli("rm", "-f", "-v", ctr)
        daemon.cli("volume", "rm", vol)


def test_export_errors(daemon) -> None:  # type: ignore[no-untyped-def]
    proc = daemon.cli("export", "edu-no-such")
    assert (proc.returncode, proc.stderr) == (
        1, b"Error response from daemon: No such container: edu-no-such\n")
    proc = daemon.cli("export", "-o", "/edu-no-such-dir/x.tar", "edu-no-such")
    assert (proc.returncode, proc.stderr) == (
        1, b"failed to export container: invalid output path: stat /edu-no-such-dir: no such "
           b"file or directory\n")


# -- diff ----------------------------------------------------------------------------------------

def test_diff_matches_dockerd(daemon, layered: str) -> None:  # type: ignore[no-untyped-def]
    # the image has whiteouts and an opaque /data/dir; its /etc/hostname (deleted in a layer)
    # is a mount point the runtime makes: docker keeps that in its init layer, out of the diff
    ctr = _name("diff")
    daemon.out("run", "--name", ctr, layered, "sh", "-c", CHANGES)
    try:
        assert daemon.out("diff", ctr) == DIFF
        assert daemon.out("container", "diff", ctr) == DIFF
    finally:
        daemon.cli("rm", "-f", ctr)


def test_diff_of_a_created_and_a_running_container(daemon) -> None:  # type: ignore[no-untyped-def]
    ctr = _name("diffrun")
    daemon.out("create", "--name", ctr, "busybox", "sh", "-c", "touch /tmp/t; sleep 60")
    try:
        assert daemon.out("diff", ctr) == ""
        daemon.out("start", ctr)
        assert wait_for(lambda: daemon.out("diff", ctr) == "C /tmp\nA /tmp/t\n")
    finally:
        daemon.cli("rm", "-f", ctr)
    proc = daemon.cli("diff", ctr)
    assert (proc.returncode, proc.stderr) == (
        1, f"Error response from daemon: No such container: {ctr}\n".encode())


# -- update --------------------------------------------------------------------------------------

V2 = (CGROUP_ROOT / "cgroup.controllers").exists()


def _read(container_id: str, controller: str, v1_file: str, v2_file: str) -> str:
    path = (CGROUP_ROOT / "berth" / container_id / v2_file if V2
            else CGROUP_ROOT / controller / "berth" / container_id / v1_file)
    return Path(path).read_text().strip()


def test_update_a_running_container(daemon) -> None:  # type: ignore[no-untyped-def]
    ctr = _name("upd")
    cid = daemon.out("run", "-d", "--name", ctr, "busybox", "sleep", "60").strip()
    try:
        out = daemon.out("update", "--cpus", "0.5", "--memory", "64m", "--memory-swap", "128m",
                         "--pids-limit", "50", "--cpu-shares", "512", "--cpuset-cpus", "0",
                         "--restart", "on-failure:3", ctr)
        assert out == f"{ctr}\n"
        fields = ("{{.HostConfig.NanoCpus}} {{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} "
                  "{{.HostConfig.PidsLimit}} {{.HostConfig.CpuShares}} {{.HostConfig.CpusetCpus}} "
                  "{{json .HostConfig.RestartPolicy}}")
        assert daemon.out("inspect", "-f", fields, ctr) == (
            '500000000 67108864 134217728 50 512 0 {"Name":"on-failure","MaximumRetryCount":3}\n')
        # the running container's cgroup has the new limits, as runc update writes them
        assert _read(cid, "memory", "memory.limit_in_bytes", "memory.max") == str(64 << 20)
        assert _read(cid, "pids", "pids.max", "pids.max") == "50"
        assert _read(cid, "cpuset", "cpuset.cpus", "cpuset.cpus") == "0"
        if V2:
            assert _read(cid, "cpu", "", "cpu.max") == "50000 100000"
            assert _read(cid, "memory", "", "memory.swap.max") == str(64 << 20)
        else:
            assert _read(cid, "cpu", "cpu.cfs_quota_us", "") == "50000"
            assert _read(cid, "cpu", "cpu.shares", "") == "512"
            memsw = CGROUP_ROOT / "memory" / "berth" / cid / "memory.memsw.limit_in_bytes"
            if memsw.exists():  # only with swap accounting on
                assert memsw.read_text().strip() == str(128 << 20)
        # and what the container sees of them
        assert daemon.out("exec", ctr, "cat", "/sys/fs/cgroup/pids.max" if V2
                          else "/sys/fs/cgroup/pids/pids.max") == "50\n"
        daemon.out("update", "--pids-limit", "-1", ctr)
        assert daemon.out("inspect", "-f", "{{.HostConfig.PidsLimit}}", ctr) == "0\n"
        assert _read(cid, "pids", "pids.max", "pids.max") == "max"
    finally:
        daemon.cli("rm", "-f", ctr)


def test_update_a_stopped_container_applies_at_start(daemon) -> None:  # type: ignore[no-untyped-def]
    ctr = _name("updstop")
    daemon.out("create", "--name", ctr, "busybox", "sh", "-c",
               "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max")
    try:
        assert daemon.out("update", "--pids-limit", "20", ctr) == f"{ctr}\n"
        assert daemon.out("start", "-a", ctr) == "20\n"
    finally:
        daemon.cli("rm", "-f", ctr)


@pytest.mark.parametrize(("args", "message"), [
    (("--memory", "1m"), "Error response from daemon: Minimum memory limit allowed is 6MB"),
    (("--cpus", "9999"), "Error response from daemon: Range of CPUs is from 0.01 to "),
    (("--restart", "bogus"), "Error response from daemon: invalid restart policy 'bogus'"),
    (("--cpuset-cpus", "abc"),
     "Error response from daemon: Invalid value abc for cpuset cpus: invalid format: abc"),
    (("--cpuset-cpus", "4096"),
     "Error response from daemon: Requested CPUs are not available - requested 4096, "),
    (("--memory", "256m"), "Memory limit should be smaller than already set memoryswap limit, "
                           "update the memoryswap at the same time"),
])
def test_update_refusals(daemon, args: tuple[str, ...], message: str) -> None:  # type: ignore[no-untyped-def]
    ctr = _name("updbad")
    daemon.out("create", "--name", ctr, "busybox", "true")
    try:
        proc = daemon.cli("update", *args, ctr)
        assert proc.returncode == 1 and proc.stdout == b""
        assert message.encode() in proc.stderr
    finally:
        daemon.cli("rm", "-f", ctr)


def test_update_reports_each_container(daemon) -> None:  # type: ignore[no-untyped-def]
    ctr = _name("updmany")
    daemon.out("run", "-d", "--rm", "--name", ctr, "busybox", "sleep", "60")
    try:
        proc = daemon.cli("update", "--cpu-shares", "600", "edu-no-such", ctr)
        assert proc.returncode == 1
        assert proc.stdout == f"{ctr}\n".encode()
        assert proc.stderr == b"Error response from daemon: No such container: edu-no-such\n"
        proc = daemon.cli("update", "--restart", "always", ctr)
        assert proc.returncode == 1
        assert b"Restart policy cannot be updated because AutoRemove is enabled" in proc.stderr
        proc = daemon.cli("update", ctr)
        assert (proc.returncode, proc.stderr) == (
            1, b"you must provide one or more flags when using this command\n")
    finally:
        daemon.cli("rm", "-f", ctr)
