"""Docker profile → OCI seccomp → BPF: the translation, the compiler and a real kernel install."""

from __future__ import annotations

import ctypes
import errno
import json
import os
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from berth.errors import InvalidArgument
from berth.runtime import seccomp, seccomp_bpf
from berth.runtime.init import seccomp as installer
from berth.runtime.spec import ALL_CAPABILITIES, DEFAULT_CAPABILITIES
from berth.runtime.syscall_table import SYSCALLS

X86_64 = seccomp_bpf.AUDIT_ARCH["SCMP_ARCH_X86_64"]
I386 = seccomp_bpf.AUDIT_ARCH["SCMP_ARCH_X86"]
EPERM = seccomp_bpf.RET_ERRNO | errno.EPERM
ALLOW = seccomp_bpf.RET_ALLOW


def default_oci(caps=DEFAULT_CAPABILITIES, kernel=(6, 1)):
    return seccomp.to_oci(seccomp.default_profile(), caps, goarch="amd64", kernel=kernel)


def names_in(oci):
    return {n for rule in oci["syscalls"] for n in rule["names"]}


def test_translation_keeps_native_arches_and_resolves_caps():
    oci = default_oci()
    assert oci["defaultAction"] == "SCMP_ACT_ERRNO"
    assert oci["defaultErrnoRet"] == 1
    assert oci["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    names = names_in(oci)
    assert {"read", "arch_prctl", "modify_ldt", "ptrace"} <= names
    assert not {"mount", "reboot", "s390_runtime_instr", "riscv_flush_icache"} & names
    for rule in oci["syscalls"]:
        assert set(rule) <= {"names", "action", "errnoRet", "args"}


def test_caps_add_their_syscalls():
    plain = names_in(default_oci())
    admin = names_in(default_oci(DEFAULT_CAPABILITIES + ("CAP_SYS_ADMIN",)))
    assert {"mount", "umount2", "unshare", "setns"} <= admin - plain
    # With CAP_SYS_ADMIN the masked clone rule and the clone3 ENOSYS rule are gone.
    assert not any(r.get("errnoRet") == errno.ENOSYS for r in
                   default_oci(DEFAULT_CAPABILITIES + ("CAP_SYS_ADMIN",))["syscalls"])
    assert "reboot" in names_in(default_oci(ALL_CAPABILITIES))


def test_min_kernel_excludes_newer_rules():
    assert "ptrace" not in names_in(default_oci(kernel=(4, 4)))
    assert "ptrace" in names_in(default_oci(kernel=(4, 8)))


def test_security_opt_choices():
    caps = DEFAULT_CAPABILITIES
    assert seccomp.seccomp_for_container(["seccomp=unconfined"], caps) is None
    assert seccomp.seccomp_for_container([], caps, privileged=True) is None
    assert seccomp.seccomp_for_container([], caps)["defaultAction"] == "SCMP_ACT_ERRNO"
    custom = seccomp.seccomp_for_container(['seccomp={"defaultAction":"SCMP_ACT_ALLOW"}'], caps)
    assert custom == {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": []}
    with pytest.raises(InvalidArgument, match="Decoding seccomp profile failed"):
        seccomp.seccomp_for_container(["seccomp={nope"], caps)
    with pytest.raises(InvalidArgument, match="client must send"):
        seccomp.seccomp_for_container(["seccomp=/etc/p.json"], caps)


@pytest.mark.parametrize("profile", [
    {"defaultAction": "SCMP_ACT_BOGUS"},
    {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": {}},
    {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "X"}]},
    {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 9, "op": "SCMP_CMP_EQ"}]}]},
    {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": -1, "op": "SCMP_CMP_EQ"}]}]},
])
def test_bad_profiles_are_invalid_argument(profile):
    with pytest.raises(InvalidArgument):
        seccomp.parse_profile(json.dumps(profile))


def verdict(program, name, args=(0,) * 6, arch=X86_64, table="x86_64"):
    return seccomp_bpf.run(program, SYSCALLS[table][name], arch, args)


def test_default_program_decisions():
    prog = seccomp_bpf.compile_filter(default_oci())
    assert len(prog) < seccomp_bpf.BPF_MAXINSNS
    assert verdict(prog, "read") == ALLOW
    assert verdict(prog, "mount") == EPERM
    assert verdict(prog, "clone3") == seccomp_bpf.RET_ERRNO | errno.ENOSYS
    assert verdict(prog, "socket", (1,) + (0,) * 5) == ALLOW
    assert verdict(prog, "socket", (38,) + (0,) * 5) == EPERM  # AF_VSOCK... no: AF_KCM family
    assert verdict(prog, "personality", (0xFFFFFFFF,) + (0,) * 5) == ALLOW
    assert verdict(prog, "personality", (0x1FFFFFFFF,) + (0,) * 5) == EPERM
    assert verdict(prog, "clone", (0x3D0F00,) + (0,) * 5) == ALLOW  # a thread
    assert verdict(prog, "clone", (0x20000 | 17,) + (0,) * 5) == EPERM  # CLONE_NEWNS
    assert verdict(prog, "read", arch=I386, table="x86") == ALLOW
    assert verdict(prog, "mount", arch=I386, table="x86") == EPERM
    assert verdict(prog, "read", table="x32") == ALLOW
    assert seccomp_bpf.run(prog, 0, 0xDEADBEEF) == seccomp_bpf.RET_KILL_PROCESS
    assert seccomp_bpf.run(prog, 2000, X86_64) == seccomp_bpf.RET_ERRNO | errno.ENOSYS


