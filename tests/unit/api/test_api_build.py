"""The classic builder's wording of Dockerfile errors on ``POST /build`` (shared case 013)."""

from __future__ import annotations

import pytest

from berth.api.routes.build import classic_message
from berth.build.instructions import parse_dockerfile
from berth.errors import DockerfileError, NotFound


@pytest.mark.parametrize("text, message", [
    ("FROM busybox\nFOO bar\n", "dockerfile parse error line 2: unknown instruction: FOO"),
    ("FROM busybox\nCMD --help\n", "dockerfile parse error line 2: Unknown flag: help"),
    ("FROM\n", "dockerfile parse error line 1: FROM requires either one or three arguments"),
    ("FROM busybox\nONBUILD ONBUILD RUN x\n",
     "dockerfile parse error line 2: Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"),
    ("FROM busybox\nENV a\n", "failed to parse Dockerfile: ENV must have two arguments"),
    ("# escape=x\nFROM busybox\n",
     "failed to parse Dockerfile: invalid escape token 'x' does not match ` or \\"),
    ("FROM busybox\nCMD [\"a\", 1]\n", "failed to parse Dockerfile: when using JSON array syntax, "
     "arrays must be comprised of strings only"),
    ("\n", "failed to parse Dockerfile: file with no instructions"),
    ("RUN x\nFROM busybox\n", "no build stage in current context"),
])
def test_dockerfile_errors_in_the_classic_builders_words(text: str, message: str) -> None:
    with pytest.raises(DockerfileError) as err:
        parse_dockerfile(text)
    assert classic_message(err.value) == message
    if err.value.line is not None:  # berth's own form stays for other callers
        assert str(err.value) == f"Dockerfile:{err.value.line}: {err.value.detail}"


def test_other_errors_keep_their_message() -> None:
    assert classic_message(NotFound("pull access denied")) == "pull access denied"
