"""The shim's pure parts: json-file log entries, the request codec, frames, the exit file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from berth.errors import InvalidArgument
from berth.runtime.shim import protocol
from berth.runtime.shim.jsonlog import MAX_ENTRY, JsonLogWriter, encode_entry, rfc3339_nano
from berth.runtime.shim.protocol import ExitStatus, ShimConfig


def _entries(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_lines_are_split_on_newlines_across_chunks(tmp_path: Path) -> None:
    path = tmp_path / "c-json.log"
    w = JsonLogWriter(str(path))
    w.feed("stdout", b"one\ntw")
    w.feed("stderr", b"e1\n")
    w.feed("stdout", b"o\nthree")
    w.close()
    assert [(e["log"], e["stream"]) for e in _entries(path)] == [
        ("one\n", "stdout"),
        ("e1\n", "stderr"),
        ("two\n", "stdout"),
        ("three", "stdout"),  # the rest at the end of the stream, without newline
    ]


def test_long_lines_become_16k_partial_entries(tmp_path: Path) -> None:
    path = tmp_path / "c-json.log"
    w = JsonLogWriter(str(path))
    w.feed("stdout", b"a" * (MAX_ENTRY * 2 + 10) + b"\nnext\n")
    w.close()
    logs = [e["log"] for e in _entries(path)]
    assert logs == ["a" * MAX_ENTRY, "a" * MAX_ENTRY, "a" * 10 + "\n", "next\n"]


def test_entry_encoding_is_gos() -> None:
    line = encode_entry(b"<a&b> \xff \xe2\x82\xac\n", "stdout", "2026-12-03T13:22:35.123456789Z")
    assert line == (
        b'{"log":"\\u003ca\\u0026b\\u003e \xef\xbf\xbd \xe2\x82\xac\\n","stream":"stdout",'
        b'"time":"2026-12-03T13:22:35.123456789Z"}\n'
    )


def test_rfc3339_nano() -> None:
    assert rfc3339_nano(1_796_304_155_000_000_001) == "2026-12-03T13:22:35.000000001Z"


def test_request_round_trip() -> None:
    for request in (
        protocol.StartRequest(),
        protocol.AttachRequest(stdin=True, stdout=True, stderr=False),
        protocol.ResizeRequest(24, 80),
        protocol.KillRequest(9, all=True),
        protocol.PauseRequest(),
        protocol.ResumeRequest(),
        protocol.StateRequest(),
        protocol.WaitRequest(),
    ):
        assert protocol.decode_request(protocol.encode_request(request)) == request


@pytest.mark.parametrize(
    "line",
    [b"nope", b"[]", b'{"op": "exec"}', b'{"op": "kill", "signal": "9"}', b'{"op": "resize"}'],
)
def test_bad_requests(line: bytes) -> None:
    with pytest.raises(InvalidArgument):
        protocol.decode_request(line)


def test_frames() -> None:
    data = protocol.frame(protocol.STDERR, b"xyz")
    assert data == b"\x02\x00\x00\x00\x00\x00\x00\x03xyz"
    assert protocol.parse_frame_header(data[:8]) == (2, 3)


def test_exit_file_and_config_round_trip(tmp_path: Path) -> None:
    status = ExitStatus(exit_code=137, exited_at=rfc3339_nano(), oom_killed=True, pid=42)
    path = tmp_path / protocol.EXIT_FILE_NAME
    assert protocol.load_exit_file(str(path)) is None
    protocol.save_exit_file(str(path), status)
    assert protocol.load_exit_file(str(path)) == status
    assert [p.name for p in tmp_path.iterdir()] == [protocol.EXIT_FILE_NAME]  # no temp left
    config = ShimConfig("id", "/b", "/s", "/l", "/p", runtime_args=("--systemd-cgroup",))
    assert ShimConfig.from_json(config.to_json()) == config
    assert config.exit_file == "/b/exit.json"


def _lines(path: Path) -> list[str]:
    return [json.loads(line)["log"] for line in path.read_text().splitlines()]


def test_max_size_rotates_into_numbered_files(tmp_path: Path) -> None:
    # docker's json-file: the size is checked before each entry; <log>.1 is the newest old file
    path = tmp_path / "c-json.log"
    w = JsonLogWriter(str(path), max_size=200, max_files=3)
    for i in range(12):
        w.feed("stdout", f"line-{i:02d}\n".encode())
    w.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["c-json.log", "c-json.log.1", "c-json.log.2"]
    for name in files:
        assert (tmp_path / name).stat().st_size < 200 + 100  # one entry past the limit at most
    kept = _lines(path.with_name("c-json.log.2")) + _lines(path.with_name("c-json.log.1")) \
        + _lines(path)
    assert kept == [f"line-{i:02d}\n" for i in range(12 - len(kept), 12)]


def test_one_file_is_emptied_in_place(tmp_path: Path) -> None:
    path = tmp_path / "c-json.log"
    w = JsonLogWriter(str(path), max_size=100, max_files=1)
    for i in range(5):
        w.feed("stdout", f"line-{i}\n".encode())
    w.close()
    assert [p.name for p in tmp_path.iterdir()] == ["c-json.log"]
    assert _lines(path)[-1] == "line-4\n" and len(_lines(path)) < 5
