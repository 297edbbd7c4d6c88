"""OCI ``linux.seccomp`` → a classic BPF program for seccomp(SECCOMP_SET_MODE_FILTER) (pure).

berth-runtime has no libseccomp, so it compiles the filter itself. The program:

1. checks ``seccomp_data.arch`` against the spec's architectures (x86_64, x32, x86); any other
   architecture is killed, so a 32-bit entry point cannot bypass the 64-bit rules;
2. on x86_64, sends syscall numbers with the x32 bit to the x32 rules (or kills them);
3. per architecture: syscalls whose rules are unconditional are matched in compact runs of
   ``jeq`` that jump to a shared ``ret``; syscalls with argument conditions get a block each,
   one sub-block per rule (all conditions must hold), then the default action;
4. like runc, a syscall newer than every syscall this table knows gets ENOSYS instead of the
   default errno, so programs fall back from calls the profile has never heard of.

64-bit argument comparisons are done on the two 32-bit halves (high first), little-endian.
Jump offsets of conditional jumps are 8 bits: long distances go through ``ja`` (32 bits).
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from berth.errors import InvalidArgument

# BPF opcodes (linux/bpf_common.h).
BPF_LD, BPF_ALU, BPF_JMP, BPF_RET = 0x00, 0x04, 0x05, 0x06
BPF_W, BPF_ABS, BPF_K = 0x00, 0x20, 0x00
BPF_AND = 0x50
BPF_JA, BPF_JEQ, BPF_JGT, BPF_JGE = 0x00, 0x10, 0x20, 0x30
LD_ABS = BPF_LD | BPF_W | BPF_ABS
JEQ, JGT, JGE, JA = BPF_JMP | BPF_JEQ | BPF_K, BPF_JMP | BPF_JGT | BPF_K, \
    BPF_JMP | BPF_JGE | BPF_K, BPF_JMP | BPF_JA
AND = BPF_ALU | BPF_AND | BPF_K
RET = BPF_RET | BPF_K
BPF_MAXINSNS = 4096

# seccomp return values (linux/seccomp.h).
RET_KILL_PROCESS = 0x80000000
RET_KILL_THREAD = 0x00000000
RET_TRAP = 0x00030000
RET_ERRNO = 0x00050000
RET_USER_NOTIF = 0x7FC00000
RET_TRACE = 0x7FF00000
RET_LOG = 0x7FFC0000
RET_ALLOW = 0x7FFF0000

# struct seccomp_data offsets.
OFF_NR, OFF_ARCH = 0, 4


def _arg_lo(index: int) -> int:
    return 16 + 8 * index


def _arg_hi(index: int) -> int:
    return 16 + 8 * index + 4


# AUDIT_ARCH_* (linux/audit.h) for the architectures berth has syscall tables for.
AUDIT_ARCH = {"SCMP_ARCH_X86_64": 0xC000003E, "SCMP_ARCH_X32": 0xC000003E,
              "SCMP_ARCH_X86": 0x40000003}
_TABLE_NAME = {"SCMP_ARCH_X86_64": "x86_64", "SCMP_ARCH_X32": "x32", "SCMP_ARCH_X86": "x86"}
_IS_64BIT = {"SCMP_ARCH_X86_64": True, "SCMP_ARCH_X32": True, "SCMP_ARCH_X86": False}
X32_SYSCALL_BIT = 0x40000000
_CHUNK = 200  # unconditional jeq per run; keeps every conditional offset under 256


@dataclass(frozen=True)
class Insn:
    """One instruction; ``jt``/``jf`` are label names (or None = next instruction)."""

    code: int
    k: int = 0
    jt: str | None = None
    jf: str | None = None
    target: str | None = None  # for ``ja``


Item = Insn | str  # a str is a label at this position


def action_value(action: str, errno_ret: int | None, default_errno: int = errno.EPERM) -> int:
    """A profile action → SECCOMP_RET_* with its 16-bit data."""
    data = (default_errno if errno_ret is None else errno_ret) & 0xFFFF
    match action:
        case "SCMP_ACT_ALLOW":
            return RET_ALLOW
        case "SCMP_ACT_ERRNO":
            return RET_ERRNO | data
        case "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD":
            return RET_KILL_THREAD
        case "SCMP_ACT_KILL_PROCESS":
            return RET_KILL_PROCESS
        case "SCMP_ACT_TRAP":
            return RET_TRAP
        case "SCMP_ACT_TRACE":
            return RET_TRACE | data
        case "SCMP_ACT_LOG":
            return RET_LOG
        case "SCMP_ACT_NOTIFY":
            raise InvalidArgument("SCMP_ACT_NOTIFY is not supported by berth-runtime")
    raise InvalidArgument(f"invalid seccomp action {action!r}")


@dataclass(frozen=True)
class _Rule:
    action: int
    args: tuple[tuple[int, str, int, int], ...]  # (index, op, value, valueTwo)


def _syscall_tables() -> Mapping[str, Mapping[str, int]]:
    from berth.runtime.syscall_table import SYSCALLS  # big table: only when a filter is built

    return SYSCALLS


def _rules_by_number(seccomp: Mapping[str, Any], arch: str,
                     default_errno: int) -> dict[int, list[_Rule]]:
    table = _syscall_tables()[_TABLE_NAME[arch]]
    out: dict[int, list[_Rule]] = {}
    for entry in seccomp.get("syscalls") or []:
        action = action_value(str(entry.get("action")), entry.get("errnoRet"), default_errno)
        args = []
        for a in entry.get("args") or []:
            index, value, two = int(a["index"]), int(a.get("value", 0)), int(a.get("valueTwo", 0))
            if not 0 <= index <= 5:
                raise InvalidArgument(f"invalid seccomp argument index {index}")
            args.append((index, str(a["op"]), value, two))
        for name in entry.get("names") or []:
            number = table.get(name)
            if number is None:  # not a syscall on this architecture (runc ignores these too)
                continue
            out.setdefault(number, []).append(_Rule(action, tuple(args)))
    return out


def _compare(index: int, op: str, value: int, two: int, wide: bool, fail: str,
             ok: str) -> list[Item]:
    """Fall through when ``args[index] <op> value`` holds; jump to ``fail`` otherwise."""
    vhi, vlo = value >> 32 & 0xFFFFFFFF, value & 0xFFFFFFFF
    lo = Insn(LD_ABS, _arg_lo(index))
    hi = Insn(LD_ABS, _arg_hi(index))
    if not wide:  # 32-bit architectures: only the low word exists
        vhi = 0
    match op:
        case "SCMP_CMP_EQ":
            head = [hi, Insn(JEQ, vhi, None, fail)] if wide else []
            return [*head, lo, Insn(JEQ, vlo, None, fail)]
        case "SCMP_CMP_NE":
            head = [hi, Insn(JEQ, vhi, None, ok)] if wide else []
            return [*head, lo, Insn(JEQ, vlo, fail, None), ok]
        case "SCMP_CMP_GT" | "SCMP_CMP_GE":
            low_op = JGT if op == "SCMP_CMP_GT" else JGE
            head = [hi, Insn(JGT, vhi, ok, None), Insn(JEQ, vhi, None, fail)] if wide else []
            return [*head, lo, Insn(low_op, vlo, None, fail), ok]
        case "SCMP_CMP_LT" | "SCMP_CMP_LE":
            # LT = not GE, LE = not GT
            low_op = JGE if op == "SCMP_CMP_LT" else JGT
            head = [hi, Insn(JGT, vhi, fail, None), Insn(JEQ, vhi, None, ok)] if wide else []
            return [*head, lo, Insn(low_op, vlo, fail, None), ok]
        case "SCMP_CMP_MASKED_EQ":
            thi, tlo = two >> 32 & 0xFFFFFFFF, two & 0xFFFFFFFF
            head = [hi, Insn(AND, vhi), Insn(JEQ, thi, None, fail)] if wide else []
            return [*head, lo, Insn(AND, vlo), Insn(JEQ, tlo, None, fail)]
    raise InvalidArgument(f"invalid seccomp operator {op!r}")


class _Labels:
    def __init__(self) -> None:
        self.n = 0

    def new(self, hint: str) -> str:
        self.n += 1
        return f"{hint}.{self.n}"


def _arch_section(seccomp: Mapping[str, Any], arch: str, default: int, default_errno: int,
                  labels: _Labels) -> list[Item]:
    rules = _rules_by_number(seccomp, arch, default_errno)
    wide = _IS_64BIT[arch]
    items: list[Item] = []
    plain: dict[int, list[int]] = {}  # action → numbers whose rules have no conditions
    cond: dict[int, list[_Rule]] = {}
    for number, rs in sorted(rules.items()):
        unconditional = [r for r in rs if not r.args]
        if unconditional:
            plain.setdefault(unconditional[0].action, []).append(number)
        else:
            cond[number] = rs
    for action, numbers in plain.items():
        if action == default:
            continue
        for start in range(0, len(numbers), _CHUNK):
            chunk = numbers[start:start + _CHUNK]
            hit, after = labels.new("hit"), labels.new("after")
            items.append(Insn(LD_ABS, OFF_NR))
            items.extend(Insn(JEQ, n, hit, None) for n in chunk)
            items += [Insn(JA, target=after), hit, Insn(RET, action), after]
    for number, rs in cond.items():
        next_syscall = labels.new("next")
        items += [Insn(LD_ABS, OFF_NR), Insn(JEQ, number, None, next_syscall)]
        for rule in rs:
            fail = labels.new("fail")
            for index, op, value, two in rule.args:
                items += _compare(index, op, value, two, wide, fail, labels.new("ok"))
            items += [Insn(RET, rule.action), fail]
        items += [Insn(RET, default), next_syscall]
    table = _syscall_tables()[_TABLE_NAME[arch]]
    if default & 0xFFFF0000 == RET_ERRNO and table:
        # Unknown future syscalls: ENOSYS, so libc falls back instead of failing with EPERM.
        known = labels.new("known")
        items += [Insn(LD_ABS, OFF_NR), Insn(JGT, max(table.values()), None, known),
                  Insn(RET, RET_ERRNO | errno.ENOSYS), known]
    items.append(Insn(RET, default))
    return items


def compile_filter(seccomp: Mapping[str, Any]) -> list[tuple[int, int, int, int]]:
    """The program as ``(code, jt, jf, k)`` tuples. Raises InvalidArgument on bad input."""
    default_errno = seccomp.get("defaultErrnoRet")
    default_errno = errno.EPERM if default_errno is None else int(default_errno)
    default = action_value(str(seccomp.get("defaultAction")), default_errno, default_errno)
    arches = list(seccomp.get("architectures") or ["SCMP_ARCH_X86_64"])
    for arch in arches:
        if arch not in AUDIT_ARCH:
            raise InvalidArgument(f"seccomp architecture {arch} is not supported by berth-runtime")
    labels = _Labels()
    items: list[Item] = [Insn(LD_ABS, OFF_ARCH)]
    sections: list[Item] = []
    # x86_64 and x32 share AUDIT_ARCH_X86_64; the x32 bit in the number tells them apart.
    if "SCMP_ARCH_X86_64" in arches or "SCMP_ARCH_X32" in arches:
        items += [Insn(JEQ, AUDIT_ARCH["SCMP_ARCH_X86_64"], None, "not_x86_64"),
                  Insn(JA, target="x86_64")]
        items.append("not_x86_64")
        sections += ["x86_64", Insn(LD_ABS, OFF_NR),
                     Insn(JGE, X32_SYSCALL_BIT, None, "native64"),
                     Insn(JA, target="x32") if "SCMP_ARCH_X32" in arches
                     else Insn(RET, RET_KILL_PROCESS),
                     "native64"]
        if "SCMP_ARCH_X86_64" in arches:
            sections += _arch_section(seccomp, "SCMP_ARCH_X86_64", default, default_errno, labels)
        else:
            sections.append(Insn(RET, RET_KILL_PROCESS))
        if "SCMP_ARCH_X32" in arches:
            sections += ["x32", *_arch_section(seccomp, "SCMP_ARCH_X32", default, default_errno,
                                               labels)]
    if "SCMP_ARCH_X86" in arches:
        items += [Insn(JEQ, AUDIT_ARCH["SCMP_ARCH_X86"], None, "not_x86"), Insn(JA, target="x86")]
        items.append("not_x86")
        sections += ["x86", *_arch_section(seccomp, "SCMP_ARCH_X86", default, default_errno,
                                           labels)]
    items += ["kill", Insn(RET, RET_KILL_PROCESS)]
    items += sections
    return _assemble(items)


def _assemble(items: Sequence[Item]) -> list[tuple[int, int, int, int]]:
    where: dict[str, int] = {}
    pos = 0
    for item in items:
        if isinstance(item, str):
            if item in where:
                raise AssertionError(f"duplicate label {item}")
            where[item] = pos
        else:
            pos += 1
    if pos > BPF_MAXINSNS:
        raise InvalidArgument(f"seccomp filter too large: {pos} instructions (max {BPF_MAXINSNS})")
    out = []
    pc = 0
    for item in items:
        if isinstance(item, str):
            continue

        def rel(label: str | None, pc: int = pc) -> int:
            if label is None:
                return 0
            offset = where[label] - pc - 1
            if offset < 0:
                raise AssertionError("BPF jumps only forward")
            return offset

        if item.code == JA:
            out.append((item.code, 0, 0, rel(item.target)))
        else:
            jt, jf = rel(item.jt), rel(item.jf)
            if jt > 255 or jf > 255:
                raise AssertionError(f"conditional jump too far at {pc}")
            out.append((item.code, jt, jf, item.k))
        pc += 1
    return out


def pack(program: Sequence[tuple[int, int, int, int]]) -> bytes:
    """``struct sock_filter[]`` in native byte order."""
    return b"".join(struct.pack("=HBBI", code, jt, jf, k) for code, jt, jf, k in program)


def run(program: Sequence[tuple[int, int, int, int]], nr: int, arch: int,
        args: Sequence[int] = (0, 0, 0, 0, 0, 0)) -> int:
    """Interpret the program on one seccomp_data (for tests and ``berth-runtime`` checks)."""
    data = struct.pack("<iIQ6Q", nr, arch, 0, *(list(args) + [0] * 6)[:6])
    acc, pc = 0, 0
    while True:
        code, jt, jf, k = program[pc]
        pc += 1
        if code == LD_ABS:
            acc = struct.unpack_from("<I", data, k)[0]
        elif code == AND:
            acc &= k
        elif code == JA:
            pc += k
        elif code in (JEQ, JGT, JGE):
            taken = acc == k if code == JEQ else acc > k if code == JGT else acc >= k
            pc += jt if taken else jf
        elif code == RET:
            return k
        else:
            raise AssertionError(f"unknown opcode {code:#x}")
