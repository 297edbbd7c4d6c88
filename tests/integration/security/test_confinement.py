"""Default confinement equals Docker's: one probe, run in containers under every runtime.

The expected values are Docker's (shared/reference/docker-defaults.json): the 14 default
capabilities (mask 00000000a80425fb) in bounding/permitted/effective, nothing inheritable or
ambient, seccomp filter mode 2, no_new_privs off, masked and read-only /proc and /sys paths.
"""

from __future__ import annotations

import json
import os
import re
import time

import pytest

pytestmark = pytest.mark.usefixtures("daemon")

RUNTIMES = ["runc", "berth", "crun"]
DOCKER_CAPS = "00000000a80425fb"
PROBE = r"""
grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|Seccomp|NoNewPrivs):' /proc/self/status | tr -d ' \t'
for f in /proc/kcore /proc/keys /proc/timer_list /proc/sched_debug; do
  if [ -e $f ]; then echo $f=$(cat $f 2>/dev/null | wc -c); else echo $f=absent; fi
done
for d in /sys/firmware /proc/acpi /proc/scsi; do
  if [ -e $d ]; then echo $d=$(ls -A $d | wc -l); else echo $d=absent; fi
done
if (echo x > /proc/sys/kernel/domainname) 2>/dev/null
then echo procsys=rw; else echo procsys=ro; fi
if (echo h > /proc/sysrq-trigger) 2>/dev/null; then echo sysrq=rw; else echo sysrq=ro; fi
echo dev=$(ls /dev | tr '\n' ,)
"""


def probe(daemon, *args: str) -> dict[str, str]:
    proc = daemon.cli("run", "--rm", *args, "busybox", "sh", "-c", PROBE)
    assert proc.returncode == 0, proc.stderr
    out = {}
    for line in proc.stdout.decode().splitlines():
        key, _, value = line.replace(":", "=", 1).partition("=")
        out[key] = value
    return out


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_default_container_matches_docker(daemon, runtime):
    p = probe(daemon, "--runtime", runtime)
    assert p["CapEff"] == p["CapPrm"] == p["CapBnd"] == DOCKER_CAPS
    assert p["CapInh"] == p["CapAmb"] == "0000000000000000"
    assert p["Seccomp"] == "2"
    assert p["NoNewPrivs"] == "0"
    masked = ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug",
              "/sys/firmware", "/proc/acpi", "/proc/scsi"]
    assert {k: p[k] for k in masked} == {k: "0" if os.path.exists(k) else "absent"
                                        for k in masked}
    assert p["procsys"] == "ro"
    assert p["sysrq"] == "ro"
    devs = set(p["dev"].strip(",").split(","))
    # What Docker shows without a tty.
    assert {"fd", "full", "mqueue", "null", "ptmx", "pts", "random", "shm", "stderr",
            "stdin", "stdout", "tty", "urandom", "zero"} <= devs
    assert not devs & {"sda", "mem", "kmsg", "fuse", "loop0"}


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_privileged_lifts_everything(daemon, runtime):
    p = probe(daemon, "--runtime", runtime, "--privileged")
    assert int(p["CapEff"], 16) == int(p["CapBnd"], 16)
    assert int(p["CapEff"], 16) & (1 << 21)  # CAP_SYS_ADMIN
    assert p["Seccomp"] == "0"
    # Nothing is masked: /proc/timer_list always has content when the kernel has it.
    assert p["/proc/timer_list"] != "0"
    assert p["procsys"] == "rw"
    # every host device node is there (Docker's privileged mode)
    host_nodes = {n for n in os.listdir("/dev")
                  if os.path.exists(f"/dev/{n}") and n not in ("console", "pts", "shm", "fd")
                  and (os.stat(f"/dev/{n}").st_mode & 0o170000) in (0o020000, 0o060000)}
    assert host_nodes <= set(p["dev"].strip(",").split(","))


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_seccomp_unconfined_and_no_new_privileges(daemon, runtime):
    p = probe(daemon, "--runtime", runtime, "--security-opt", "seccomp=unconfined",
              "--security-opt", "no-new-privileges")
    assert p["Seccomp"] == "0"
    assert p["NoNewPrivs"] == "1"
    assert p["CapEff"] == DOCKER_CAPS


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_seccomp_blocks_what_docker_blocks(daemon, runtime):
    # unshare(CLONE_NEWNS) and mount need CAP_SYS_ADMIN in Docker's profile: EPERM.
    script = "unshare -m true; echo unshare=$?; mkdir -p /m; mount -t tmpfs t /m; echo mount=$?"
    proc = daemon.cli("run", "--rm", "--runtime", runtime, "--cap-add", "SYS_ADMIN",
                      "--security-opt", "seccomp=unconfined", "busybox", "sh", "-c", script)
    assert b"unshare=0" in proc.stdout and b"mount=0" in proc.stdout, proc.stdout + proc.stderr
    proc = daemon.cli("run", "--rm", "--runtime", runtime, "busybox", "sh", "-c", script)
    assert b"unshare=0" not in proc.stdout and b"mount=0" not in proc.stdout, proc.stdout


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_custom_profile_from_file(daemon, runtime, tmp_path):
    profile = tmp_path / "p.json"
    # mkdir fails with ENOSPC; mkdirat only when its dirfd is AT_FDCWD (-100, a 64-bit compare).
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 28},
        {"names": ["mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 28,
         "args": [{"index": 0, "value": 2**64 - 100, "op": "SCMP_CMP_EQ"}]}]}))
    proc = daemon.cli("run", "--rm", "--runtime", runtime, "--security-opt",
                      f"seccomp={profile}", "busybox", "mkdir", "/newdir")
    assert proc.returncode != 0
    assert b"No space left on device" in proc.stderr, proc.stderr


