"""Pure parts of the engine: lifecycle table, record codec, per-container files, log reading."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from berth.api.wire_containers import human_duration, parse_create_body, status_text
from berth.engine.container_files import hosts_file, merge_env, merge_image_config, resolv_conf
from berth.engine.containers import parse_signal
from berth.engine.logs import LogQuery, parse_since, parse_timestamp, read_logs
from berth.engine.model import (
    ContainerConfig,
    ContainerRecord,
    ContainerState,
    ContainerStatus,
    HostConfig,
    RestartPolicy,
    check_transition,
    validate_name,
)
from berth.engine.records import from_plain, to_plain
from berth.errors import Conflict, InvalidArgument
from berth.oci.image import ImageConfig


def _record(**config: object) -> ContainerRecord:
    return ContainerRecord(id="a" * 64, name="web", created="2026-12-03T12:00:00.000000000Z",
                           image_id="sha256:" + "b" * 64,
                           config=ContainerConfig(image="busybox", hostname="aaaaaaaaaaaa",
                                                  **config),  # type: ignore[arg-type]
                           host_config=HostConfig())


def test_record_round_trips_through_json():
    record = replace(_record(cmd=("sh",), labels={"a": "b"}, exposed_ports=("80/tcp",)),
                     host_config=HostConfig(memory=32 << 20, restart_policy=RestartPolicy("always"),
                                            port_bindings={"80/tcp": (("", "8080"),)}),
                     status=ContainerStatus(state=ContainerState.EXITED, exit_code=3))
    plain = json.loads(json.dumps(to_plain(record)))
    assert from_plain(ContainerRecord, plain) == record


@pytest.mark.parametrize(("current", "target", "ok"), [
    (ContainerState.CREATED, ContainerState.RUNNING, True),
    (ContainerState.RUNNING, ContainerState.PAUSED, True),
    (ContainerState.PAUSED, ContainerState.RUNNING, True),
    (ContainerState.EXITED, ContainerState.RUNNING, True),
    (ContainerState.PAUSED, ContainerState.REMOVING, False),
    (ContainerState.RUNNING, ContainerState.CREATED, False),
])
def test_lifecycle_table(current, target, ok):
    if ok:
        check_transition(current, target)
    else:
        with pytest.raises(Conflict):
            check_transition(current, target)


@pytest.mark.parametrize(("name", "ok"), [
    ("web", True), ("/web", True), ("a1", True), ("a.b_c-d", True),
    ("x", False), ("-web", False), ("we b", False), ("wéb", False), ("", False),
])
def test_container_names_follow_docker(name, ok):
    if ok:
        assert validate_name(name) == name.lstrip("/")
    else:
        with pytest.raises(InvalidArgument, match=r"Invalid container name"):
            validate_name(name)


@pytest.mark.parametrize(("text", "number"), [
    ("9", 9), ("KILL", 9), ("SIGKILL", 9), ("sigterm", 15), ("usr1", 10), ("SIGRTMIN+1", 35),
])
def test_signals_parse_as_docker(text, number):
    assert parse_signal(text) == number


def test_bad_signal_is_invalid():
    with pytest.raises(InvalidArgument):
        parse_signal("SIGNOPE")


def test_user_env_replaces_image_env_in_place():
    assert merge_env(["PATH=/bin", "A=1"], ["A=2", "B=3"]) == ["PATH=/bin", "A=2", "B=3"]


def test_image_config_fills_what_the_user_left_empty():
    image = ImageConfig(env=("PATH=/bin",), cmd=("sh",), working_dir="/app", user="nobody",
                        labels={"l": "image"}, exposed_ports=("80/tcp",))
    merged = merge_image_config(ContainerConfig(image="x", labels={"m": "user"}), image)
    assert merged.cmd == ("sh",)
    assert merged.working_dir == "/app" and merged.user == "nobody"
    assert merged.labels == {"l": "image", "m": "user"}
    assert merged.exposed_ports == ("80/tcp",)


def test_entrypoint_at_create_drops_the_image_cmd():
    image = ImageConfig(cmd=("sh",), entrypoint=("/init",))
    merged = merge_image_config(ContainerConfig(image="x", entrypoint=("echo",)), image)
    assert merged.argv == ["echo"]
    merged = merge_image_config(ContainerConfig(image="x", cmd=("ls",)), image)
    assert merged.argv == ["/init", "ls"]


def test_hosts_file_has_docker_block_extra_hosts_and_own_line():
    record = replace(_record(), host_config=HostConfig(extra_hosts=("db.internal:192.0.2.10",)))
    text = hosts_file(record, "172.17.0.2")
    lines = text.splitlines()
    assert lines[0] == "127.0.0.1\tlocalhost"
    assert lines[1] == "::1\tlocalhost ip6-localhost ip6-loopback"
    assert "192.0.2.10\tdb.internal" in lines
    assert lines[-1] == "172.17.0.2\taaaaaaaaaaaa"


def test_resolv_conf_drops_loopback_resolvers_and_falls_back():
    record = _record()
    assert resolv_conf("nameserver 127.0.0.53\nsearch corp\n", record) == (
        "search corp\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n")
    assert resolv_conf("nameserver 10.0.0.2\n", record) == "nameserver 10.0.0.2\n"
    custom = replace(record, host_config=HostConfig(dns=("192.0.2.53",),
                                                    dns_options=("ndots:2",)))
    assert resolv_conf("nameserver 10.0.0.2\n", custom) == (
        "nameserver 192.0.2.53\noptions ndots:2\n")


@pytest.mark.parametrize(("seconds", "text"), [
    (0.2, "Less than a second"), (1, "1 second"), (3, "3 seconds"), (61, "About a minute"),
    (300, "5 minutes"), (3600, "About an hour"), (7200, "2 hours"), (3 * 86400, "3 days"),
])
def test_durations_read_as_docker(seconds, text):
    assert human_duration(seconds) == text


def test_status_column():
    now = parse_timestamp("2026-12-03T12:00:10Z")
    running = replace(_record(), status=ContainerStatus(
        state=ContainerState.RUNNING, started_at="2026-12-03T12:00:07.5Z"))
    assert status_text(running, now) == "Up 2 seconds"
    paused = replace(running, status=replace(running.status, state=ContainerState.PAUSED))
    assert status_text(paused, now) == "Up 2 seconds (Paused)"
    exited = replace(running, status=ContainerStatus(
        state=ContainerState.EXITED, exit_code=137, finished_at="2026-12-03T11:58:10Z"))
    assert status_text(exited, now) == "Exited (137) 2 minutes ago"


def test_create_body_types_are_checked():
    config, host = parse_create_body({"Image": "busybox", "Cmd": ["echo", "hi"],
                                      "HostConfig": {"Memory": 33554432, "AutoRemove": True}})
    assert config.cmd == ("echo", "hi")
    assert host.memory == 33554432 and host.auto_remove
    with pytest.raises(InvalidArgument, match="cannot unmarshal"):
        parse_create_body({"Image": "busybox", "Cmd": "x", "Tty": "yes"})
    with pytest.raises(InvalidArgument, match="Minimum memory limit"):
        parse_create_body({"Image": "busybox", "HostConfig": {"Memory": 1024}})


def test_logs_tail_since_and_torn_lines(tmp_path: Path):
    path = tmp_path / "c-json.log"
    lines = [
        {"log": "one\n", "stream": "stdout", "time": "2026-12-03T12:00:00.100000000Z"},
        {"log": "two\n", "stream": "stderr", "time": "2026-12-03T12:00:01.200000000Z"},
        {"log": "three\n", "stream": "stdout", "time": "2026-12-03T12:00:02.300000000Z"},
    ]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"log": "torn')
    entries, _ = read_logs(path, LogQuery())
    assert [e.data for e in entries] == [b"one\n", b"two\n", b"three\n"]
    entries, _ = read_logs(path, LogQuery(tail=1))
    assert [e.data for e in entries] == [b"three\n"]
    entries, _ = read_logs(path, LogQuery(stderr=False))
    assert [e.stream for e in entries] == ["stdout", "stdout"]
    since = parse_since("2026-12-03T12:00:01Z", 0)
    entries, _ = read_logs(path, LogQuery(since=since))
    assert [e.data for e in entries] == [b"two\n", b"three\n"]
    assert parse_since("10s", 100.0) == 90.0
