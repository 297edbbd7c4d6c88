"""berthd's configuration: dockerd's flags, daemon.json, and dockerd's rules for mixing them."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from berth.engine.config import (
    DEFAULT_HOST,
    DaemonConfig,
    RuntimeEntry,
    load_config,
    parse_args,
)
from berth.engine.daemon import LogfmtFormatter
from berth.errors import InvalidArgument


def config_from(tmp_path: Path, flags: list[str], file: object | None = None) -> DaemonConfig:
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps(file) if file is not None else "")
    return load_config(parse_args([*flags, "--config-file", str(path)]))


def test_defaults_match_the_documented_layout(tmp_path: Path) -> None:
    config = config_from(tmp_path, [])
    assert config.hosts == (DEFAULT_HOST,) == ("unix:///run/berth/berth.sock",)
    assert config.data_root == Path("/var/lib/berth")
    assert config.exec_root == Path("/run/berth")
    assert config.pidfile == Path("/run/berth/berthd.pid")
    assert config.default_runtime == "runc"
    assert config.effective_log_level == logging.INFO
    assert config.group is None


def test_flags_as_dockerd_spells_them(tmp_path: Path) -> None:
    config = config_from(tmp_path, [
        "-H", "unix:///tmp/a.sock", "--host", "unix:///tmp/b.sock", "--data-root", "/d",
        "--exec-root", "/e", "-p", "/p.pid", "-D", "-l", "warn", "-G", "staff",
        "--add-runtime", "fast=/usr/bin/crun", "--default-runtime", "fast",
        "--insecure-registry", "myreg:5000", "--registry-mirror", "https://m.example"])
    assert config.hosts == ("unix:///tmp/a.sock", "unix:///tmp/b.sock")
    assert (config.data_root, config.exec_root, config.pidfile) == (
        Path("/d"), Path("/e"), Path("/p.pid"))
    assert config.debug and config.effective_log_level == logging.DEBUG  # -D wins over -l
    assert config.log_level == "warn"
    assert config.group == "staff"
    assert config.runtimes["fast"] == RuntimeEntry("/usr/bin/crun")
    assert config.default_runtime == "fast"
    assert config.insecure_registries == ("myreg:5000",)
    assert config.registry_mirrors == ("https://m.example",)


def test_daemon_json_keys(tmp_path: Path) -> None:
    config = config_from(tmp_path, [], {
        "hosts": ["unix:///tmp/c.sock"], "data-root": "/dr", "log-level": "error",
        "runtimes": {"mine": {"path": "/opt/rt", "runtimeArgs": ["--x"]}},
        "default-runtime": "mine", "insecure-registries": ["10.0.0.0/8"], "debug": False})
    assert config.hosts == ("unix:///tmp/c.sock",)
    assert config.data_root == Path("/dr")
    assert config.effective_log_level == logging.ERROR
    assert config.runtimes["mine"] == RuntimeEntry("/opt/rt", ("--x",))
    assert config.default_runtime == "mine"
    assert config.insecure_registries == ("10.0.0.0/8",)


def test_a_key_in_both_places_is_dockerds_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument) as err:
        config_from(tmp_path, ["--debug", "--data-root", "/x"],
                    {"debug": True, "data-root": "/y", "log-level": "info"})
    assert str(err.value) == (
        f"unable to configure the Docker daemon with file {tmp_path / 'daemon.json'}: the "
        "following directives are specified both as a flag and in the configuration file: "
        "data-root: (from flag: /x, from file: /y), debug: (from flag: true, from file: true)")


@pytest.mark.parametrize(("flags", "file", "message"), [
    ([], {"no-such-key": 1}, "the following directives don't match any configuration option: "
                             "no-such-key"),
    ([], "not json{", "invalid character"),
    (["-l", "loud"], None, "unable to parse logging level: loud"),
    (["--default-runtime", "nope"], None, "default runtime nope does not exist"),
    (["-H", "/no/scheme.sock"], None, "Invalid bind address format: /no/scheme.sock"),
    ([], {"debug": "yes"}, "invalid value for debug"),
])
def test_bad_configurations_are_refused(tmp_path: Path, flags: list[str], file: object,
                                        message: str) -> None:
    path = tmp_path / "daemon.json"
    path.write_text(file if isinstance(file, str) else json.dumps(file or {}))
    with pytest.raises(InvalidArgument) as err:
        load_config(parse_args([*flags, "--config-file", str(path)]))
    assert message in str(err.value)


def test_a_missing_file_matters_only_when_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(InvalidArgument, match="no such file or directory"):
        load_config(parse_args(["--config-file", str(missing)]))


def test_berthd_exits_1_with_the_message_on_a_conflict(tmp_path: Path) -> None:
    (tmp_path / "daemon.json").write_text('{"debug": true}')
    proc = subprocess.run(
        [sys.executable, "-m", "berth.engine.daemon", "-D", "--config-file",
         str(tmp_path / "daemon.json"), "--data-root", str(tmp_path / "d"),
         "-H", f"unix://{tmp_path}/s.sock"], capture_output=True, timeout=30)
    assert proc.returncode == 1
    assert b"specified both as a flag and in the configuration file: debug" in proc.stderr
    assert not (tmp_path / "d").exists()  # nothing touched before the configuration is valid


def test_log_lines_look_like_dockerds() -> None:
    record = logging.LogRecord("berth", logging.WARNING, __file__, 1, 'said "hi"\nthere', None,
                               None)
    line = LogfmtFormatter().format(record)
    assert line.startswith('time="')
    assert line.endswith(' level=warning msg="said \\"hi\\"\\nthere"')
