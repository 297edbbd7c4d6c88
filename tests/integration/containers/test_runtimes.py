"""One probe, three OCI runtimes on the same bundle: the default (runc), berth's own
(`--runtime berth`) and crun. What the container sees must agree, except where the runtimes
legitimately differ (listed in ``KNOWN``)."""

from __future__ import annotations

import os
import shutil

import pytest

pytestmark = pytest.mark.usefixtures("daemon")

RUNTIMES = ["default", "berth", "crun"]

PROBE = r"""
echo "id=$(id)"
echo "host=$(hostname)"
echo "cwd=$(pwd)"
echo "pid1=$(cat /proc/1/cmdline | tr '\0' ' ')"
grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status
echo "dev=$(ls -A /dev | sort | tr '\n' ' ')"
for n in cgroup ipc mnt net pid uts; do echo "ns.$n=$(readlink /proc/self/ns/$n)"; done
echo "lo=$(cat /sys/class/net/lo/operstate) $(ls /sys/class/net | tr '\n' ' ')"
echo "env=$(env | grep -v '^SHLVL=\|^PWD=\|^OLDPWD=' | sort | tr '\n' ' ')"
cut -d' ' -f5,6,9 /proc/self/mountinfo | sort | sed 's/^/mount=/'
touch /sys/x 2>/dev/null && echo sys=rw || echo sys=ro
touch /proc/sys/x 2>/dev/null && echo procsys=rw || echo procsys=ro
"""

# Differences between runtimes that are choices each one makes within the OCI spec, seen on this
# host (cgroup v1). Each is (runtime, what, why).
KNOWN = [
    ("crun", "/dev/core", "crun adds the /dev/core -> /proc/kcore symlink that runc dropped"),
    ("crun", "masked files", "crun masks files with the host's /dev/null (devtmpfs); runc "
     "and berth bind the container's own /dev/null (tmpfs); both read empty"),
    ("crun", "/sys/fs/cgroup fstype", "crun mounts a cgroup fs where runc mounts a tmpfs with "
     "one cgroup mount per v1 controller under it"),
    ("berth", "cgroup mount flags", "berth binds the v1 controllers without nosuid,nodev,noexec "
     "and makes the /sys/fs/cgroup tmpfs read-only; runc leaves the tmpfs rw; the controllers "
     "are read-only in both"),
]


def _probe(daemon, runtime):
    args = [] if runtime == "default" else ["--runtime", runtime]
    proc = daemon.cli("run", "--rm", *args, "-h", "probe", "-u", "nobody", "-w", "/tmp",
                      "-e", "FOO=bar", "busybox", "sh", "-c", PROBE)
    assert proc.returncode == 0, (runtime, proc.stderr)
    facts: dict[str, str] = {}
    mounts: dict[str, tuple[str, str]] = {}
    for line in proc.stdout.decode().splitlines():
        key, _, value = line.partition("=") if not line.startswith(("Cap", "NoNew", "Seccomp")) \
            else line.partition(":")
        if key == "mount":
            target, opts, fstype = value.split(" ")
            mounts[target] = (opts, fstype)
        else:
            facts[key] = value.strip()
    return facts, mounts


@pytest.fixture(scope="module")
def probes(daemon):
    missing = [r for r in ("runc", "crun") if shutil.which(r) is None]
    if missing:
        pytest.skip(f"not installed: {missing}")
    return {r: _probe(daemon, r) for r in RUNTIMES}


def test_default_runtime_is_the_daemons(daemon):
    # runc unless the suite runs with BERTH_TEST_DAEMON_ARGS="--default-runtime ..."
    default = daemon.out("info", "-f", "{{.DefaultRuntime}}").strip()
    if "--default-runtime" not in os.environ.get("BERTH_TEST_DAEMON_ARGS", ""):
        assert default == "runc"
    cid = daemon.out("create", "busybox", "true").strip()
    try:
        assert daemon.out("inspect", "-f", "{{.HostConfig.Runtime}}", cid).strip() == default
    finally:
        daemon.cli("rm", cid)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_isolation_under_each_runtime(probes, runtime):
    facts, mounts = probes[runtime]
    assert facts["id"].startswith("uid=65534(nobody) gid=65534(nobody)")
    assert facts["host"] == "probe" and facts["cwd"] == "/tmp"
    assert facts["pid1"].startswith("sh -c")  # the user's process is PID 1
    for ns in ("ipc", "mnt", "net", "pid", "uts"):
        assert facts[f"ns.{ns}"] != os.readlink(f"/proc/self/ns/{ns}"), ns
    # Docker on cgroup v1 keeps the host's cgroup namespace
    assert facts["ns.cgroup"] == os.readlink("/proc/self/ns/cgroup") or \
        os.path.exists("/sys/fs/cgroup/cgroup.controllers")
    assert "lo" in facts["lo"].split()[1:]  # (eth0 too, on the default bridge network)
    assert mounts["/"][1] == "overlay"
    for path in ("/etc/hostname", "/etc/hosts", "/etc/resolv.conf", "/proc", "/sys",
                 "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue"):
        assert path in mounts, (runtime, path)
    assert mounts["/sys"][0].startswith("ro") and facts["sys"] == "ro"
    assert facts["procsys"] == "ro"
    # a non-root user gets no capabilities; the bounding set is Docker's default
    assert facts["CapEff"] == "0000000000000000"
    assert facts["CapBnd"] == "00000000a80425fb"
    assert facts["Seccomp"] == "2"
    env = facts["env"].split()
    assert "FOO=bar" in env and "HOSTNAME=probe" in env
    assert any(e.startswith("HOME=/") for e in env)  # nobody's home from /etc/passwd
    assert any(e.startswith("PATH=/usr/local/sbin:") for e in env)


def _comparable(probe, runtime):
    facts, mounts = probe
    facts = {k: v for k, v in facts.items() if not k.startswith("ns.")}  # inode numbers
    if runtime == "crun":  # KNOWN: /dev/core
        facts["dev"] = " ".join(d for d in facts["dev"].split() if d != "core")
    shown = {}
    for target, (opts, fstype) in mounts.items():
        if target.startswith("/sys/fs/cgroup"):
            shown[target] = "cgroup-area"  # KNOWN: cgroup mount flags and fstype
        elif fstype in ("tmpfs", "devtmpfs") and target.startswith("/proc/"):
            shown[target] = "masked"  # KNOWN: masked files
        else:
            shown[target] = f"{fstype} {'ro' if opts.startswith('ro') else 'rw'}"
    return facts, shown


@pytest.mark.parametrize("runtime", ["berth", "crun"])
def test_runtime_sees_what_runc_sees(probes, runtime):
    want_facts, want_mounts = _comparable(probes["default"], "default")
    got_facts, got_mounts = _comparable(probes[runtime], runtime)
    assert got_facts == want_facts
    assert got_mounts == want_mounts