def test_arch_not_listed_is_killed():
    prog = seccomp_bpf.compile_filter({"defaultAction": "SCMP_ACT_ALLOW",
                                       "architectures": ["SCMP_ARCH_X86_64"], "syscalls": []})
    assert verdict(prog, "read") == ALLOW
    assert verdict(prog, "read", arch=I386, table="x86") == seccomp_bpf.RET_KILL_PROCESS
    assert verdict(prog, "read", table="x32") == seccomp_bpf.RET_KILL_PROCESS


def test_actions_map_to_kernel_values():
    v = seccomp_bpf.action_value
    assert v("SCMP_ACT_ERRNO", 38) == 0x50026
    assert v("SCMP_ACT_ERRNO", None) == 0x50001
    assert v("SCMP_ACT_KILL", None) == 0
    assert v("SCMP_ACT_KILL_PROCESS", None) == 0x80000000
    assert v("SCMP_ACT_TRACE", 5) == 0x7FF00005
    assert v("SCMP_ACT_TRAP", None) == 0x30000
    assert v("SCMP_ACT_LOG", None) == 0x7FFC0000
    with pytest.raises(InvalidArgument):
        v("SCMP_ACT_NOTIFY", None)


OPS = {
    "SCMP_CMP_EQ": lambda a, v, t: a == v,
    "SCMP_CMP_NE": lambda a, v, t: a != v,
    "SCMP_CMP_LT": lambda a, v, t: a < v,
    "SCMP_CMP_LE": lambda a, v, t: a <= v,
    "SCMP_CMP_GT": lambda a, v, t: a > v,
    "SCMP_CMP_GE": lambda a, v, t: a >= v,
    "SCMP_CMP_MASKED_EQ": lambda a, v, t: a & v == t,
}
u64 = st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([0, 1, 2**32 - 1, 2**32, 2**63]))


@settings(max_examples=300, deadline=None)
@given(op=st.sampled_from(sorted(OPS)), arg=u64, value=u64, two=u64, index=st.integers(0, 5))
def test_64bit_comparisons_match_python(op, arg, value, two, index):
    prog = seccomp_bpf.compile_filter({
        "defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ALLOW",
                      "args": [{"index": index, "value": value, "valueTwo": two, "op": op}]}]})
    args = [0] * 6
    args[index] = arg
    expected = ALLOW if OPS[op](arg, value, two) else EPERM
    assert verdict(prog, "getpid", tuple(args)) == expected


def test_pack_is_sock_filter_layout():
    packed = seccomp_bpf.pack([(0x20, 0, 0, 4), (0x06, 0, 0, ALLOW)])
    assert len(packed) == 16
    assert struct.unpack("=HBBI", packed[8:]) == (0x06, 0, 0, ALLOW)


def _in_child(fn) -> int:
    """Run ``fn`` in a forked child; its return value is the exit status."""
    pid = os.fork()
    if pid == 0:
        try:
            os._exit(fn())
        except BaseException:  # noqa: BLE001
            os._exit(99)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


PR_SET_NO_NEW_PRIVS = 38


def test_kernel_enforces_the_default_profile():
    program = installer.prepare(default_oci())
    assert program is not None
    libc = ctypes.CDLL(None, use_errno=True)

    def child() -> int:
        libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        installer.install(program)
        with open("/proc/self/status") as f:
            status = f.read()
        if "Seccomp:\t2" not in status:
            return 10
        os.getpid()
        # unshare(CLONE_NEWNS) is CAP_SYS_ADMIN-only in Docker's profile: EPERM even for root.
        if libc.unshare(0x20000) != -1 or ctypes.get_errno() != errno.EPERM:
            return 11
        # personality(0xffffffff) queries: allowed; personality(0x40000) is not in the list.
        if libc.personality(ctypes.c_ulong(0xFFFFFFFF)) == -1:
            return 12
        if libc.personality(ctypes.c_ulong(0x0040000)) != -1 or ctypes.get_errno() != errno.EPERM:
            return 13
        return 0

    assert _in_child(child) == 0


def test_kernel_enforces_argument_rules_and_errno():
    program = installer.prepare({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42,
                      "args": [{"index": 1, "value": 7, "op": "SCMP_CMP_GT"}]}]})
    assert program is not None
    libc = ctypes.CDLL(None, use_errno=True)

    def child() -> int:
        libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        installer.install(program)
        ctypes.set_errno(0)
        libc.getpriority(0, 0)
        if ctypes.get_errno() != 0:
            return 20
        if libc.getpriority(0, 8) != -1 or ctypes.get_errno() != 42:
            return 21
        return 0

    assert _in_child(child) == 0


def test_prepare_refuses_unknown_flags_and_arches():
    with pytest.raises(InvalidArgument):
        installer.prepare({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["NOPE"]})
    with pytest.raises(InvalidArgument):
        installer.prepare({"defaultAction": "SCMP_ACT_ALLOW",
                           "architectures": ["SCMP_ARCH_AARCH64"]})
    assert installer.prepare(None) is None
