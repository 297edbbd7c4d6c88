"""`ps` flags, filters, formats and Docker's status wording; `inspect`'s shape and templates."""

from __future__ import annotations

import json
import re

import pytest
from tests.integration.containers._probe import wait_for

pytestmark = pytest.mark.usefixtures("daemon")

UP = r"Up (Less than a second|\d+ seconds?)"
EXITED = r"Exited \((\d+)\) (Less than a second|\d+ seconds?) ago"


@pytest.fixture(scope="module")
def trio(daemon):
    """Three containers, oldest first: running (labelled), exited 3, created."""
    run = daemon.out("run", "-d", "--name", "ps-run", "-l", "tier=web", "-l", "solo",
                     "busybox", "sleep", "100").strip()
    ex = daemon.out("run", "-d", "--name", "ps-exit", "-l", "tier=db", "busybox", "sh", "-c",
                    "exit 3").strip()
    daemon.out("wait", ex)
    cr = daemon.out("create", "--name", "ps-created", "busybox", "echo", "a b").strip()
    yield {"run": run, "exit": ex, "created": cr}
    daemon.cli("rm", "-f", run, ex, cr)


def _rows(text):
    lines = text.splitlines()
    return lines[0], lines[1:]


def test_default_table_shows_running_with_docker_columns(daemon, trio):
    header, rows = _rows(daemon.out("ps"))
    assert re.split(r"\s{2,}", header.strip()) == [
        "CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
    mine = [r for r in rows if r.endswith("ps-run")]
    assert len(mine) == 1
    assert not any(r.endswith(("ps-exit", "ps-created")) for r in rows)
    row = mine[0]
    assert row.startswith(trio["run"][:12] + "   busybox   ")
    assert '"sleep 100"' in row
    assert re.search(r"(Less than a second|\d+ seconds?) ago", row)
    assert re.search(UP + r"\s", row)


def test_all_shows_docker_status_wording(daemon, trio):
    out = daemon.out("ps", "-a", "--format", "{{.Names}}|{{.Status}}|{{.State}}")
    seen = dict((line.split("|")[0], line.split("|")[1:]) for line in out.splitlines())
    assert re.fullmatch(UP, seen["ps-run"][0]) and seen["ps-run"][1] == "running"
    m = re.fullmatch(EXITED, seen["ps-exit"][0])
    assert m and m.group(1) == "3" and seen["ps-exit"][1] == "exited"
    assert seen["ps-created"] == ["Created", "created"]
    daemon.out("pause", "ps-run")
    try:
        status = daemon.out("ps", "--filter", "name=ps-run", "--format", "{{.Status}}").strip()
        assert re.fullmatch(UP + r" \(Paused\)", status)
    finally:
        daemon.out("unpause", "ps-run")


def test_quiet_last_latest_and_no_trunc(daemon, trio):
    ids = daemon.out("ps", "-q").split()
    assert trio["run"][:12] in ids
    assert all(len(i) == 12 for i in ids)
    assert daemon.out("ps", "-aq", "-n", "2").split() == [trio["created"][:12],
                                                         trio["exit"][:12]]
    assert daemon.out("ps", "-q", "-l").split() == [trio["created"][:12]]
    assert daemon.out("ps", "-q", "-l", "--no-trunc").split() == [trio["created"]]
    row = [r for r in daemon.out("ps", "-l", "--no-trunc").splitlines()[1:]][0]
    assert row.startswith(trio["created"] + "   busybox   ")
    assert '"echo \'a b\'"' in row or '"echo a b"' in row


@pytest.mark.parametrize(("flt", "want"), [
    ("status=exited", {"exit"}),
    ("status=created", {"created"}),
    ("status=running", {"run"}),
    ("name=ps-ex", {"exit"}),
    ("label=tier", {"run", "exit"}),
    ("label=tier=db", {"exit"}),
    ("label=solo", {"run"}),
    ("ancestor=busybox", {"run", "exit", "created"}),
    ("ancestor=busybox:latest", {"run", "exit", "created"}),
    ("exited=3", {"exit"}),
])
def test_filters(daemon, trio, flt, want):
    got = set(daemon.out("ps", "-aq", "--no-trunc", "--filter", flt).split())
    assert got == {trio[k] for k in want}


def test_id_filter_and_combined_filters(daemon, trio):
    got = daemon.out("ps", "-aq", "--filter", f"id={trio['exit'][:10]}").split()
    assert got == [trio["exit"][:12]]
    # different keys are ANDed, the same key ORed, as in Docker
    got = set(daemon.out("ps", "-aq", "--filter", "label=tier", "--filter",
                         "status=running").split())
    assert got == {trio["run"][:12]}
    got = set(daemon.out("ps", "-aq", "--filter", "status=running", "--filter",
                         "status=created").split())
    assert got == {trio["run"][:12], trio["created"][:12]}


def test_format_templates_and_table(daemon, trio):
    out = daemon.out("ps", "-a", "--filter", "name=ps-run", "--format",
                     "{{.ID}} {{.Image}} {{.Command}} {{.Label \"tier\"}} {{.Labels}}")
    assert out == f'{trio["run"][:12]} busybox "sleep 100" web solo=,tier=web\n'
    out = daemon.out("ps", "--filter", "name=ps-run", "--format", "table {{.Names}}\t{{.State}}")
    assert out.splitlines() == ["NAMES     STATE", "ps-run    running"]
    out = daemon.out("ps", "--filter", "name=ps-run", "--format", "{{json .Names}}")
    assert out == '"ps-run"\n'


def test_size_column(daemon, trio):
    daemon.out("run", "--name", "ps-size", "busybox", "sh", "-c",
               "head -c 5000 /dev/zero > /blob")
    try:
        out = daemon.out("ps", "-a", "-s", "--filter", "name=ps-size")
        header, rows = _rows(out)
        assert header.rstrip().endswith("SIZE")
        assert re.search(r"5kB \(virtual \d+(\.\d+)?MB\)$", rows[0]), rows
    finally:
        daemon.cli("rm", "-f", "ps-size")


def test_inspect_shape(daemon, trio):
    data = json.loads(daemon.out("inspect", trio["run"]))
    assert isinstance(data, list) and len(data) == 1
    c = data[0]
    for key in ("Id", "Created", "Path", "Args", "State", "Image", "ResolvConfPath",
                "HostnamePath", "HostsPath", "LogPath", "Name", "RestartCount", "Driver",
                "Platform", "MountLabel", "ProcessLabel", "AppArmorProfile", "ExecIDs",
                "HostConfig", "GraphDriver", "Mounts", "Config", "NetworkSettings"):
        assert key in c, key
    assert c["Id"] == trio["run"] and c["Name"] == "/ps-run" and c["RestartCount"] == 0
    assert (c["Path"], c["Args"]) == ("sleep", ["100"])
    assert c["Image"].startswith("sha256:")
    s = c["State"]
    assert set(s) >= {"Status", "Running", "Paused", "Restarting", "OOMKilled", "Dead", "Pid",
                      "ExitCode", "Error", "StartedAt", "FinishedAt"}
    assert (s["Status"], s["Running"], s["Paused"]) == ("running", True, False)
    assert s["Pid"] > 0 and s["FinishedAt"] == "0001-01-01T00:00:00Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{1,9}Z", s["StartedAt"])
    cfg = c["Config"]
    assert cfg["Image"] == "busybox" and cfg["Cmd"] == ["sleep", "100"]
    assert cfg["Hostname"] == trio["run"][:12]
    assert cfg["Labels"] == {"tier": "web", "solo": ""}
    assert any(e.startswith("PATH=") for e in cfg["Env"])
    assert (cfg["Tty"], cfg["OpenStdin"], cfg["AttachStdout"]) == (False, False, False)
    h = c["HostConfig"]
    assert h["RestartPolicy"] == {"Name": "no", "MaximumRetryCount": 0}
    assert h["LogConfig"]["Type"] == "json-file"
    assert h["Runtime"] == daemon.out("info", "-f", "{{.DefaultRuntime}}").strip()
    assert h["NetworkMode"] == "default" and h["AutoRemove"] is False
    assert c["Mounts"] == []
    assert isinstance(c["NetworkSettings"]["Networks"], dict)
    assert c["LogPath"].endswith(f"{trio['run']}-json.log")
    ex = json.loads(daemon.out("inspect", trio["exit"]))[0]["State"]
    assert (ex["Status"], ex["Running"], ex["ExitCode"], ex["Pid"]) == ("exited", False, 3, 0)
    cr = json.loads(daemon.out("inspect", trio["created"]))[0]["State"]
    assert cr["Status"] == "created" and cr["StartedAt"] == "0001-01-01T00:00:00Z"


