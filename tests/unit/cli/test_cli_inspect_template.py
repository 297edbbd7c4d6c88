"""``inspect -f``: the docker CLI's typed pass, then the raw pass with missingkey=error."""

from __future__ import annotations

from typing import Any

import pytest

from berth.cli.inspect_template import render, typed_view
from berth.cli.template import GoMap, TemplateError, parse

CONTAINER: dict[str, Any] = {
    "Name": "/web",
    "State": {"Status": "exited", "Pid": 0},
    "Config": {"Labels": {"a": "b"}, "Env": ["A=1"]},
    "HostConfig": {"LogConfig": {"Type": "json-file", "Config": {}}},
    "NetworkSettings": {"Networks": {"bridge": {"IPAddress": "172.17.0.2"}}},
}


@pytest.mark.parametrize("fmt, expected", [
    ("{{.Name}}", "/web"),
    ("{{.Config.Labels.a}}|{{.Config.Labels.nope}}", "b|<no value>"),  # a map: no error
    ("{{.HostConfig.LogConfig.Config.max-size}}", "<no value>"),
    ("{{.Config.StopSignal}}|{{.SizeRw}}|{{.Config.ExposedPorts}}", "|<nil>|map[]"),
    ("{{.NetworkSettings.Networks.bridge.IPAddress}}", "172.17.0.2"),
])
def test_inspect_formats_that_docker_prints(fmt: str, expected: str) -> None:
    assert render(parse(fmt), CONTAINER) == expected


@pytest.mark.parametrize("fmt, message", [
    ("{{.Bogus}}", 'at <.Bogus>: map has no entry for key "Bogus"'),
    ("{{.State.Bogus}}", 'at <.State.Bogus>: map has no entry for key "Bogus"'),
    ("{{.NetworkSettings.Networks.bridge.Nope}}",
     'map has no entry for key "Nope"'),
])
def test_inspect_formats_that_docker_refuses(fmt: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        render(parse(fmt), CONTAINER)


def test_typed_view_marks_only_maps() -> None:
    view = typed_view(CONTAINER)
    assert isinstance(view["Config"]["Labels"], GoMap)
    assert isinstance(view["HostConfig"]["LogConfig"]["Config"], GoMap)
    assert not isinstance(view["Config"], GoMap)  # the container's Config is a struct
    assert isinstance(view["NetworkSettings"]["Networks"], GoMap)
    assert not isinstance(view["NetworkSettings"]["Networks"]["bridge"], GoMap)
