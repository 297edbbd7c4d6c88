"""Sizes, durations, tables and listings, checked against docker's own output in the captures."""

from __future__ import annotations

import io
import json

import pytest

from berth.cli.commands.container import PS_DEFAULT, PS_HEADERS, container_row
from berth.cli.commands.image import LS_DEFAULT, LS_HEADERS, image_rows
from berth.cli.commands.stats import DEFAULT as STATS_DEFAULT
from berth.cli.commands.stats import HEADERS as STATS_HEADERS
from berth.cli.commands.stats import stats_row
from berth.cli.commands.system import _ansic, df_rows, event_line
from berth.cli.listing import filters_param, render_rows
from berth.cli.render import (
    bytes_size,
    ellipsis,
    format_ports,
    human_duration,
    human_size,
    print_json_messages,
    quoted_command,
    short_id,
    tabulate,
)

from .conftest import CAPTURES, capture_output, capture_response


@pytest.mark.parametrize("size, precision, text", [
    (0, 3, "0B"), (999, 3, "999B"), (1000, 3, "1kB"), (1984459, 3, "1.98MB"),
    (3969333, 4, "3.969MB"), (1090, 3, "1.09kB"), (75, 4, "75B"), (2_140_160, 4, "2.14MB"),
    (1_000_000_000, 4, "1GB"), (123_456_789_012, 4, "123.5GB"), (999_999, 3, "1e+03kB"),
])
def test_human_size(size: int, precision: int, text: str) -> None:
    assert human_size(size, precision) == text


@pytest.mark.parametrize("size, text", [
    (331776, "324KiB"), (25_275_523_072, "23.54GiB"), (0, "0B"), (1024, "1KiB"),
])
def test_bytes_size(size: int, text: str) -> None:
    assert bytes_size(size) == text


@pytest.mark.parametrize("seconds, text", [
    (0.3, "Less than a second"), (1, "1 second"), (3, "3 seconds"), (59, "59 seconds"),
    (60, "About a minute"), (119, "About a minute"), (120, "2 minutes"), (59 * 60, "59 minutes"),
    (3600, "About an hour"), (2 * 3600, "2 hours"), (47 * 3600, "47 hours"),
    (48 * 3600, "2 days"), (13 * 86400, "13 days"), (14 * 86400, "2 weeks"),
    (60 * 86400, "2 months"), (800 * 86400, "2 years"),
])
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def test_ellipsis_and_command() -> None:
    assert ellipsis("sh -c 'echo hello world'", 20) == "sh -c 'echo hello w…"
    assert quoted_command("httpd -f -p 80", True) == '"httpd -f -p 80"'
    assert quoted_command("x" * 30, False) == '"' + "x" * 30 + '"'
    assert short_id("sha256:c2fd7aaf3c3b0f7074fe") == "c2fd7aaf3c3b"


def test_tabulate_min_width_and_padding() -> None:
    assert tabulate(["NETWORK ID\tNAME\tDRIVER\tSCOPE", "4513815986a0\tbridge\tbridge\tlocal"]) == (
        "NETWORK ID     NAME      DRIVER    SCOPE\n"
        "4513815986a0   bridge    bridge    local\n")


def test_ports_column() -> None:
    ports = [{"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 30000, "Type": "tcp"},
             {"IP": "::", "PrivatePort": 80, "PublicPort": 30000, "Type": "tcp"}]
    assert format_ports(ports) == "0.0.0.0:30000->80/tcp, [::]:30000->80/tcp"
    assert format_ports([{"PrivatePort": 80, "Type": "tcp"}]) == "80/tcp"
    ranged = [{"IP": "0.0.0.0", "PrivatePort": p, "PublicPort": p + 8000, "Type": "tcp"}
              for p in (80, 81)]
    assert format_ports(ranged) == "0.0.0.0:8080-8081->80-81/tcp"


def test_container_ls_matches_capture() -> None:
    items = json.loads(capture_response("04-container-ls.txt", "GET /v1.41/containers/json"))
    rows = [container_row(c, 1796300902.5, True) for c in items]
    assert render_rows("", PS_DEFAULT, rows, PS_HEADERS) == capture_output("04-container-ls.txt")


def test_image_ls_matches_capture() -> None:
    lines = (CAPTURES / "02-image-ls.txt").read_text().splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith('[{"Containers"'))
    images = json.loads(lines[start] + lines[start + 2])  # the body spans two socket reads
    rows = image_rows(images, 1796300900, True, False)
    out = render_rows("", LS_DEFAULT, rows, LS_HEADERS).splitlines()
    expected = capture_output("02-image-ls.txt").splitlines()
    assert out[: len(expected)] == expected


