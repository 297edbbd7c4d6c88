"""Verbs that create, start or attach to processes: run, create, start, attach, exec.

Request order follows the docker CLI (captures 03, 09, 10, 25, 05, 35): create → attach
(hijacked, before start so no output is lost) → wait → start → pump → exit code from wait.
"""

from __future__ import annotations

import os

from berth.cli import _ref
from berth.cli.client import ApiError
from berth.cli.context import StatusError
from berth.cli.flags import Command, Flag
from berth.cli.runconfig import CREATE, RUN, build_create

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from berth.cli.client import Client
    from berth.cli.context import Cli


def _run_error(cli: Cli, exc: ApiError, code: int = 125) -> StatusError:
    return StatusError(f"berth: Error response from daemon: {exc.message}\n\n"
                       f"Run 'berth {cli.invoked} --help' for more information", code)


def _start_failure_code(message: str) -> int:
    # docker run: 127 when the command is not found, 126 when it cannot be invoked.
    lower = message.lower()
    if "executable file not found" in lower or "no such file or directory" in lower:
        return 127
    if "permission denied" in lower:
        return 126
    return 125


def _pull(cli: Cli, image: str, platform: str, quiet: bool = False) -> None:
    from berth.cli.commands.registry import auth_header
    from berth.cli.render import print_json_messages

    repo, tag, digest = _ref.split(image)
    query: dict[str, Any] = {"fromImage": repo, "tag": digest or tag or "latest"}
    if platform:
        query["platform"] = platform
    resp = cli.client.request("POST", "/images/create", query,
                              headers={"X-Registry-Auth": auth_header(cli, repo)})
    error = print_json_messages(resp.iter_json(), cli.stderr, tty=_isatty(cli.stderr))
    if error:
        raise ApiError(500, error["message"])


def _create_container(cli: Cli, opts: dict[str, Any], query: dict[str, Any],
                      body: dict[str, Any]) -> str:
    client = cli.client
    image = body["Image"]
    if opts["cidfile"] and os.path.exists(opts["cidfile"]):  # docker checks before creating
        raise StatusError(f"berth: container ID file found, make sure the other container isn't "
                          f"running or delete {opts['cidfile']}\n\n"
                          f"Run 'berth {cli.invoked} --help' for more information", 125)
    if opts["pull"] == "always":
        _pull(cli, image, opts["platform"])
    try:
        created = client.request("POST", "/containers/create", query, json=body).json()
    except ApiError as exc:
        if exc.status != 404 or opts["pull"] == "never" or "image" not in exc.message.lower():
            raise
        cli.err(f"Unable to find image '{_ref.with_default_tag(image)}' locally")
        _pull(cli, image, opts["platform"])
        created = client.request("POST", "/containers/create", query, json=body).json()
    for warning in created.get("Warnings") or []:
        cli.err(f"WARNING: {warning}")
    cid = str(created["Id"])
    if opts["cidfile"]:
        with open(opts["cidfile"], "x", encoding="utf-8") as fh:
            fh.write(cid)
    return cid


def _isatty(stream: Any) -> bool:
    try:
        return bool(os.isatty(stream.fileno()))
    except (OSError, ValueError, AttributeError):
        return False


def _console(cli: Cli, tty: bool) -> tuple[int, int]:
    if not tty or not _isatty(cli.stdout):
        return (0, 0)
    from berth.cli.stream import terminal_size

    return terminal_size(cli.stdout.fileno())


def create(cli: Cli, argv: list[str]) -> int:
    opts, args = cli.parse(CREATE, argv)
    query, body = build_create(opts, args, CREATE, cli.environ,
                               console=_console(cli, opts["tty"]))
    try:
        cid = _create_container(cli, opts, query, body)
    except ApiError as exc:
        raise StatusError(f"Error response from daemon: {exc.message}", 125) from None
    cli.out(cid)
    return 0


def run(cli: Cli, argv: list[str]) -> int:
    opts, args = cli.parse(RUN, argv)
    detach = opts["detach"]
    tty = opts["tty"]
    if tty and not detach and opts["interactive"] and not _isatty(cli.stdin):
        raise StatusError("the input device is not a TTY", 1)
    query, body = build_create(opts, args, RUN, cli.environ, detach=detach,
                               console=_console(cli, tty))
    client = cli.client
    try:
        cid = _create_container(cli, opts, query, body)
    except ApiError as exc:
        raise _run_error(cli, exc) from None
    if detach:
        waiter = client.request("POST", f"/containers/{cid}/wait", {"condition": "next-exit"})
        try:
            client.request("POST", f"/containers/{cid}/start")
        except ApiError as exc:
            raise _run_error(cli, exc, _start_failure_code(exc.message)) from None
        waiter.close()
        cli.out(cid)
        return 0
    attach_q = {"stream": 1}
    for name in ("stdin", "stdout", "stderr"):
        if body[f"Attach{name.capitalize()}"]:
            attach_q[name] = 1
    hj = client.hijack(f"/containers/{cid}/attach", attach_q)
    condition = "removed" if opts["rm"] else "next-exit"
    waiter = client.request("POST", f"/containers/{cid}/wait", {"condition": condition})
    try:
        client.request("POST", f"/containers/{cid}/start")
    except ApiError as exc:
        hj.close()
        raise _run_error(cli, exc, _start_failure_code(exc.message)) from None
    return _follow(cli, client, hj, cid, tty, body["AttachStdin"], opts["detach_keys"], waiter,
                   sig_proxy=opts["sig_proxy"])


