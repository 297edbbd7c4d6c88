"""``berthd --userns-remap``: container root is an unprivileged host ID, as with dockerd.

One remapped daemon for the module (``--userns-remap=default``: the ``dockremap`` user and its
/etc/subuid range, created on first use as dockerd creates them). Every check is made on real
containers, under each runtime, and on the files the host sees.
"""

from __future__ import annotations

import io
import json
import os
import pwd
import re
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import Daemon, _tool, start_daemon, stop_daemon

RUNTIMES = ["runc", "berth", "crun"]


@pytest.fixture(scope="module")
def remapped(test_images) -> Iterator[Daemon]:  # type: ignore[no-untyped-def]
    root = Path(tempfile.mkdtemp(prefix="berth-test-userns-"))
    d = start_daemon(root, ("--userns-remap", "default"))
    try:
        d.out("load", "-i", str(test_images.busybox_docker_tar))
        yield d
    finally:
        stop_daemon(d)


def _dockremap_range(path: str) -> tuple[int, int]:
    """dockremap's first range in /etc/subuid or /etc/subgid: (start, count)."""
    ranges = []
    for line in Path(path).read_text().splitlines():
        name, _, rest = line.strip().partition(":")
        if name in ("dockremap", str(pwd.getpwnam("dockremap").pw_uid)):
            start, count = rest.split(":")
            ranges.append((int(start), int(count)))
    return min(ranges)


@pytest.fixture(scope="module")
def root_pair(remapped: Daemon) -> tuple[int, int]:
    """The host IDs of container root (the daemon made the ranges if they were missing)."""
    return _dockremap_range("/etc/subuid")[0], _dockremap_range("/etc/subgid")[0]


def _state_root(d: Daemon, pair: tuple[int, int]) -> Path:
    return d.data_root / f"{pair[0]}.{pair[1]}"


def _owner(path: Path) -> tuple[int, int]:
    st = os.lstat(path)
    return st.st_uid, st.st_gid


# -- inside the container --------------------------------------------------------------------


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_root_inside_is_the_remapped_range(remapped: Daemon, root_pair: tuple[int, int],
                                           runtime: str) -> None:
    out = remapped.out("run", "--rm", "--runtime", runtime, "busybox", "sh", "-c",
                       "cat /proc/self/uid_map /proc/self/gid_map; id; ls -ln /bin/busybox;"
                       " ls -ld /sys; echo 127.0.0.2 x >> /etc/hosts && echo hosts-writable")
    lines = out.splitlines()
    count = _dockremap_range("/etc/subuid")[1]
    assert lines[0].split() == ["0", str(root_pair[0]), str(count)]
    assert lines[1].split()[:2] == ["0", str(root_pair[1])]
    assert lines[2].startswith("uid=0(root) gid=0(root)")
    assert lines[3].split()[2:4] == ["0", "0"]  # the image's root-owned file is root's here
    assert lines[4].split()[2:4] == ["nobody", "nobody"]  # sysfs of its own network namespace
    assert lines[5] == "hosts-writable"


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_exec_joins_the_user_namespace(remapped: Daemon, root_pair: tuple[int, int],
                                       runtime: str) -> None:
    name = f"userns-exec-{runtime}"
    remapped.out("run", "-d", "--name", name, "--runtime", runtime, "busybox", "sleep", "60")
    try:
        out = remapped.out("exec", name, "sh", "-c", "cat /proc/self/uid_map; id -u")
        assert out.split()[:2] == ["0", str(root_pair[0])] and out.split()[-1] == "0"
        tty = remapped.out("exec", "-t", name, "sh", "-c", "tty; id -u")
        assert tty.split() == ["/dev/pts/0", "0"]
        assert remapped.out("top", name).splitlines()[1].split()[0] == str(root_pair[0])
    finally:
        remapped.cli("rm", "-f", name)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_networks_work_in_the_user_namespace(remapped: Daemon, runtime: str) -> None:
    cid = remapped.out("run", "-d", "--name", f"userns-net-{runtime}", "--runtime", runtime,
                       "busybox", "sleep", "60").strip()
    try:
        out = remapped.out("run", "--rm", "--runtime", runtime, "--network",
                           f"container:userns-net-{runtime}", "busybox", "sh", "-c",
                           "ip -4 addr show eth0;"
                           " cat /proc/sys/net/ipv4/ip_unprivileged_port_start")
        # the bridge's subnet depends on what else the host runs (172.x or 192.168.x)
        assert re.search(r"inet \d+\.\d+\.\d+\.\d+/\d+ ", out), out
        assert out.splitlines()[-1] == "0"
        none = remapped.out("run", "--rm", "--runtime", runtime, "--network", "none",
                            "busybox", "sh", "-c", "ip link show lo; cat /proc/self/uid_map")
        assert "UP" in none.splitlines()[0] and none.split()[-2] != "0"
    finally:
        remapped.cli("rm", "-f", f"userns-net-{runtime}")
    # both pins go with the container (unpinned in the background)
    pins = remapped.exec_root / "netns"
    deadline = time.monotonic() + 10
    while list(pins.glob(cid[:24] + "*")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not list(pins.glob(cid[:24] + "*"))


# -- what the host sees --------------------------------------------------------------------


def test_layers_are_unpacked_owned_by_the_remapped_root(remapped: Daemon,
                                                        root_pair: tuple[int, int]) -> None:
    state = _state_root(remapped, root_pair)
    binaries = list((state / "layers").glob("*/diff/bin/busybox"))
    assert binaries, "busybox is not unpacked under <data-root>/<uid>.<gid>/layers"
    for path in binaries:
        assert _owner(path) == root_pair
        assert _owner(path.parent.parent) == root_pair  # the layer's root: "/" of a container
    assert not (remapped.data_root / "layers").exists()
    st = os.stat(state)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0, root_pair[1], 0o710)