def test_bad_profile_is_a_clear_error(daemon, tmp_path):
    profile = tmp_path / "bad.json"
    profile.write_text('{"defaultAction": "SCMP_ACT_NOPE"}')
    proc = daemon.cli("run", "--rm", "--security-opt", f"seccomp={profile}", "busybox", "true")
    assert proc.returncode == 125
    assert b"seccomp profile" in proc.stderr


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_cap_add_and_drop(daemon, runtime):
    p = probe(daemon, "--runtime", runtime, "--cap-drop", "ALL", "--cap-add", "NET_ADMIN")
    assert p["CapEff"] == p["CapBnd"] == f"{1 << 12:016x}"
    p = probe(daemon, "--runtime", runtime, "--cap-drop", "chown", "--cap-drop", "CAP_KILL")
    assert int(p["CapEff"], 16) == int(DOCKER_CAPS, 16) & ~(1 << 0) & ~(1 << 5)
    p = probe(daemon, "--runtime", runtime, "--cap-add", "ALL")
    assert int(p["CapEff"], 16) & (1 << 21)


def test_unknown_capability_is_rejected(daemon):
    proc = daemon.cli("run", "--rm", "--cap-add", "NOPE", "busybox", "true")
    assert proc.returncode == 125
    assert b'unknown capability: "CAP_NOPE"' in proc.stderr


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_sysctl_ulimit_device(daemon, runtime):
    script = ("cat /proc/sys/net/ipv4/ip_forward; ulimit -n; ulimit -Hn; "
              "ls -l /dev/mynull | cut -c1; echo x > /dev/mynull && echo wrote")
    proc = daemon.cli("run", "--rm", "--runtime", runtime, "--sysctl", "net.ipv4.ip_forward=1",
                      "--ulimit", "nofile=512:512", "--device", "/dev/null:/dev/mynull",
                      "busybox", "sh", "-c", script)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().split() == ["1", "512", "512", "c", "wrote"]


