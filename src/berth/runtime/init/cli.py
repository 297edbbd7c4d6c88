"""``berth-runtime``: a runc-compatible command line over berth's own OCI runtime.

    berth-runtime [--root DIR] [--log FILE] [--log-format text|json] COMMAND [OPTIONS] ID

Commands: create, start, run, state, list, kill, delete, pause, resume, ps, features.
Errors are printed in runc's style (``time="…" level=error msg="…"``) to stderr and, with
``--log``, to that file; the exit status is 1. The parser is written by hand: argparse would be
a tenth of the start-up time of a ``run``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable

from berth.errors import BerthError, InvalidArgument
from berth.runtime.init import container
from berth.runtime.init.config import load_spec, parse_process
from berth.runtime.init.state import DEFAULT_ROOT, list_ids, load_state, status_of
from berth.runtime.syscalls import LinuxSyscalls, Syscalls

USAGE = """usage: berth-runtime [--root DIR] [--log FILE] [--log-format text|json] COMMAND ...
  create --bundle DIR [--pid-file F] [--console-socket SOCK] ID
  start ID | state ID | pause ID | resume ID | list
  run --bundle DIR [--pid-file F] [--console-socket SOCK] [--detach] ID
  exec [--process process.json | -t] [--pid-file F] [--console-socket SOCK] [--detach] ID [CMD...]
  kill [--all] ID [SIGNAL]
  delete [--force] ID
  ps [--format table|json] ID
  features
"""
# option → takes a value; aliases map to the canonical name.
_OPTIONS = {
    "--root": True, "--log": True, "--log-format": True, "--bundle": True, "--pid-file": True,
    "--console-socket": True, "--format": True, "--process": True, "--tty": False,
    "--preserve-fds": True, "--criu": True,
    "--detach": False, "--all": False, "--force": False, "--debug": False,
    "--systemd-cgroup": False, "--no-pivot": False, "--no-new-keyring": False, "--rootless": True,
}
_ALIASES = {"-b": "--bundle", "-d": "--detach", "-a": "--all", "-f": "--force", "-p": "--process",
            "-t": "--tty"}


class Args:
    """The parsed command line (filled in by parse_args)."""

    def __init__(self) -> None:
        self.command = ""
        self.options: dict[str, str] = {}
        self.positional: list[str] = []


def parse_args(argv: list[str]) -> Args:
    """Global options, a command, then its options and positional arguments in any order."""
    args = Args()
    i = 0
    while i < len(argv):
        word = argv[i]
        if args.command == "exec" and args.positional:  # `exec ID ls -la`: the rest is argv
            args.positional.extend(argv[i:])
            break
        name, eq, value = word.partition("=")
        name = _ALIASES.get(name, name)
        if name.startswith("-") and name != "-":
            if name in ("--help", "-h"):
                args.command = "help"
                return args
            if name not in _OPTIONS:
                raise InvalidArgument(f"flag provided but not defined: {name}")
            if _OPTIONS[name] and not eq:
                i += 1
                if i >= len(argv):
                    raise InvalidArgument(f"flag needs an argument: {name}")
                value = argv[i]
            args.options[name] = value if _OPTIONS[name] else "true"
        elif not args.command:
            args.command = word
        else:
            args.positional.append(word)
        i += 1
    return args


def _one_id(args: Args) -> str:
    if not args.positional:
        raise InvalidArgument(f'"{args.command}" requires a container id')
    return args.positional[0]


def _timestamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def report_error(message: str, log_file: str | None, log_format: str) -> None:
    """runc's logrus text line on stderr; the --log file gets it in the chosen format."""
    text = f'time="{_timestamp()}" level=error msg={json.dumps(message)}\n'
    sys.stderr.write(text)
    if log_file:
        if log_format == "json":
            line = json.dumps({"level": "error", "msg": message, "time": _timestamp()}) + "\n"
        else:
            line = text
        try:
            with open(log_file, "a") as f:
                f.write(line)
        except OSError:
            pass


def _syscalls() -> Syscalls:
    return LinuxSyscalls()


def cmd_create(root: str, args: Args) -> int:
    created = container.create(
        root, _one_id(args), args.options.get("--bundle", "."), _syscalls(),
        console_socket=args.options.get("--console-socket"),
        pid_file=args.options.get("--pid-file"),
    )
    os.close(created.init_pipe)
    return 0


def cmd_run(root: str, args: Args) -> int:
    if "--detach" in args.options:
        cmd_create(root, args)
        container.start(root, _one_id(args))
        return 0
    return container.run(
        root, _one_id(args), args.options.get("--bundle", "."), _syscalls(),
        console_socket=args.options.get("--console-socket"),
        pid_file=args.options.get("--pid-file"),
    )


