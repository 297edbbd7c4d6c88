"""``berth`` entry point: global options, docker's command tree, lazy dispatch, exit codes.

Only the module of the command in hand is imported (start-up is part of every command's
latency). A verb ``berth <group> <verb>`` is ``berth.cli.commands.<module>.<verb>``.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import BinaryIO, TextIO

VERSION = "0.1.0"
PROG = "berth"

# group → (summary, {verb: (module, function, summary)})
GROUPS: dict[str, tuple[str, dict[str, tuple[str, str, str]]]] = {
    "container": ("Manage containers", {
        "attach": ("run", "attach", "Attach local standard input, output, and error streams to "
            "a running container"),
        "commit": ("container", "commit", "Create a new image from a container's changes"),
        "cp": ("copy", "cp", "Copy files/folders between a container and the local filesystem"),
        "create": ("run", "create", "Create a new container"),
        "diff": ("rootfs", "diff", "Inspect changes to files or directories on a container's "
            "filesystem"),
        "exec": ("run", "exec_", "Execute a command in a running container"),
        "export": ("rootfs", "export", "Export a container's filesystem as a tar archive"),
        "inspect": ("container", "inspect", "Display detailed information on one or more "
            "containers"),
        "kill": ("container", "kill", "Kill one or more running containers"),
        "logs": ("container", "logs", "Fetch the logs of a container"),
        "ls": ("container", "ls", "List containers"),
        "pause": ("container", "pause", "Pause all processes within one or more containers"),
        "port": ("container", "port", "List port mappings or a specific mapping for the container"),
        "prune": ("container", "prune", "Remove all stopped containers"),
        "rename": ("container", "rename", "Rename a container"),
        "restart": ("container", "restart", "Restart one or more containers"),
        "rm": ("container", "rm", "Remove one or more containers"),
        "run": ("run", "run", "Create and run a new container from an image"),
        "start": ("run", "start", "Start one or more stopped containers"),
        "stats": ("container", "stats", "Display a live stream of container(s) resource usage "
            "statistics"),
        "stop": ("container", "stop", "Stop one or more running containers"),
        "top": ("container", "top", "Display the running processes of a container"),
        "unpause": ("container", "unpause", "Unpause all processes within one or more containers"),
        "update": ("update", "update", "Update configuration of one or more containers"),
        "wait": ("container", "wait", "Block until one or more containers stop, then print "
            "their exit codes"),
    }),
    "image": ("Manage images", {
        "build": ("build", "build", "Build an image from a Dockerfile"),
        "history": ("image", "history", "Show the history of an image"),
        "import": ("image", "import_", "Import the contents from a tarball to create a "
            "filesystem image"),
        "inspect": ("image", "inspect", "Display detailed information on one or more images"),
        "load": ("image", "load", "Load an image from a tar archive or STDIN"),
        "ls": ("image", "ls", "List images"),
        "prune": ("image", "prune", "Remove unused images"),
        "pull": ("registry", "pull", "Download an image from a registry"),
        "push": ("registry", "push", "Upload an image to a registry"),
        "rm": ("image", "rm", "Remove one or more images"),
        "save": ("image", "save", "Save one or more images to a tar archive (streamed to "
            "STDOUT by default)"),
        "tag": ("image", "tag", "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE"),
    }),
    "volume": ("Manage volumes", {
        "create": ("volume", "create", "Create a volume"),
        "inspect": ("volume", "inspect", "Display detailed information on one or more volumes"),
        "ls": ("volume", "ls", "List volumes"),
        "prune": ("volume", "prune", "Remove unused local volumes"),
        "rm": ("volume", "rm", "Remove one or more volumes"),
    }),
    "network": ("Manage networks", {
        "connect": ("network", "connect", "Connect a container to a network"),
        "create": ("network", "create", "Create a network"),
        "disconnect": ("network", "disconnect", "Disconnect a container from a network"),
        "inspect": ("network", "inspect", "Display detailed information on one or more networks"),
        "ls": ("network", "ls", "List networks"),
        "prune": ("network", "prune", "Remove all unused networks"),
        "rm": ("network", "rm", "Remove one or more networks"),
    }),
    "system": ("Manage berth", {
        "df": ("system", "df", "Show berth disk usage"),
        "events": ("system", "events", "Get real time events from the server"),
        "info": ("system", "info", "Display system-wide information"),
        "prune": ("system", "prune", "Remove unused data"),
    }),
}

# Management-group aliases docker accepts (``container list``, ``image list``, ``image remove``...).
VERB_ALIASES = {"list": "ls", "ps": "ls", "remove": "rm"}

# top-level command → (group, verb); None group = a command of its own.
TOP: dict[str, tuple[str, str]] = {
    "run": ("container", "run"), "create": ("container", "create"),
    "start": ("container", "start"), "stop": ("container", "stop"),
    "restart": ("container", "restart"), "kill": ("container", "kill"),
    "rm": ("container", "rm"), "ps": ("container", "ls"), "logs": ("container", "logs"),
    "exec": ("container", "exec"), "attach": ("container", "attach"),
    "wait": ("container", "wait"), "pause": ("container", "pause"),
    "unpause": ("container", "unpause"), "top": ("container", "top"),
    "rename": ("container", "rename"), "cp": ("container", "cp"),
    "commit": ("container", "commit"), "port": ("container", "port"),
    "stats": ("container", "stats"), "diff": ("container", "diff"),
    "export": ("container", "export"), "update": ("container", "update"),
    "images": ("image", "ls"), "rmi": ("image", "rm"),
    "load": ("image", "load"), "save": ("image", "save"), "tag": ("image", "tag"),
    "import": ("image", "import"), "history": ("image", "history"),
    "pull": ("image", "pull"), "push": ("image", "push"), "build": ("image", "build"),
    "info": ("system", "info"), "events": ("system", "events"),
}
SOLO: dict[str, tuple[str, str, str]] = {
    "inspect": ("system", "inspect", "Return low-level information on berth objects"),
    "version": ("system", "version", "Show the berth version information"),
    "login": ("registry", "login", "Log in to a registry"),
    "logout": ("registry", "logout", "Log out from a registry"),
}

_TLS_BOOLS = ("tls", "tlsverify")
_TLS_FILES = ("tlscacert", "tlscert", "tlskey")

COMMON = ["run", "exec", "ps", "build", "pull", "push", "images", "login", "logout", "version",
          "info"]


def usage() -> str:
    lines = ["", f"Usage:  {PROG} [OPTIONS] COMMAND", "",
             "A self-sufficient runtime for containers", "", "Common Commands:"]

    def summary(name: str) -> str:
        if name in SOLO:
            return SOLO[name][2]
        group, verb = TOP[name]
        return GROUPS[group][1][verb][2]

    lines += [f"  {n.ljust(11)} {summary(n)}" for n in COMMON]
    lines += ["", "Management Commands:"]
    lines += [f"  {g.ljust(11)} {s}" for g, (s, _) in GROUPS.items()]
    lines += ["", "Commands:"]
    rest = sorted(n for n in list(TOP) + list(SOLO) if n not in COMMON)
    lines += [f"  {n.ljust(11)} {summary(n)}" for n in rest]
    lines += ["", "Global Options:",
              "  -D, --debug              Enable debug mode",
              "  -H, --host string        Daemon socket to connect to (default $BERTH_HOST or "
              "unix:///run/berth/berth.sock)",
              "      --tls                Use TLS; implied by --tlsverify",
              "      --tlscacert string   Trust certs signed only by this CA (default "
              '"$BERTH_CERT_PATH/ca.pem", else "~/.berth/ca.pem")',
              "      --tlscert string     Path to TLS certificate file (default "
              '"$BERTH_CERT_PATH/cert.pem", else "~/.berth/cert.pem")',
              "      --tlskey string      Path to TLS key file (default "
              '"$BERTH_CERT_PATH/key.pem", else "~/.berth/key.pem")',
              "      --tlsverify          Use TLS and verify the remote",
              "  -v, --version            Print version information and quit",
              "", f"Run '{PROG} COMMAND --help' for more information on a command.", ""]
    return "\n".join(lines)


def group_usage(group: str) -> str:
    summary, verbs = GROUPS[group]
    lines = ["", f"Usage:  {PROG} {group} COMMAND", "", summary, "", "Commands:"]
    lines += [f"  {v.ljust(11)} {s}" for v, (_m, _f, s) in sorted(verbs.items())]
    lines += ["", f"Run '{PROG} {group} COMMAND --help' for more information on a command.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None, stdout: TextIO | None = None,
         stderr: TextIO | None = None, stdin: BinaryIO | None = None,
         environ: Mapping[str, str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    env = os.environ if environ is None else environ
    host_flag: str | None = None
    tls_flags: dict[str, str | None] = {}  # --tls, --tlsverify: None unless given a value
    debug = False
    while args and args[0].startswith("-") and args[0] != "-":
        word = args.pop(0)
        name, eq, value = word[2:].partition("=")
        if word.startswith("--") and name in _TLS_BOOLS:
            tls_flags[name] = value if eq else None
        elif word.startswith("--") and name in _TLS_FILES:
            if not eq:
                if not args:
                    err.write(f"flag needs an argument: --{name}\n")
                    return 125
                value = args.pop(0)
            tls_flags[name] = value
        elif word in ("-H", "--host"):
            if not args:
                err.write("flag needs an argument: --host\n")
                return 125
            host_flag = args.pop(0)
        elif word.startswith("--host=") or (word.startswith("-H") and len(word) > 2):
            host_flag = word.split("=", 1)[1] if word.startswith("--") else word[2:].lstrip("=")
        elif word in ("-D", "--debug"):
            debug = True
        elif word in ("-v", "--version"):
            out.write(f"Berth version {VERSION}, build python\n")
            return 0
        elif word in ("-h", "--help"):
            out.write(usage())
            return 0
        elif word == "--":
            break
        else:
            err.write(f"unknown flag: {word}\nSee '{PROG} --help'.\n")
            return 125
    if not args or args[0] == "help":
        out.write(usage())
        return 0
    name = args.pop(0)
    if name in GROUPS:
        group = name
        if not args or args[0] in ("-h", "--help", "help"):
            out.write(group_usage(group))
            return 0
        verb = VERB_ALIASES.get(args[0], args[0])
        if verb not in GROUPS[group][1]:
            err.write(f"{PROG}: '{group} {args[0]}' is not a {PROG} command.\n"
                      f"See '{PROG} {group} --help'\n")
            return 1
        args.pop(0)
        module, func, _ = GROUPS[group][1][verb]
        invoked = f"{group} {verb}"
    elif name in TOP:
        group, verb = TOP[name]
        module, func, _ = GROUPS[group][1][verb]
        invoked = name
    elif name in SOLO:
        module, func, _ = SOLO[name]
        invoked = name
    else:
        err.write(f"{PROG}: '{name}' is not a {PROG} command.\nSee '{PROG} --help'\n")
        return 1

    from berth.cli.client import resolve_host

    if stdin is None:
        stdin = sys.stdin.buffer if sys.stdin is not None else open(os.devnull, "rb")
    from berth.cli.context import Cli

    tls = None
    if tls_flags or env.get("BERTH_TLS_VERIFY") or env.get("BERTH_TLS"):
        from berth.cli.tls import resolve

        tls = resolve(tls_flags, env)
    cli = Cli(resolve_host(host_flag, env, tls is not None), out, err, stdin, env, debug,
              invoked, tls)
    return dispatch(cli, module, func, args)


def dispatch(cli: object, module: str, func: str, args: list[str]) -> int:
    from berth.cli import flags
    from berth.cli.client import ApiError, DaemonUnreachable, ProtocolError
    from berth.cli.context import Cli, StatusError
    from berth.errors import BerthError

    assert isinstance(cli, Cli)
    # __import__ rather than importlib.import_module: one import less on every start.
    handler = getattr(__import__(f"berth.cli.commands.{module}", fromlist=[func]), func)
    try:
        code = handler(cli, args)
        cli.stdout.flush()
        return int(code or 0)
    except flags.HelpRequested as req:
        cli.stdout.write(flags.help_text(req.command, PROG).replace(
            f"{PROG} {req.command.usage}", f"{PROG} {_usage_for(cli.invoked, req.command)}"))
        return 0
    except flags.UsageError as exc:
        cli.err(exc.message)
        cli.err(f"See '{PROG} {cli.invoked} --help'.")
        if exc.show_usage:
            cli.err(f"\nUsage:  {PROG} {_usage_for(cli.invoked, exc.command)}\n\n"
                    f"{exc.command.summary}")
        return exc.exit_code
    except DaemonUnreachable as exc:
        cli.err(exc.message)
        cli.err("(start it with: berthd &)")
        return 1
    except ApiError as exc:
        cli.err(f"Error response from daemon: {exc.message}")
        return 1
    except StatusError as exc:
        if exc.message:
            cli.err(exc.message)
        return exc.code
    except (BerthError, ProtocolError) as exc:
        cli.err(str(exc))
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `berth images | head -1`: stop quietly, and keep the interpreter's final flush of
        # stdout from reporting the closed pipe.
        if cli.stdout is sys.stdout:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        return 0
    finally:
        cli.close()


def _usage_for(invoked: str, command: object) -> str:
    from berth.cli import flags

    assert isinstance(command, flags.Command)
    words = command.usage.split(" ")
    while words and words[0].isalpha() and words[0].islower():  # "volume rm": the command
        words.pop(0)
    return f"{invoked} {' '.join(words)}".strip()


if __name__ == "__main__":
    sys.exit(main())
