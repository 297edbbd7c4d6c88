"""Docker-compatible flag parsing: clusters, values, ``--``, interspersed or not, errors."""

from __future__ import annotations

from typing import Any

import pytest

from berth.cli import flags
from berth.cli.flags import Command, Flag, HelpRequested, UsageError, parse, parse_bytes
from berth.cli.runconfig import RUN, build_create

LS = Command("ls", "ls [OPTIONS]", "List", [
    Flag("all", "a"), Flag("quiet", "q"), Flag("filter", "f", "list"),
    Flag("format", "", "str"), Flag("last", "n", "int", default=-1),
], max_args=0)


@pytest.mark.parametrize("argv, expected", [
    (["-it", "busybox"], {"interactive": True, "tty": True}),
    (["-dit", "busybox"], {"detach": True, "interactive": True, "tty": True}),
    (["-e", "K=V", "--env=A=B", "-eX=Y", "busybox"], {"env": ["K=V", "A=B", "X=Y"]}),
    (["-p", "80:80", "-p", "443:443", "busybox"], {"publish": ["80:80", "443:443"]}),
    (["--name", "web", "busybox"], {"name": "web"}),
    (["--name=web", "busybox"], {"name": "web"}),
    (["--rm=false", "busybox"], {"rm": False}),
    (["-m", "64m", "busybox"], {"memory": 64 << 20}),
    (["--memory=1g", "busybox"], {"memory": 1 << 30}),
    (["--cpus", "1.5", "busybox"], {"cpus": 1.5}),
    (["-h", "host1", "busybox"], {"hostname": "host1"}),
    (["-v", "/a:/b", "--volume", "v:/c", "busybox"], {"volume": ["/a:/b", "v:/c"]}),
])
def test_run_flag_values(argv: list[str], expected: dict[str, Any]) -> None:
    opts, args = parse(RUN, argv)
    assert args == ["busybox"]
    for key, value in expected.items():
        assert opts[key] == value


def test_run_stops_at_first_positional() -> None:
    opts, args = parse(RUN, ["--rm", "busybox", "sh", "-c", "echo -n hi", "--rm"])
    assert opts["rm"] is True
    assert args == ["busybox", "sh", "-c", "echo -n hi", "--rm"]


def test_double_dash_ends_options() -> None:
    _, args = parse(Command("x", "x", "x", [Flag("all", "a")]), ["-a", "--", "-q"])
    assert args == ["-q"]


def test_interspersed_flags_after_positionals() -> None:
    cmd = Command("rm", "rm", "rm", [Flag("force", "f")], min_args=1)
    opts, args = parse(cmd, ["c1", "-f", "c2"])
    assert opts["force"] and args == ["c1", "c2"]


def test_lone_dash_is_positional() -> None:
    cmd = Command("load", "load", "x", [Flag("quiet", "q")])
    assert parse(cmd, ["-"])[1] == ["-"]


@pytest.mark.parametrize("argv, message", [
    (["--foo", "busybox"], "unknown flag: --foo"),
    (["-Z", "busybox"], "unknown shorthand flag: 'Z' in -Z"),
    (["-dZ", "busybox"], "unknown shorthand flag: 'Z' in -dZ"),
    (["--name"], "flag needs an argument: --name"),
    (["-e"], "flag needs an argument: 'e' in -e"),
    (["--rm=maybe", "x"], 'invalid argument "maybe" for "--rm" flag: strconv.ParseBool: '
                          'parsing "maybe": invalid syntax'),
    (["--pids-limit", "x", "b"], 'invalid argument "x" for "--pids-limit" flag: '
                                 'strconv.ParseInt: parsing "x": invalid syntax'),
])
def test_flag_errors_use_pflag_wording(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError) as info:
        parse(RUN, argv)
    assert info.value.message == message
    assert info.value.exit_code == 125


def test_argument_count_errors() -> None:
    with pytest.raises(UsageError) as info:
        parse(RUN, [])
    assert info.value.message == '"berth run" requires at least 1 argument.'
    assert info.value.exit_code == 1
    with pytest.raises(UsageError) as info:
        parse(LS, ["x"], name="container ls")
    assert info.value.message == '"berth container ls" accepts no arguments.'


def test_help_flag() -> None:
    with pytest.raises(HelpRequested):
        parse(LS, ["--help"])
    with pytest.raises(HelpRequested):
        parse(LS, ["-h"])
    text = flags.help_text(LS)
    assert "Usage:  berth ls [OPTIONS]" in text
    assert "  -a, --all" in text
    assert "(default -1)" in text


@pytest.mark.parametrize("text, value", [
    ("64m", 64 << 20), ("64M", 64 << 20), ("1g", 1 << 30), ("1gb", 1 << 30), ("512k", 512 << 10),
    ("100", 100), ("1.5g", int(1.5 * (1 << 30))), ("2KiB", 2048), ("-1", -1),
])
def test_parse_bytes(text: str, value: int) -> None:
    assert parse_bytes(text) == value


def test_parse_bytes_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        parse_bytes("12x")


def test_repeated_list_flags_and_last_wins_for_strings() -> None:
    opts, _ = parse(LS, ["-f", "status=exited", "--filter", "name=x", "--format", "a",
                         "--format", "b"])
    assert opts["filter"] == ["status=exited", "name=x"]
    assert opts["format"] == "b"


def test_restart_and_rm_conflict() -> None:
    opts, args = parse(RUN, ["--rm", "--restart", "always", "busybox"])
    with pytest.raises(UsageError, match="Conflicting options: --restart and --rm"):
        build_create(opts, args, RUN)
