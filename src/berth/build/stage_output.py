"""One ordered build transcript from stages that run at the same time.

The classic builder's API is a single ``Step N/M`` stream that the docker CLI prints as it
arrives. Independent stages run concurrently, so each writes to its own ``StageOutput``: the
earliest unfinished stage (in file order) writes through, later ones are held back and
flushed when every stage before them has finished. The transcript therefore reads exactly
as if the stages had run one after the other.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

__all__ = ["StageOutputs", "StageOutput"]


class _Sink(Protocol):
    async def stream(self, text: str) -> None: ...
    async def aux_id(self, image_id: str) -> None: ...


class StageOutput:
    """The progress one stage writes to; passes through once its turn has come."""

    def __init__(self, sink: _Sink) -> None:
        self._sink = sink
        self._held: list[str] = []
        self.live = False

    async def stream(self, text: str) -> None:
        if self.live:
            await self._sink.stream(text)
        else:
            self._held.append(text)

    async def aux_id(self, image_id: str) -> None:
        await self._sink.aux_id(image_id)

    async def go_live(self) -> None:
        """Write out what was held back, then pass writes through."""
        while self._held:  # the stage may add more while an earlier chunk is written
            await self._sink.stream(self._held.pop(0))
        self.live = True


class StageOutputs:
    """The outputs of the stages of one build, in file order."""

    def __init__(self, sink: _Sink, count: int) -> None:
        self._outputs = [StageOutput(sink) for _ in range(count)]
        self._finished = [False] * count
        self._turn = 0
        self._outputs[0].live = True
        self._handover = asyncio.Lock()  # one handover at a time keeps the order

    def __getitem__(self, position: int) -> StageOutput:
        return self._outputs[position]

    async def finished(self, position: int) -> None:
        """Stage ``position`` is done: hand the stream to the next unfinished stage."""
        self._finished[position] = True
        async with self._handover:
            while self._turn < len(self._outputs) and self._finished[self._turn]:
                self._turn += 1
                if self._turn < len(self._outputs):
                    await self._outputs[self._turn].go_live()

    async def flush_until(self, position: int) -> None:
        """A build that stops at stage ``position``: show what stages up to it wrote."""
        async with self._handover:
            for output in self._outputs[: position + 1]:
                await output.go_live()
