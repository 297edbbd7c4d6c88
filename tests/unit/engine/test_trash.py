"""Deferred removal: a discarded directory disappears at once and is deleted later."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from berth.engine.trash import Trash


def _tree(root: Path) -> Path:
    (root / "upper" / "etc").mkdir(parents=True)
    (root / "upper" / "etc" / "f").write_text("x")
    locked = root / "work" / "work"
    locked.mkdir(parents=True)
    locked.chmod(0)  # what the kernel leaves after an overlay mount
    return root


def test_discard_moves_out_of_sight_and_empty_removes(tmp_path: Path) -> None:
    trash = Trash(tmp_path / "trash")
    victim = _tree(tmp_path / "containers" / "abc")
    trash.discard(victim)
    assert not victim.exists()
    assert len(os.listdir(trash.path)) == 1
    trash.empty()
    assert os.listdir(trash.path) == []


def test_discard_of_a_missing_directory_is_a_no_op(tmp_path: Path) -> None:
    trash = Trash(tmp_path / "trash")
    trash.discard(tmp_path / "nope")
    assert os.listdir(trash.path) == []


def test_background_emptying_and_close_leave_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        trash = Trash(tmp_path / "trash")
        for i in range(5):
            trash.discard(_tree(tmp_path / f"c{i}"))
            trash.empty_soon()
        await trash.close()
        assert os.listdir(trash.path) == []

    asyncio.run(scenario())


def test_leftovers_of_an_earlier_run_can_be_emptied(tmp_path: Path) -> None:
    _tree(tmp_path / "trash" / "old.1234")
    trash = Trash(tmp_path / "trash")
    trash.empty()
    assert os.listdir(trash.path) == []