def cmd_exec(root: str, args: Args) -> int:
    """``--process FILE`` (what a shim passes) or ``ID CMD...`` with the container's process."""
    cid = _one_id(args)
    if "--process" in args.options:
        path = args.options["--process"]
        try:
            with open(path) as f:
                raw = json.load(f)
        except (OSError, ValueError) as err:
            raise InvalidArgument(f"reading process {path}: {err}") from err
        if not isinstance(raw, dict):
            raise InvalidArgument(f"process {path} is not a JSON object")
        # The container's seccomp filter binds every process in it, as with runc.
        container_spec = load_spec(load_state(root, cid).bundle)
        process = parse_process(raw)._replace(seccomp=container_spec.process.seccomp)
    else:
        if len(args.positional) < 2:
            raise InvalidArgument("exec requires a process (--process) or a command")
        base = load_spec(load_state(root, cid).bundle).process
        process = base._replace(args=tuple(args.positional[1:]), terminal="--tty" in args.options)
    return container.exec_process(
        root, cid, process, _syscalls(),
        console_socket=args.options.get("--console-socket"),
        pid_file=args.options.get("--pid-file"), detach="--detach" in args.options,
    )


def cmd_start(root: str, args: Args) -> int:
    container.start(root, _one_id(args))
    return 0


def cmd_state(root: str, args: Args) -> int:
    state = load_state(root, _one_id(args))
    sys.stdout.write(json.dumps(state.to_oci(status_of(root, state)), indent=2) + "\n")
    return 0


def cmd_list(root: str, args: Args) -> int:
    rows = []
    for cid in list_ids(root):
        state = load_state(root, cid)
        rows.append(state.to_oci(status_of(root, state)))
    if args.options.get("--format") == "json":
        sys.stdout.write(json.dumps(rows) + "\n")
        return 0
    sys.stdout.write(f"{'ID':<12}{'PID':<8}{'STATUS':<10}{'BUNDLE':<40}CREATED\n")
    for row in rows:
        sys.stdout.write(
            f"{row['id']:<12}{row['pid']:<8}{row['status']:<10}{row['bundle']:<40}{row['created']}\n"
        )
    return 0


def cmd_kill(root: str, args: Args) -> int:
    sig = container.parse_signal(args.positional[1] if len(args.positional) > 1 else "TERM")
    container.kill(root, _one_id(args), sig, all_processes="--all" in args.options)
    return 0


def cmd_delete(root: str, args: Args) -> int:
    container.delete(root, _one_id(args), force="--force" in args.options)
    return 0


def cmd_pause(root: str, args: Args) -> int:
    container.pause(root, _one_id(args))
    return 0


def cmd_resume(root: str, args: Args) -> int:
    container.resume(root, _one_id(args))
    return 0


def cmd_ps(root: str, args: Args) -> int:
    state = load_state(root, _one_id(args))
    pids = state.cgroup().pids()
    if args.options.get("--format") == "json":
        sys.stdout.write(json.dumps(pids) + "\n")
    else:
        sys.stdout.write("PID\n" + "".join(f"{p}\n" for p in pids))
    return 0


def cmd_features(root: str, args: Args) -> int:
    from berth.runtime.init.capabilities import CAPABILITY_NAMES
    from berth.runtime.init.config import NAMESPACE_FLAGS
    from berth.runtime.init.rootfs import PROPAGATION_FLAGS

    doc = {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.0.2",
        "hooks": [],
        "mountOptions": sorted(PROPAGATION_FLAGS) + ["bind", "rbind", "ro", "rw"],
        "linux": {
            "namespaces": sorted(n for n in NAMESPACE_FLAGS if n != "time"),
            "capabilities": list(CAPABILITY_NAMES),
            "cgroup": {"v1": True, "v2": True, "systemd": False},
            "seccomp": {
                "enabled": True,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL",
                            "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG",
                            "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE",
                              "SCMP_CMP_LT", "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
                "archs": ["SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32"],
            },
        },
    }
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    return 0


COMMANDS: dict[str, Callable[[str, Args], int]] = {
    "create": cmd_create, "run": cmd_run, "exec": cmd_exec, "start": cmd_start, "state": cmd_state,
    "list": cmd_list, "kill": cmd_kill, "delete": cmd_delete, "pause": cmd_pause,
    "resume": cmd_resume, "ps": cmd_ps, "features": cmd_features,
}
_PREFIXED = ("create", "run", "start", "exec")  # runc says "runc create failed: ..." for these


def main(argv: list[str] | None = None) -> int:
    """Entry point. Called as a program (``argv`` None) it ends with ``os._exit``: tearing down
    the interpreter's modules would add ~20 ms to every ``run``, and there is nothing to flush
    but stdio. Called with ``argv`` it returns the exit status."""
    if argv is not None:
        return _main(argv)
    status = _main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def _main(argv: list[str]) -> int:
    log_file: str | None = None
    log_format = "text"
    command = ""
    try:
        args = parse_args(argv)
        command = args.command
        log_file = args.options.get("--log")
        log_format = args.options.get("--log-format", "text")
        if command in ("", "help"):
            sys.stdout.write(USAGE)
            return 0 if command == "help" else 1
        handler = COMMANDS.get(command)
        if handler is None:
            raise InvalidArgument(f"No help topic for '{command}'")
        return handler(args.options.get("--root", DEFAULT_ROOT), args)
    except (BerthError, OSError) as err:
        text = str(err)
        if command in _PREFIXED:
            text = f"berth-runtime {command} failed: {text}"
        report_error(text, log_file, log_format)
        return 1


if __name__ == "__main__":
    sys.exit(main())