def test_network_and_volume_ls_match_captures() -> None:
    nets = json.loads(capture_response("22-network-ls.txt", "GET /v1.41/networks"))
    rows = [{"ID": n["Id"][:12], "Name": n["Name"], "Driver": n["Driver"], "Scope": n["Scope"]}
            for n in sorted(nets, key=lambda n: n["Name"])]
    assert render_rows("", "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}", rows,
                       {"ID": "NETWORK ID"}) == capture_output("22-network-ls.txt")
    vols = json.loads(capture_response("16-volume-ls.txt", "GET /v1.41/volumes"))["Volumes"]
    assert render_rows("", "table {{.Driver}}\t{{.Name}}", vols,
                       {"Name": "VOLUME NAME"}) == capture_output("16-volume-ls.txt")


def test_custom_table_format_and_plain_format() -> None:
    rows = [{"ID": "abc", "Image": "busybox", "Names": "web"}]
    assert render_rows(r"table {{.ID}}\t{{.Image}}", "", rows, PS_HEADERS) == (
        "CONTAINER ID   IMAGE\nabc            busybox\n")
    assert render_rows("{{.Names}}", "", rows, PS_HEADERS) == "web\n"
    assert render_rows("json", "", rows, PS_HEADERS) == (
        '{"ID":"abc","Image":"busybox","Names":"web"}\n')


def test_stats_row_matches_capture() -> None:
    data = json.loads(capture_response("33-stats-no-stream.txt", "GET /v1.41/containers/"))
    out = render_rows("", STATS_DEFAULT, [stats_row(data, "anchor-p1")], STATS_HEADERS)
    assert out == capture_output("33-stats-no-stream.txt")


def test_events_lines_match_capture(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    import time

    time.tzset()
    body = (CAPTURES / "34-events-window.txt").read_text().splitlines()
    events = [json.loads(ln) for ln in body if ln.startswith('{"status"')]
    assert "".join(event_line(e) + "\n" for e in events) == capture_output(
        "34-events-window.txt")


def test_system_df_summary_shape() -> None:
    rows = df_rows({"LayersSize": 3969333, "Images": [
        {"Containers": 1, "Size": 1984459, "SharedSize": 1984459, "VirtualSize": 1984459},
        {"Containers": 0, "Size": 1984467, "SharedSize": 1984459, "VirtualSize": 1984467}],
        "Containers": [{"State": "exited", "SizeRw": 0}], "Volumes": [],
        "BuildCache": [{"Size": 75, "InUse": False, "Shared": False}]})
    out = render_rows("", "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t"
                      "{{.Reclaimable}}", rows,
                      {"Type": "TYPE", "TotalCount": "TOTAL", "Active": "ACTIVE",
                       "Size": "SIZE", "Reclaimable": "RECLAIMABLE"})
    assert out.splitlines() == [
        "TYPE            TOTAL     ACTIVE    SIZE      RECLAIMABLE",
        "Images          2         1         3.969MB   3.969MB (100%)",
        "Containers      1         0         0B        0B",
        "Local Volumes   0         0         0B        0B",
        "Build Cache     1         0         75B       75B",
    ]


def test_filters_param_is_dockers_json() -> None:
    assert filters_param(["label=anchor-capture=1"]) == '{"label":{"anchor-capture=1":true}}'
    assert filters_param(["status=exited", "status=created", "name=x"]) == (
        '{"status":{"exited":true,"created":true},"name":{"x":true}}')
    assert filters_param([]) is None


def test_build_time_ansic() -> None:
    assert _ansic("2026-05-07T21:09:36.000000000+00:00") == "Thu May  7 21:09:36 2026"
    assert _ansic("2025-05-30T12:07:14Z") == "Fri May 30 12:07:14 2025"


def test_json_progress_on_a_terminal_rewrites_each_layer_line_in_place() -> None:
    def layer(ident: str, status: str, progress: str = "") -> dict[str, object]:
        msg: dict[str, object] = {"status": status, "progressDetail": {}, "id": ident}
        if progress:
            msg["progress"] = progress
        return msg

    out = io.StringIO()
    print_json_messages(iter([
        {"status": "Pulling from x", "id": "a"},
        layer("l1", "Pulling fs layer"),
        layer("l2", "Pulling fs layer"),
        layer("l1", "Downloading", "[=>   ] 1B/2B"),
        layer("l1", "Pull complete"),
        {"status": "Digest: sha256:1"},
        {"status": "Pulling from x", "id": "b"},  # pull -a: the next tag's block
        layer("l1", "Already exists"),
    ]), out, tty=True)
    assert out.getvalue() == (
        "a: Pulling from x\n"
        "l1: Pulling fs layer\n"
        "l2: Pulling fs layer\n"
        "\x1b[2A\r\x1b[2Kl1: Downloading [=>   ] 1B/2B\n\x1b[1B"
        "\x1b[2A\r\x1b[2Kl1: Pull complete\n\x1b[1B"
        "Digest: sha256:1\n"
        "b: Pulling from x\n"
        "l1: Already exists\n"  # below its tag's line, not over the last block's
    )