@pytest.mark.parametrize(("template", "expected"), [
    ("{{.State.Status}}", "running"),
    ("{{.State.Running}} {{.State.ExitCode}}", "true 0"),
    ("{{.Name}}", "/ps-run"),
    ("{{.Config.Image}}", "busybox"),
    ("{{json .Config.Cmd}}", '["sleep","100"]'),
    ("{{index .Config.Labels \"tier\"}}", "web"),
    ("{{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}}", "solo=;tier=web;"),
    ("{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}}", "0 0"),
    ("{{.RestartCount}}", "0"),
    ("{{len .Mounts}}", "0"),
    ("{{printf \"%s-%d\" .Name .RestartCount}}", "/ps-run-0"),
])
def test_inspect_format_templates(daemon, trio, template, expected):
    assert daemon.out("inspect", "-f", template, "ps-run").strip() == expected


def test_inspect_several_and_missing(daemon, trio):
    out = daemon.out("inspect", "-f", "{{.Name}}", "ps-run", "ps-exit")
    assert out.splitlines() == ["/ps-run", "/ps-exit"]
    proc = daemon.cli("container", "inspect", "-f", "{{.Name}}", "ps-run", "nope-nope")
    assert proc.returncode == 1
    assert proc.stdout == b"/ps-run\n"
    assert proc.stderr.strip().endswith(b"No such container: nope-nope")
    proc = daemon.cli("inspect", "nope-nope")
    assert proc.returncode == 1
    assert proc.stderr == b"Error: No such object: nope-nope\n"


def test_finished_at_and_started_at_after_exit(daemon, trio):
    s = json.loads(daemon.out("inspect", trio["exit"]))[0]["State"]
    assert s["FinishedAt"] >= s["StartedAt"] > "2000"
    assert wait_for(lambda: re.fullmatch(EXITED, daemon.out(
        "ps", "-a", "--filter", "name=ps-exit", "--format", "{{.Status}}").strip()))
