"""``--log-driver``/``--log-opt`` checks and reading rotated json-file logs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from berth.engine.containers import check_stop_signal
from berth.engine.log_config import LogSettings, check_log_config, log_settings, parse_size
from berth.engine.logs import LogQuery, read_logs
from berth.errors import BerthError, InvalidArgument, NotFound, NotImplementedByBerth

LOG = Path("/x/c-json.log")


@pytest.mark.parametrize("driver, opts, error, message", [
    ("bogus", {}, NotFound, 'error looking up logging plugin bogus: plugin "bogus" not found'),
    ("json-file", {"foo": "bar"}, InvalidArgument,
     "unknown log opt 'foo' for json-file log driver"),
    ("syslog", {}, NotImplementedByBerth, 'logging driver "syslog" is not supported by berth'),
])
def test_create_refuses_what_dockerd_refuses(driver: str, opts: dict[str, str],
                                             error: type[BerthError], message: str) -> None:
    with pytest.raises(error, match=message):
        check_log_config(driver, opts)


@pytest.mark.parametrize("driver, opts", [
    ("json-file", {}), ("json-file", {"max-size": "abc", "tag": "x", "mode": "non-blocking"}),
    ("none", {}), ("none", {"max-size": "1m"}),  # dockerd checks no options of none
])
def test_create_accepts(driver: str, opts: dict[str, str]) -> None:
    check_log_config(driver, opts)


@pytest.mark.parametrize("opts, settings", [
    ({}, LogSettings(LOG)),
    ({"max-size": "10k", "max-file": "3"}, LogSettings(LOG, 10240, 3)),
    ({"max-size": "1.5m"}, LogSettings(LOG, 1572864, 1)),
    ({"max-file": "3"}, LogSettings(LOG, 0, 1)),  # max-file alone: no rotation
])
def test_start_settings(opts: dict[str, str], settings: LogSettings) -> None:
    assert log_settings("json-file", opts, LOG) == settings


@pytest.mark.parametrize("opts, message", [
    ({"max-size": "abc"}, "invalid size: 'abc'"),
    ({"max-size": "-5"}, "invalid size: '-5'"),
    ({"max-size": "0"}, "max-size must be a positive number"),
    ({"max-size": "1k", "max-file": "0"}, "max-file cannot be less than 1"),
    ({"max-size": "1k", "max-file": "x"}, 'strconv.Atoi: parsing "x": invalid syntax'),
])
def test_start_refuses_bad_values(opts: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        log_settings("json-file", opts, LOG)
    assert str(err.value) == f"failed to initialize logging driver: {message}"


def test_none_keeps_no_log() -> None:
    assert log_settings("none", {}, LOG) == LogSettings(None)


@pytest.mark.parametrize("text, size", [("1", 1), ("1k", 1024), ("2KiB", 2048), ("1 MB", 1 << 20),
                                        ("1g", 1 << 30)])
def test_sizes_are_docker_ram_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("value, ok", [("SIGTERM", True), ("kill", True), ("RTMIN+3", True),
                                       ("99", True), ("0", False), ("BOGUS", False),
                                       ("SIGFOO", False)])
def test_stop_signal_is_checked_as_docker(value: str, ok: bool) -> None:
    if ok:
        check_stop_signal(value)
    else:
        with pytest.raises(InvalidArgument, match=f"^Invalid signal: {value}$"):
            check_stop_signal(value)


def test_read_logs_reads_rotated_files_oldest_first(tmp_path: Path) -> None:
    path = tmp_path / "c-json.log"

    def write(p: Path, *lines: str) -> None:
        p.write_text("".join(json.dumps({"log": f"{line}\n", "stream": "stdout",
                                         "time": "2026-01-01T00:00:00.000000001Z"}) + "\n"
                             for line in lines))

    write(path.with_name("c-json.log.2"), "a")
    write(path.with_name("c-json.log.1"), "b", "c")
    write(path, "d")
    entries, _ = read_logs(path, LogQuery())
    assert [e.data for e in entries] == [b"a\n", b"b\n", b"c\n", b"d\n"]
    entries, _ = read_logs(path, LogQuery(tail=2))
    assert [e.data for e in entries] == [b"c\n", b"d\n"]
