"""Restart policies (``--restart no|always|on-failure[:N]|unless-stopped``), Docker's way.

After an exit the container is started again when its policy says so: ``always`` and
``unless-stopped`` after any exit, ``on-failure`` after a non-zero one while the retry budget
lasts; never after ``docker stop``/``kill`` (a manual stop). Between exit and restart the
container shows ``restarting``. The delay doubles from 100 ms up to one minute and falls back to
100 ms once a run lasted 10 s or more (Docker's restart manager).

When berthd starts, ``always`` containers start again (even after a manual stop), as do
``unless-stopped`` ones that were not stopped by hand and ``on-failure`` ones whose last exit
was a failure with retries left. The manual-stop mark lives in the container's directory, so it
survives a daemon restart without a column in the database.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from berth.engine.logs import parse_timestamp
from berth.engine.model import ContainerRecord, ContainerState, RestartPolicy

log = logging.getLogger(__name__)

INITIAL_DELAY = 0.1
MAX_DELAY = 60.0
RESET_AFTER = 10.0  # seconds of run time that reset the back-off
_MARK = "manually-stopped"


@dataclass(frozen=True)
class Decision:
    restart: bool
    delay: float  # the back-off to wait first (kept even when not restarting)


def decide(policy: RestartPolicy, exit_code: int, manually_stopped: bool, restart_count: int,
           previous_delay: float, ran_for: float) -> Decision:
    """Docker's ShouldRestart as a pure function."""
    delay = 0.0 if ran_for >= RESET_AFTER else previous_delay
    delay = INITIAL_DELAY if delay == 0 else min(delay * 2, MAX_DELAY)
    if manually_stopped:
        return Decision(False, delay)
    name = policy.name or "no"
    if name in ("always", "unless-stopped"):
        return Decision(True, delay)
    if name == "on-failure":
        budget = policy.maximum_retry_count
        return Decision(exit_code != 0 and (budget <= 0 or restart_count < budget), delay)
    return Decision(False, delay)


def restart_on_boot(record: ContainerRecord, manually_stopped: bool) -> bool:
    """Whether berthd starts this (not running) container when it starts itself."""
    name = record.host_config.restart_policy.name
    if name == "always":
        return record.has_been_started
    if name == "unless-stopped":
        return record.has_been_started and not manually_stopped
    if name == "on-failure":
        budget = record.host_config.restart_policy.maximum_retry_count
        return (record.has_been_started and record.status.exit_code != 0
                and not manually_stopped and (budget <= 0 or record.restart_count < budget))
    return False


def _seconds_between(start: str, end: str) -> float:
    try:
        return max(0.0, parse_timestamp(end) - parse_timestamp(start))
    except ValueError:
        return 0.0


class _Superseded(Exception):
    """An automatic restart that a manual stop overtook."""