def test_non_namespaced_sysctl_is_refused(daemon):
    proc = daemon.cli("run", "--rm", "--sysctl", "kernel.panic=1", "busybox", "true")
    assert proc.returncode != 0


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_exec_is_confined_too(daemon, runtime):
    cid = daemon.out("run", "-d", "--runtime", runtime, "busybox", "sleep", "30").strip()
    try:
        out = daemon.out("exec", cid, "grep", "-E", "^(Seccomp|CapEff):", "/proc/self/status")
        fields = dict(re.findall(r"(\w+):\s+(\S+)", out))
        assert fields == {"Seccomp": "2", "CapEff": DOCKER_CAPS}
    finally:
        daemon.cli("rm", "-f", cid)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_init_is_pid1_and_forwards_signals(daemon, runtime):
    out = daemon.out("run", "--rm", "--runtime", runtime, "--init", "busybox", "cat",
                     "/proc/1/cmdline")
    assert out.split("\0")[:2] == ["/sbin/docker-init", "--"]
    # sleep as PID 1 ignores SIGTERM; under the reaper it gets it and the stop is quick.
    cid = daemon.out("run", "-d", "--runtime", runtime, "--init", "busybox", "sleep", "60").strip()
    try:
        started = time.monotonic()
        daemon.out("stop", "-t", "20", cid)
        assert time.monotonic() - started < 10
        code = daemon.out("inspect", "-f", "{{.State.ExitCode}}", cid).strip()
        assert code == "143"  # tini reports the child's SIGTERM as 128+15
    finally:
        daemon.cli("rm", "-f", cid)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_no_new_privileges_with_the_default_profile(daemon, runtime):
    # berth-runtime then loads the filter as the very last step before execve
    p = probe(daemon, "--runtime", runtime, "--security-opt", "no-new-privileges:true")
    assert (p["Seccomp"], p["NoNewPrivs"], p["CapEff"]) == ("2", "1", DOCKER_CAPS)
    # and as a non-root user, whose capabilities are all gone
    p = probe(daemon, "--runtime", runtime, "--user", "1000:1000", "--security-opt",
              "no-new-privileges")
    assert (p["Seccomp"], p["NoNewPrivs"], p["CapEff"]) == ("2", "1", "0000000000000000")


def test_missing_profile_file_is_reported_by_the_client(daemon, tmp_path):
    proc = daemon.cli("run", "--rm", "--security-opt", f"seccomp={tmp_path}/nope.json",
                      "busybox", "true")
    assert proc.returncode == 125
    assert b"nope.json" in proc.stderr
    assert b"no such file or directory" in proc.stderr


def _docker_available() -> bool:
    import shutil
    import subprocess

    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=5).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.compat
def test_probe_matches_real_docker(daemon, test_images):
    """Side by side with a real dockerd when one runs here (shared/tools/anchors-setup.sh)."""
    import subprocess

    if not _docker_available():
        pytest.skip("no dockerd on this host")
    subprocess.run(["docker", "load", "-i", str(test_images.busybox_docker_tar)],
                   capture_output=True, check=True, timeout=120)
    proc = subprocess.run(["docker", "run", "--rm", "busybox", "sh", "-c", PROBE],
                          capture_output=True, timeout=120, check=True)
    theirs = dict(line.replace(":", "=", 1).partition("=")[::2]
                  for line in proc.stdout.decode().splitlines())
    ours = probe(daemon)
    keys = ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "Seccomp", "NoNewPrivs",
            "procsys", "sysrq", "/proc/kcore", "/proc/keys", "/sys/firmware"]
    assert {k: ours.get(k) for k in keys} == {k: theirs.get(k) for k in keys}


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_systempaths_unconfined_drops_masked_and_readonly_paths(daemon, runtime):
    """Counts are dockerd 20.10.24's for the same command: 2 by default, 0 unconfined."""
    count = "grep -cE ' /proc/(kcore|sys|keys) ' /proc/self/mountinfo || true"
    assert daemon.out("run", "--rm", "--runtime", runtime, "busybox", "sh", "-c",
                      count) == "2\n"
    assert daemon.out("run", "--rm", "--runtime", runtime, "--security-opt",
                      "systempaths=unconfined", "busybox", "sh", "-c", count) == "0\n"
