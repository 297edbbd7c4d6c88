"""Dockerfile-style change lines applied to an image config (docker import/commit -c)."""

from __future__ import annotations

import pytest

from berth.errors import InvalidArgument
from berth.image._changes import apply_changes
from berth.oci.image import Healthcheck, ImageConfig


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (["CMD echo hi"], ImageConfig(cmd=("/bin/sh", "-c", "echo hi"))),
        (['cmd ["a", "b"]'], ImageConfig(cmd=("a", "b"))),
        (["CMD []"], ImageConfig(cmd=())),
        (["ENV A=1", "ENV A=2 B=3"], ImageConfig(env=("A=2", "B=3"))),
        (["ENV X hello world"], ImageConfig(env=("X=hello world",))),
        (["EXPOSE 80/UDP 443"], ImageConfig(exposed_ports=("443/tcp", "80/udp"))),
        (["VOLUME /a /b"], ImageConfig(volumes=("/a", "/b"))),
        (["WORKDIR /a", "WORKDIR ../b"], ImageConfig(working_dir="/b")),
        (["USER 1000:1000"], ImageConfig(user="1000:1000")),
        (["ONBUILD RUN make"], ImageConfig(on_build=("RUN make",))),
        (["HEALTHCHECK NONE"], ImageConfig(healthcheck=Healthcheck(("NONE",)))),
        (['HEALTHCHECK CMD ["true"]'], ImageConfig(healthcheck=Healthcheck(("CMD", "true")))),
        (["", "# comment"], ImageConfig()),
    ],
)
def test_changes(lines: list[str], expected: ImageConfig) -> None:
    assert apply_changes(ImageConfig(), lines) == expected


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("RUN make", "run is not a valid change command"),
        ("COPY a b", "copy is not a valid change command"),
        ("EXPOSE http", "Invalid containerPort: http"),  # dockerd 20.10
        ("LABEL novalue", "LABEL names can not be blank"),
        ("ENV A='unterminated", "invalid change"),
        ("HEALTHCHECK --interval=1s CMD true", "Unknown type"),
    ],
)
def test_bad_changes(line: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        apply_changes(ImageConfig(), [line])
