"""Concurrent stages' output comes out in file order, whatever order they write in."""

from __future__ import annotations

import asyncio

from berth.build.stage_output import StageOutputs


class SlowSink:
    def __init__(self) -> None:
        self.lines: list[str] = []

    async def stream(self, text: str) -> None:
        await asyncio.sleep(0.001)  # every write yields, as a real socket write may
        self.lines.append(text)

    async def aux_id(self, image_id: str) -> None:
        pass


async def _stage(outputs: StageOutputs, position: int, delays: list[float]) -> None:
    for n, delay in enumerate(delays):
        await asyncio.sleep(delay)
        await outputs[position].stream(f"{position}.{n}")
    await outputs.finished(position)


def test_later_stages_are_held_back_until_earlier_ones_finish() -> None:
    async def main() -> list[str]:
        sink = SlowSink()
        outputs = StageOutputs(sink, 3)
        await asyncio.gather(
            _stage(outputs, 0, [0.02, 0.02, 0.02]),
            _stage(outputs, 1, [0, 0, 0, 0]),  # done long before stage 0
            _stage(outputs, 2, [0.001, 0.05]),  # still writing when its turn comes
        )
        return sink.lines

    assert asyncio.run(main()) == ["0.0", "0.1", "0.2", "1.0", "1.1", "1.2", "1.3",
                                   "2.0", "2.1"]


def test_a_stopped_build_shows_what_stages_up_to_the_failing_one_wrote() -> None:
    async def main() -> list[str]:
        sink = SlowSink()
        outputs = StageOutputs(sink, 3)
        await outputs[0].stream("0.0")
        await outputs[1].stream("1.0")
        await outputs[2].stream("2.0")
        await outputs.flush_until(1)
        return sink.lines

    assert asyncio.run(main()) == ["0.0", "1.0"]