def test_volume_and_container_files_belong_to_the_remapped_root(
        remapped: Daemon, root_pair: tuple[int, int]) -> None:
    bind = Path(tempfile.mkdtemp(prefix="berth-test-userns-bind-"))
    try:
        bind.chmod(0o755)
        remapped.out("run", "--rm", "-v", "userns-vol:/data", "-v", f"{bind}/new:/made",
                     "busybox", "sh", "-c", "touch /data/f; mkdir /data/d; chown 5:6 /data/d;"
                     " touch /made/g")
        data = Path(remapped.out("volume", "inspect", "userns-vol", "--format",
                                 "{{.Mountpoint}}").strip())
        assert _owner(data) == root_pair
        assert _owner(data / "f") == root_pair
        assert _owner(data / "d") == (root_pair[0] + 5, root_pair[1] + 6)
        # -v creates a missing host directory for container root, as dockerd does
        assert _owner(bind / "new") == root_pair and _owner(bind / "new/g") == root_pair
    finally:
        remapped.cli("volume", "rm", "userns-vol")
        subprocess.run(["rm", "-rf", str(bind)], check=False)


def test_cp_shifts_owners_in_as_dockerd_does(remapped: Daemon, root_pair: tuple[int, int],
                                             tmp_path: Path) -> None:
    remapped.out("run", "-d", "--name", "userns-cp", "busybox", "sleep", "60")
    try:
        src = tmp_path / "in.txt"
        src.write_text("hello")
        os.chown(src, 1234, 2345)
        remapped.out("cp", str(src), "userns-cp:/tmp/in.txt")
        assert remapped.out("exec", "userns-cp", "stat", "-c", "%u:%g",
                            "/tmp/in.txt").strip() == "1234:2345"
        upper = Path(remapped.out("inspect", "userns-cp", "--format",
                                  "{{.GraphDriver.Data.UpperDir}}").strip())
        assert _owner(upper / "tmp/in.txt") == (root_pair[0] + 1234, root_pair[1] + 2345)
        # dockerd 20.10 archives what it copies out with the host IDs, unshifted
        remapped.out("exec", "userns-cp", "sh", "-c", "echo x > /tmp/out; chown 7:8 /tmp/out")
        proc = remapped.cli("cp", "userns-cp:/tmp/out", "-")
        with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
            member = tar.getmember("out")
        assert (member.uid, member.gid) == (root_pair[0] + 7, root_pair[1] + 8)
        os.chown(src, 70000, 70000)
        refused = remapped.cli("cp", str(src), "userns-cp:/tmp/far.txt")
        assert refused.returncode == 1
        assert ("Error processing tar file(exit status 1): Container ID 70000 cannot be mapped "
                "to a host ID") in refused.stderr.decode()
    finally:
        remapped.cli("rm", "-f", "userns-cp")


