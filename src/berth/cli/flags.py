"""Docker-compatible command-line flags (the behaviour of spf13/pflag as the docker CLI uses it).

Short clusters (``-dit``), ``-eK=V`` and ``-e K=V``, ``--env=K=V``, repeatable list flags,
``--`` as the end of options, and, for commands whose arguments are themselves a command line
(run, create, exec), options stop at the first positional. Errors carry pflag's wording; the
caller prints them with ``See 'berth <cmd> --help'.`` and exits 125, as docker does.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_TYPE_NAMES = {"optstr": "string", "optint": "int", "str": "string",
               "list": "list", "int": "int", "float": "decimal",
               "bytes": "bytes", "bool": "", "map": "map"}


class Flag:
    """One option. ``kind``: bool, str, list (repeatable), int, float, bytes (``64m``), map;
    ``optstr``/``optint`` start as None so "not given" differs from "given empty"."""

    __slots__ = ("long", "short", "kind", "default", "help", "dest", "metavar", "hidden")

    def __init__(self, long: str, short: str = "", kind: str = "bool", default: Any = None,
                 help: str = "", metavar: str = "", hidden: bool = False) -> None:
        self.long = long
        self.short = short
        self.kind = kind
        self.default = default
        self.help = help
        self.dest = long.replace("-", "_")
        self.metavar = metavar or _TYPE_NAMES[kind]
        self.hidden = hidden

    def initial(self) -> Any:
        if self.kind == "list":
            return list(self.default or [])
        if self.kind == "map":
            return dict(self.default or {})
        if self.default is not None or self.kind in ("optstr", "optint"):
            return self.default
        return {"bool": False, "int": 0, "float": 0.0, "bytes": 0, "str": ""}.get(self.kind, "")

    def label(self) -> str:
        return f"-{self.short}, --{self.long}" if self.short else f"--{self.long}"


class Command:
    """What a verb accepts; ``name`` is how help and errors refer to it (``container run``)."""

    __slots__ = ("name", "usage", "summary", "flags", "interspersed", "min_args", "max_args",
                 "aliases", "_by_long", "_by_short")

    def __init__(self, name: str, usage: str, summary: str, flags: list[Flag] | None = None,
                 interspersed: bool = True, min_args: int = 0, max_args: int = -1,
                 aliases: tuple[str, ...] = ()) -> None:
        self.name = name
        self.usage = usage
        self.summary = summary
        self.flags = list(flags or [])
        self.interspersed = interspersed
        self.min_args = min_args
        self.max_args = max_args
        self.aliases = aliases
        self._by_long = {f.long: f for f in self.flags}
        self._by_short = {f.short: f for f in self.flags if f.short}


class UsageError(Exception):
    """Bad command line; ``exit_code`` 125 for flag errors (docker's), 1 for argument counts."""

    def __init__(self, message: str, command: Command, exit_code: int = 125,
                 show_usage: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.command = command
        self.exit_code = exit_code
        self.show_usage = show_usage


class HelpRequested(Exception):
    def __init__(self, command: Command) -> None:
        super().__init__(command.name)
        self.command = command


def parse(cmd: Command, argv: list[str], name: str = "") -> tuple[dict[str, Any], list[str]]:
    """Parse ``argv`` (the words after the verb) into option values and positionals.

    ``name`` is how the user invoked the verb (``run`` or ``container run``), for messages.
    """
    shown = name or cmd.name
    opts: dict[str, Any] = {f.dest: f.initial() for f in cmd.flags}
    args: list[str] = []
    i = 0
    n = len(argv)
    while i < n:
        word = argv[i]
        i += 1
        if word == "--":
            args.extend(argv[i:])
            break
        if word.startswith("--"):
            name, eq, value = word[2:].partition("=")
            flag = cmd._by_long.get(name)
            if flag is None:
                if name == "help":
                    raise HelpRequested(cmd)
                raise UsageError(f"unknown flag: --{name}", cmd)
            if flag.kind == "bool":
                _store(cmd, opts, flag, value if eq else "true", f"--{name}")
                continue
            if not eq:
                if i >= n:
                    raise UsageError(f"flag needs an argument: --{name}", cmd)
                value = argv[i]
                i += 1
            _store(cmd, opts, flag, value, f"--{name}")
        elif word.startswith("-") and word != "-":
            i = _short_cluster(cmd, opts, word, argv, i)
        else:
            args.append(word)
            if not cmd.interspersed:
                args.extend(argv[i:])
                break
    if len(args) < cmd.min_args:
        need = cmd.min_args
        plural = "argument" if need == 1 else "arguments"
        if cmd.max_args == cmd.min_args:
            text = f'"berth {shown}" requires exactly {need} {plural}.'
        else:
            text = f'"berth {shown}" requires at least {need} {plural}.'
        raise UsageError(text, cmd, exit_code=1, show_usage=True)
    if 0 <= cmd.max_args < len(args):
        if cmd.max_args == 0:
            text = f'"berth {shown}" accepts no arguments.'
        elif cmd.max_args == cmd.min_args:
            plural = "argument" if cmd.max_args == 1 else "arguments"
            text = f'"berth {shown}" requires exactly {cmd.max_args} {plural}.'
        else:
            plural = "argument" if cmd.max_args == 1 else "arguments"
            text = f'"berth {shown}" requires at most {cmd.max_args} {plural}.'
        raise UsageError(text, cmd, exit_code=1, show_usage=True)
    return opts, args


def _short_cluster(cmd: Command, opts: dict[str, Any], word: str, argv: list[str], i: int) -> int:
    letters = word[1:]
    j = 0
    while j < len(letters):
        ch = letters[j]
        flag = cmd._by_short.get(ch)
        if flag is None:
            if ch == "h":
                raise HelpRequested(cmd)
            raise UsageError(f"unknown shorthand flag: '{ch}' in -{letters}", cmd)
        rest = letters[j + 1 :]
        if flag.kind == "bool":
            if rest.startswith("="):
                _store(cmd, opts, flag, rest[1:], f"-{ch}")
                return i
            _store(cmd, opts, flag, "true", f"-{ch}")
            j += 1
            continue
        if rest:
            value = rest[1:] if rest.startswith("=") else rest
        else:
            if i >= len(argv):
                raise UsageError(f"flag needs an argument: '{ch}' in -{ch}", cmd)
            value = argv[i]
            i += 1
        _store(cmd, opts, flag, value, f"-{ch}")
        return i
    return i


def _store(cmd: Command, opts: dict[str, Any], flag: Flag, value: str, spelled: str) -> None:
    kind = flag.kind
    try:
        if kind == "bool":
            opts[flag.dest] = parse_bool(value)
        elif kind == "list":
            opts[flag.dest].append(value)
        elif kind == "map":
            key, _, val = value.partition("=")
            opts[flag.dest][key] = val
        elif kind in ("int", "optint"):
            opts[flag.dest] = _parse_int(value)
        elif kind == "float":
            opts[flag.dest] = float(value)
        elif kind == "bytes":
            opts[flag.dest] = parse_bytes(value)
        else:
            opts[flag.dest] = value
    except ValueError as err:
        raise UsageError(
            f'invalid argument "{value}" for "{flag.label()}" flag: {err}', cmd
        ) from None


def parse_bool(value: str) -> bool:
    if value in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if value in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    raise ValueError(f'strconv.ParseBool: parsing "{value}": invalid syntax')


def _parse_int(value: str) -> int:
    try:
        return int(value, 0) if value[:2].lower() in ("0x", "0o", "0b") else int(value)
    except ValueError:
        raise ValueError(f'strconv.ParseInt: parsing "{value}": invalid syntax') from None


_BINARY = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_bytes(value: str) -> int:
    """Docker's ``RAMInBytes``: ``64m`` → 67108864; binary units, case-insensitive; -1 allowed."""
    text = value.strip().lower()
    if text == "-1":
        return -1
    num = text.rstrip("bkmgtpi")
    unit = text[len(num) :]
    if unit.endswith("ib"):
        unit = unit[:-2]
    elif len(unit) == 2 and unit.endswith("b"):
        unit = unit[:-1]
    if unit not in _BINARY:
        raise ValueError(f"invalid suffix: '{text[len(num):]}'")
    try:
        number = float(num)
    except ValueError:
        raise ValueError(f"invalid size: '{value}'") from None
    if number < 0:
        raise ValueError(f"invalid size: '{value}'")
    return int(number * _BINARY[unit])


def help_text(cmd: Command, prog: str = "berth") -> str:
    lines = ["", f"Usage:  {prog} {cmd.usage}", "", cmd.summary]
    if cmd.aliases:
        lines += ["", "Aliases:", "  " + ", ".join(f"{prog} {a}" for a in cmd.aliases)]
    visible = [f for f in cmd.flags if not f.hidden]
    visible.append(Flag("help", "", "bool", help="Print usage"))
    if visible:
        lines += ["", "Options:"]
        cells = []
        for f in sorted(visible, key=lambda fl: fl.long):
            head = f"-{f.short}, --{f.long}" if f.short else f"    --{f.long}"
            if f.metavar:
                head += " " + f.metavar
            tail = f.help
            if f.default not in (None, "", False, [], {}, 0) and f.kind != "bool":
                shown = f'"{f.default}"' if f.kind == "str" else str(f.default)
                tail += f" (default {shown})"
            cells.append((head, tail))
        width = max(len(h) for h, _ in cells) + 3
        lines += [f"  {h.ljust(width)}{t}".rstrip() for h, t in cells]
    return "\n".join(lines) + "\n"