class RestartManager:
    """Per-daemon bookkeeping: back-off per container and the pending restart tasks.

    ``start`` restarts a container (the service's own start, with restart_count bumped by
    ``bump``); ``set_restarting`` shows the ``restarting`` state during the back-off.
    """

    def __init__(self, container_dir: Callable[[str], Path],
                 start: Callable[[str], Awaitable[None]],
                 bump: Callable[[str], None],
                 set_restarting: Callable[[str, bool], None],
                 reset_count: Callable[[str], None]) -> None:
        self._dir = container_dir
        self._reset_count = reset_count
        self._auto: set[str] = set()  # containers this manager is starting right now
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._start = start
        self._bump = bump
        self._set_restarting = set_restarting
        self._delays: dict[str, float] = {}
        self._pending: dict[str, asyncio.Task[None]] = {}

    # -- manual stops ----------------------------------------------------------------------

    def manually_stopped(self, container_id: str) -> bool:
        return (self._dir(container_id) / _MARK).exists()

    def mark_manual_stop(self, container_id: str) -> None:
        """``stop``/``kill`` by a user: no restart now, none at boot for unless-stopped."""
        if container_id in self._pending:
            self.cancel(container_id)
            self._set_restarting(container_id, False)
        try:
            (self._dir(container_id) / _MARK).touch()
        except FileNotFoundError:
            pass

    async def before_stop(self, container_id: str) -> None:
        """``stop``: mark it, drop a pending restart, let one already starting finish (Docker
        counts a restarting container as running, so the stop then stops it)."""
        self.mark_manual_stop(container_id)
        task = self._inflight.get(container_id)
        if task is not None and task is not asyncio.current_task():
            await asyncio.shield(task)

    def on_start(self, container_id: str) -> None:
        """Any start clears the manual-stop mark; one by hand also resets the restart count
        and the back-off, and cancels a pending restart (Docker's ResetRestartManager)."""
        if container_id in self._auto and self.manually_stopped(container_id):
            # stopped by hand while this restart was on its way: the stop wins
            raise _Superseded(container_id)
        (self._dir(container_id) / _MARK).unlink(missing_ok=True)
        if container_id not in self._auto:
            self.cancel(container_id)
            self._delays.pop(container_id, None)
            self._reset_count(container_id)

    # -- exits -----------------------------------------------------------------------------

    def on_exit(self, record: ContainerRecord) -> bool:
        """Called once the exit is recorded; schedules a restart when the policy wants one."""
        if record.host_config.auto_remove:
            return False
        decision = decide(
            record.host_config.restart_policy, record.status.exit_code,
            self.manually_stopped(record.id), record.restart_count,
            self._delays.get(record.id, 0.0),
            _seconds_between(record.status.started_at, record.status.finished_at))
        self._delays[record.id] = decision.delay
        if not decision.restart:
            return False
        self.cancel(record.id)
        self._set_restarting(record.id, True)
        self._pending[record.id] = asyncio.get_running_loop().create_task(
            self._restart_later(record.id, decision.delay))
        return True

    async def _restart_later(self, container_id: str, delay: float) -> None:
        try:
            await asyncio.sleep(delay)
            task = self._pending.pop(container_id, None)
            if task is not None:
                self._inflight[container_id] = task
            self._bump(container_id)
            self._auto.add(container_id)
            try:
                await self._start(container_id)
            finally:
                self._auto.discard(container_id)
                self._inflight.pop(container_id, None)
        except asyncio.CancelledError:
            raise
        except _Superseded:
            self._set_restarting(container_id, False)
        except Exception as err:  # noqa: BLE001 - a failed restart is logged, as in Docker
            log.warning("restart of container %s failed: %s", container_id[:12], err)
            try:
                self._set_restarting(container_id, False)
            except Exception:  # noqa: BLE001 - the container may be gone
                pass

    def cancel(self, container_id: str) -> None:
        task = self._pending.pop(container_id, None)
        if task is not None:
            task.cancel()

    def forget(self, container_id: str) -> None:
        self.cancel(container_id)
        self._delays.pop(container_id, None)

    def pending(self, container_id: str) -> bool:
        return container_id in self._pending

    async def close(self) -> None:
        tasks = list(self._pending.values())
        self._pending.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - shutting down
                pass


def for_service(service: Any) -> RestartManager:
    """The manager wired to a ContainerService (kept here so the service needs one line)."""

    def bump(container_id: str) -> None:
        rec = service.get(container_id)
        service._save(replace(rec, restart_count=rec.restart_count + 1))

    def set_restarting(container_id: str, on: bool) -> None:
        rec = service._db.get(container_id)
        if rec is None or rec.is_running:
            return
        state = ContainerState.RESTARTING if on else ContainerState.EXITED
        service._save(replace(rec, status=replace(rec.status, state=state)))

    def reset_count(container_id: str) -> None:
        rec = service._db.get(container_id)
        if rec is not None and rec.restart_count:
            service._save(replace(rec, restart_count=0))

    return RestartManager(service.container_dir, service.start, bump, set_restarting,
                          reset_count)


async def start_on_boot(manager: RestartManager, records: list[ContainerRecord],
                        start: Callable[[str], Awaitable[None]]) -> None:
    """berthd's start: bring back what the policies ask for (failures are only logged)."""
    for record in records:
        if record.is_running or not restart_on_boot(record, manager.manually_stopped(record.id)):
            continue
        try:
            await start(record.id)
        except Exception as err:  # noqa: BLE001 - one broken container must not stop the rest
            log.warning("restarting container %s on boot failed: %s", record.id[:12], err)