def test_commit_writes_container_ids_back(remapped: Daemon, tmp_path: Path) -> None:
    remapped.out("run", "--name", "userns-commit", "busybox", "sh", "-c",
                 "touch /root-file; mkdir /d; echo x > /d/f; chown 5:6 /d/f; rm /bin/vi")
    try:
        image = remapped.out("commit", "userns-commit", "userns-committed").strip()
        remapped.out("save", "-o", str(tmp_path / "img.tar"), "userns-committed")
    finally:
        remapped.cli("rm", "-f", "userns-commit")
    with tarfile.open(tmp_path / "img.tar") as outer:
        manifest = json.load(outer.extractfile("manifest.json"))  # type: ignore[arg-type]
        top = outer.extractfile(manifest[0]["Layers"][-1])
        assert top is not None
        with tarfile.open(fileobj=io.BytesIO(top.read())) as layer:
            owners = {m.name: (m.uid, m.gid) for m in layer.getmembers()}
    assert owners == {"bin": (0, 0), "bin/.wh.vi": (0, 0), "d": (0, 0), "d/f": (5, 6),
                      "root-file": (0, 0)}
    remapped.cli("rmi", image)


def test_build_layers_come_out_unshifted(remapped: Daemon, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "f.txt").write_text("data")
    (ctx / "Dockerfile").write_text(
        "FROM busybox\nCOPY f.txt /app/f.txt\nCOPY --chown=1000:50 f.txt /app/g.txt\n"
        "WORKDIR /w\nRUN touch /w/r && chown 3:4 /w/r\n")
    remapped.out("build", "-t", "userns-built", str(ctx), timeout=180)
    try:
        remapped.out("save", "-o", str(tmp_path / "img.tar"), "userns-built")
        out = remapped.out("run", "--rm", "userns-built", "stat", "-c", "%n %u:%g",
                           "/app/f.txt", "/app/g.txt", "/w/r")
    finally:
        remapped.cli("rmi", "userns-built")
    assert out.splitlines() == ["/app/f.txt 0:0", "/app/g.txt 1000:50", "/w/r 3:4"]
    owners: dict[str, tuple[int, int]] = {}
    with tarfile.open(tmp_path / "img.tar") as outer:
        manifest = json.load(outer.extractfile("manifest.json"))  # type: ignore[arg-type]
        for name in manifest[0]["Layers"][1:]:
            data = outer.extractfile(name)
            assert data is not None
            with tarfile.open(fileobj=io.BytesIO(data.read())) as layer:
                owners.update({m.name: (m.uid, m.gid) for m in layer.getmembers()})
    assert owners == {"app": (0, 0), "app/f.txt": (0, 0), "app/g.txt": (1000, 50),
                      "w": (0, 0), "w/r": (3, 4)}


# -- dockerd's rules ---------------------------------------------------------------------------


def test_info_reports_userns_and_the_remapped_root(remapped: Daemon,
                                                   root_pair: tuple[int, int]) -> None:
    info = json.loads(remapped.out("info", "--format", "{{json .}}"))
    assert "name=userns" in info["SecurityOptions"]
    assert info["DockerRootDir"] == str(_state_root(remapped, root_pair))


