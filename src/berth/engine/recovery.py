"""What berthd cleans up at start after a crash (kill -9 at any point of create/start/rm).

``ContainerService.restore`` re-adopts running containers; this module settles the rest: a
container that is not running must hold no rootfs mount, no network sandbox and no shim
directory (a start that died half-way leaves all three), and a network namespace pin that no
running container uses is an orphan (berthd died between pinning it and recording it).
Found by tests/integration/robustness/test_crash_consistency.py.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import Any

from berth.engine.model import ContainerRecord

log = logging.getLogger(__name__)


async def settle(service: Any, records: list[ContainerRecord], exec_root: Path) -> None:
    """Tear down what stopped containers still hold, then drop orphaned netns pins."""
    running = [r for r in records if r.is_running]
    for record in records:
        if record.is_running:
            continue
        try:
            await _kill_half_started(record, service.container_dir(record.id), exec_root)
            await service._teardown(record, service.container_dir(record.id))
        except Exception as err:  # noqa: BLE001 - one broken container must not stop the rest
            log.warning("cleaning up container %s failed: %s", record.id[:12], err)
    await asyncio.to_thread(sweep_netns_pins, exec_root / "netns",
                            {r.id[:24] for r in running})


async def _kill_half_started(record: ContainerRecord, cdir: Path, exec_root: Path) -> None:
    """A shim still alive for a container the database does not call running: the start did
    not finish, so the container goes (all or nothing), as containerd does with such tasks."""
    from berth.engine import launch

    shim = await launch.reconnect(record, cdir, exec_root)
    if shim is None:
        return
    log.warning("killing container %s left half-started by a crash", record.id[:12])
    try:
        await shim.kill(signal.SIGKILL)
        await asyncio.wait_for(shim.wait(), 10)
    except Exception as err:  # noqa: BLE001 - the process may be gone already
        log.debug("killing %s: %s", record.id[:12], err)
    finally:
        await shim.close()


def sweep_netns_pins(netns_dir: Path, keep: set[str]) -> None:
    from berth.network import netns  # pyroute2-free, but only needed when pins exist

    if not netns_dir.is_dir():
        return
    for pin in netns_dir.iterdir():
        # <id>, and <id>.user beside it for a container in a user namespace
        if pin.name.removesuffix(".user") in keep:
            continue
        log.info("removing orphaned network namespace pin %s", pin)
        try:
            netns.delete_netns(pin)
        except OSError as err:
            log.warning("cannot remove %s: %s", pin, err)
