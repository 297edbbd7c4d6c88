"""Golden files: each ``<case>/Dockerfile`` parses to exactly ``<case>/expected.json``.

A case may hold ``build-args.json`` (``--build-arg`` values) and ``default-args.json`` (automatic
platform args). ``expected.json`` is either the parsed file (stages with their typed
instructions, plus each stage's ``Config.Env`` after walking its ENV/ARG lines from an empty
base) or ``{"error": "<message>"}``. Regenerate after an intended change with
``BERTH_UPDATE_GOLDEN=1 pytest tests/golden/dockerfile`` and review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from berth.build.instructions import Dockerfile, StageScope, expand, parse_dockerfile, to_json
from berth.errors import DockerfileError

HERE = Path(__file__).parent
CASES = sorted(p.name for p in HERE.iterdir() if (p / "Dockerfile").is_file())


def _optional_json(path: Path) -> dict[str, str]:
    return json.loads(path.read_text()) if path.is_file() else {}


def render(df: Dockerfile) -> dict[str, Any]:
    stages = []
    for stage in df.stages:
        scope = StageScope.start()
        for instr in stage.instructions:
            scope = scope.apply(expand(instr, scope.substitution_env(), df.escape), df)
        stages.append(
            {
                "index": stage.index,
                "name": stage.name,
                "base_image": stage.base_image,
                "platform": stage.platform,
                "base_stage": stage.base_stage,
                "dependencies": list(stage.dependencies),
                "from": to_json(stage.from_instruction),
                "instructions": to_json(stage.instructions),
                "config_env": scope.config_env(),
            }
        )
    return {
        "directives": dict(df.directives),
        "escape": df.escape,
        "global_args": to_json(df.global_args),
        "meta_args": dict(df.meta_args),
        "stages": stages,
        "unused_build_args": list(df.unused_build_args),
        "warnings": list(df.warnings),
    }


def result_for(case: Path) -> dict[str, Any]:
    text = (case / "Dockerfile").read_text()
    try:
        df = parse_dockerfile(
            text,
            _optional_json(case / "build-args.json"),
            default_args=_optional_json(case / "default-args.json"),
        )
    except DockerfileError as err:
        return {"error": str(err)}
    return render(df)


@pytest.mark.parametrize("name", CASES)
def test_golden(name: str) -> None:
    case = HERE / name
    got = result_for(case)
    expected_path = case / "expected.json"
    if os.environ.get("BERTH_UPDATE_GOLDEN") == "1":
        expected_path.write_text(json.dumps(got, indent=2, ensure_ascii=False) + "\n")
    assert got == json.loads(expected_path.read_text())