@pytest.mark.parametrize(("flags", "message"), [
    (("--privileged",), "privileged mode is incompatible with user namespaces.  You must run "
                        "the container in the host namespace when running privileged mode"),
    (("--network", "host"),
     "cannot share the host's network namespace when user namespaces are enabled"),
    (("--pid", "host"), "cannot share the host PID namespace when user namespaces are enabled"),
])
def test_host_namespaces_need_userns_host(remapped: Daemon, flags: tuple[str, ...],
                                          message: str) -> None:
    proc = remapped.cli("run", "--rm", *flags, "busybox", "true")
    assert proc.returncode == 125
    assert f"Error response from daemon: {message}" in proc.stderr.decode()
    ok = remapped.cli("run", "--rm", "--userns", "host", *flags, "busybox", "true")
    assert ok.returncode == 0, ok.stderr


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_userns_host_runs_unmapped_on_the_shifted_layers(remapped: Daemon,
                                                         root_pair: tuple[int, int],
                                                         runtime: str) -> None:
    out = remapped.out("run", "--rm", "--userns", "host", "--runtime", runtime, "busybox", "sh",
                       "-c", "cat /proc/self/uid_map; stat -c %u:%g /bin/busybox")
    # dockerd's behaviour: no user namespace, and the image's files keep their host owners
    assert out.split() == ["0", "0", "4294967295", f"{root_pair[0]}:{root_pair[1]}"]
    inspect = remapped.out("create", "--userns", "host", "busybox").strip()
    try:
        assert remapped.out("inspect", "--format", "{{.HostConfig.UsernsMode}}",
                            inspect).strip() == "host"
    finally:
        remapped.cli("rm", inspect)


# -- refusing bad values at start ------------------------------------------------------------


def _berthd_fails(tmp_path: Path, *flags: str, daemon_json: str = "{}") -> str:
    root = tmp_path / "d"
    root.mkdir()
    (root / "daemon.json").write_text(daemon_json)
    proc = subprocess.run(
        [*_tool("berthd"), "-H", f"unix://{root}/s.sock", "--data-root", str(root / "data"),
         "--exec-root", str(root / "exec"), "--pidfile", str(root / "pid"),
         "--config-file", str(root / "daemon.json"), *flags],
        capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1, proc.stderr
    assert not (root / "data" / "layers").exists()
    return proc.stderr.strip().splitlines()[-1]


def _free_id() -> int:
    return next(i for i in range(54321, 60000) if not _exists(i))


def _exists(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


def test_bad_remap_values_are_refused_in_dockerds_words(tmp_path: Path) -> None:
    cases = {
        "nosuchuser-berth": 'Error during uid lookup for "nosuchuser-berth": getent unable to '
                            'find entry "nosuchuser-berth" in passwd database',
        "a:b:c": 'Invalid user/group specification in --userns-remap: "a:b:c"',
        str(_free_id()): f"Uid {_free_id()} has no entry in /etc/passwd: getent unable to find "
                         f'entry "{_free_id()}" in passwd database',
        "root:nosuchgroup-berth": 'Error during groupname lookup for "nosuchgroup-berth": '
                                  'getent unable to find entry "nosuchgroup-berth" in group '
                                  "database",
    }
    for i, (value, message) in enumerate(cases.items()):
        case_dir = tmp_path / str(i)
        case_dir.mkdir()
        assert _berthd_fails(case_dir, "--userns-remap", value) == message
    file_dir = tmp_path / "file"
    file_dir.mkdir()
    assert _berthd_fails(file_dir, daemon_json='{"userns-remap": "a:b:c"}') == cases["a:b:c"]


def test_a_user_without_ranges_is_refused(tmp_path: Path) -> None:
    text = Path("/etc/subuid").read_text() if Path("/etc/subuid").exists() else ""
    if any(line.startswith(("daemon:", "1:")) for line in text.splitlines()):
        pytest.skip("the daemon user has subordinate IDs here")
    assert _berthd_fails(tmp_path, "--userns-remap", "daemon") == (
        'Can\'t create ID mappings: no subuid ranges found for user "daemon"')


def test_remapping_root_to_itself_turns_user_namespaces_off(daemon_with) -> None:  # type: ignore[no-untyped-def]
    d = daemon_with("--userns-remap", "root")
    assert "root cannot be remapped with itself; user namespaces are OFF" in d.log_path.read_text()
    info = json.loads(d.out("info", "--format", "{{json .}}"))
    assert info["DockerRootDir"] == str(d.data_root / "0.0")  # dockerd keeps the directory