def _proxy_signals(client: Client, cid: str) -> Callable[[], None] | None:
    """docker's --sig-proxy: signals the CLI receives go to the container (not with a TTY,
    where the terminal carries them). Returns the function that restores the handlers, or
    None outside the main thread, where handlers cannot be set."""
    # ``signal`` itself imports ``enum``: a few ms of every ``run``
    import _signal as signal  # type: ignore[import-not-found]

    names = {getattr(signal, name): name for name in
             ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2")}

    def forward(signum: int, _frame: Any) -> None:
        try:
            client.request("POST", f"/containers/{cid}/kill", {"signal": names[signum]}).read()
        except (ApiError, OSError):
            pass

    previous: dict[int, Any] = {}
    try:
        for s in names:
            previous[s] = signal.signal(s, forward)
    except ValueError:  # not the main thread (berth embedded in a program)
        for s, handler in previous.items():
            signal.signal(s, handler)
        return None

    def restore() -> None:
        for s, handler in previous.items():
            signal.signal(s, handler)

    return restore


def _follow(cli: Cli, client: Client, hj: Any, cid: str, tty: bool, with_stdin: bool,
            detach_keys: str, waiter: Any, sig_proxy: bool = False) -> int:
    from berth.cli.stream import DEFAULT_DETACH, parse_detach_keys, pump

    keys = parse_detach_keys(detach_keys) if detach_keys else DEFAULT_DETACH
    restore = _proxy_signals(client, cid) if sig_proxy and not tty else None

    def resize(h: int, w: int) -> None:
        try:
            client.request("POST", f"/containers/{cid}/resize", {"h": h, "w": w}).read()
        except ApiError:
            pass

    try:
        finished = pump(cli, hj, tty, with_stdin, resize, keys)
    finally:
        if restore is not None:
            restore()
    if not finished:
        cli.err("\nread escape sequence")
        if waiter is not None:
            waiter.close()
        return 0
    if waiter is None:
        state = client.get_json(f"/containers/{cid}/json").get("State", {})
        return int(state.get("ExitCode", 0))
    result = waiter.json() or {}
    error = result.get("Error")
    if error and error.get("Message"):
        cli.err(f"Error: {error['Message']}")
    return int(result.get("StatusCode", 0))


START = Command("start", "start [OPTIONS] CONTAINER [CONTAINER...]",
                "Start one or more stopped containers", [
                    Flag("attach", "a", help="Attach STDOUT/STDERR and forward signals"),
                    Flag("interactive", "i", help="Attach container's STDIN"),
                    Flag("detach-keys", "", "str", help="Override the key sequence for "
                        "detaching a container"),
                ], min_args=1, aliases=("container start", "start"))


def start(cli: Cli, argv: list[str]) -> int:
    opts, args = cli.parse(START, argv)
    client = cli.client
    if opts["attach"] or opts["interactive"]:
        if len(args) > 1:
            raise StatusError("you cannot start and attach multiple containers at once", 1)
        info = client.get_json(f"/containers/{args[0]}/json")
        cid = info["Id"]
        tty = bool(info["Config"].get("Tty"))
        with_stdin = opts["interactive"] and bool(info["Config"].get("OpenStdin"))
        query = {"stream": 1, "stdout": 1, "stderr": 1}
        if with_stdin:
            query["stdin"] = 1
        hj = client.hijack(f"/containers/{cid}/attach", query)
        waiter = client.request("POST", f"/containers/{cid}/wait", {"condition": "next-exit"})
        client.request("POST", f"/containers/{cid}/start")
        return _follow(cli, client, hj, cid, tty, with_stdin, opts["detach_keys"], waiter)
    failed = []
    for name in args:
        try:
            client.request("POST", f"/containers/{name}/start")
            cli.out(name)
        except ApiError as exc:
            cli.err(f"Error response from daemon: {exc.message}")
            failed.append(name)
    if failed:
        raise StatusError("Error: failed to start containers: " + ", ".join(failed), 1)
    return 0


ATTACH = Command("attach", "attach [OPTIONS] CONTAINER",
                 "Attach local standard input, output, and error streams to a running container", [
                     Flag("detach-keys", "", "str", help="Override the key sequence for "
                         "detaching a container"),
                     Flag("no-stdin", "", help="Do not attach STDIN"),
                     Flag("sig-proxy", "", default=True, help="Proxy all received signals to "
                         "the process"),
                 ], min_args=1, max_args=1, aliases=("container attach", "attach"))


def attach(cli: Cli, argv: list[str]) -> int:
    opts, args = cli.parse(ATTACH, argv)
    client = cli.client
    info = client.get_json(f"/containers/{args[0]}/json")
    state = info.get("State", {})
    if not state.get("Running"):
        raise StatusError("You cannot attach to a stopped container, start it first", 1)
    if state.get("Paused"):
        raise StatusError("You cannot attach to a paused container, unpause it first", 1)
    cid = info["Id"]
    tty = bool(info["Config"].get("Tty"))
    with_stdin = not opts["no_stdin"] and bool(info["Config"].get("OpenStdin"))
    query = {"stream": 1, "stdout": 1, "stderr": 1}
    if with_stdin:
        query["stdin"] = 1
    # as docker 20.10: the wait is registered first, so the exit code is the one that ends the
    # stream (an inspect afterwards races the daemon's record of the exit)
    waiter = client.request("POST", f"/containers/{cid}/wait", {"condition": "not-running"})
    hj = client.hijack(f"/containers/{cid}/attach", query)
    return _follow(cli, client, hj, cid, tty, with_stdin, opts["detach_keys"], waiter,
                   sig_proxy=opts["sig_proxy"])


EXEC = Command("exec", "exec [OPTIONS] CONTAINER COMMAND [ARG...]",
               "Execute a command in a running container", [
                   Flag("detach", "d", help="Detached mode: run command in the background"),
                   Flag("detach-keys", "", "str", help="Override the key sequence for "
                       "detaching a container"),
                   Flag("env", "e", "list", help="Set environment variables"),
                   Flag("env-file", "", "list", help="Read in a file of environment variables"),
                   Flag("interactive", "i", help="Keep STDIN open even if not attached"),
                   Flag("privileged", "", help="Give extended privileges to the command"),
                   Flag("tty", "t", help="Allocate a pseudo-TTY"),
                   Flag("user", "u", "str", help="Username or UID (format: "
                       "\"<name|uid>[:<group|gid>]\")"),
                   Flag("workdir", "w", "str", help="Working directory inside the container"),
               ], interspersed=False, min_args=2, aliases=("container exec", "exec"))


def exec_(cli: Cli, argv: list[str]) -> int:
    opts, args = cli.parse(EXEC, argv)
    client = cli.client
    name, command = args[0], args[1:]
    info = client.get_json(f"/containers/{name}/json")
    if not info.get("State", {}).get("Running"):
        raise StatusError(f"Error response from daemon: container {info['Id']} is not running", 1)
    detach = opts["detach"]
    tty = opts["tty"]
    env = list(opts["env"])
    for path in opts["env_file"]:
        from berth.cli.runconfig import _kv_lines

        with open(path, encoding="utf-8") as fh:
            env = _kv_lines(fh.read(), cli.environ, env=True) + env
    body = {"User": opts["user"], "Privileged": opts["privileged"], "Tty": tty,
            "AttachStdin": opts["interactive"] and not detach,
            "AttachStderr": not detach, "AttachStdout": not detach, "Detach": detach,
            "DetachKeys": opts["detach_keys"], "Env": env or None,
            "WorkingDir": opts["workdir"], "Cmd": command}
    exec_id = client.post_json(f"/containers/{name}/exec", json=body)["Id"]
    if detach:
        client.request("POST", f"/exec/{exec_id}/start", json={"Detach": True, "Tty": tty}).read()
        return 0
    hj = client.hijack(f"/exec/{exec_id}/start", json={"Detach": False, "Tty": tty})
    from berth.cli.stream import DEFAULT_DETACH, parse_detach_keys, pump

    def resize(h: int, w: int) -> None:
        try:
            client.request("POST", f"/exec/{exec_id}/resize", {"h": h, "w": w}).read()
        except ApiError:
            pass

    keys = parse_detach_keys(opts["detach_keys"]) if opts["detach_keys"] else DEFAULT_DETACH
    if not pump(cli, hj, tty, opts["interactive"], resize, keys):
        cli.err("\nread escape sequence")
        return 0
    result = client.get_json(f"/exec/{exec_id}/json")
    return int(result.get("ExitCode") or 0)
