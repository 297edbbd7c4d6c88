"""What berthd cleans up at start after a crash (kill -9 at any point of create/start/rm/build).

``ContainerService.restore`` re-adopts running containers; this module settles the rest:

- a build's RUN-step container goes, running or not: the build it served died with the daemon;
- a container that is not running must hold no rootfs mount, no network sandbox and no shim
  directory (a start that died half-way leaves all three);
- a record whose directory is gone was being removed: the removal is finished;
- a container directory, mount-table row or network attachment without a record was being
  created: it goes (the create never answered, so the container never existed);
- a network namespace pin that no running container uses is an orphan (berthd died between
  pinning it and recording it).

Found by tests/integration/robustness/test_crash_consistency.py.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import Any

from berth.engine.model import ContainerRecord
from berth.engine.trash import Trash

log = logging.getLogger(__name__)


async def settle(service: Any, records: list[ContainerRecord], exec_root: Path) -> None:
    """Tear down what stopped containers still hold, then drop orphaned netns pins."""
    running = [r for r in records if r.is_running]
    for record in records:
        if record.is_running:
            continue
        try:
            # a shim still alive for a container the database does not call running: the
            # start did not finish, so the container goes (all or nothing), as containerd
            # does with such tasks
            await _kill_shim(record, service.container_dir(record.id), exec_root,
                             "left half-started by a crash")
            await service._teardown(record, service.container_dir(record.id))
        except Exception as err:  # noqa: BLE001 - one broken container must not stop the rest
            log.warning("cleaning up container %s failed: %s", record.id[:12], err)
    await asyncio.to_thread(sweep_netns_pins, exec_root / "netns",
                            {r.id[:24] for r in running})


async def drop_build_steps(service: Any, records: list[ContainerRecord], exec_root: Path
                           ) -> None:
    """Kill and remove every build-step container, as its build would have at the step's end.

    Done before running containers are re-adopted, so no exit monitor is watching them."""
    for record in records:
        if not record.build_step:
            continue
        log.info("removing container %s of a build interrupted by a crash", record.id[:12])
        cdir = service.container_dir(record.id)
        try:
            await _kill_shim(record, cdir, exec_root, "of an interrupted build")
            await service._teardown(record, cdir)
            await service._remove_now(record.id, volumes=True)
        except Exception as err:  # noqa: BLE001 - one broken container must not stop the rest
            log.warning("removing build container %s failed: %s", record.id[:12], err)


async def finish_removals(service: Any, records: list[ContainerRecord]) -> None:
    """A record without its directory: berthd died after moving the directory to the trash
    and before deleting the record. Finish the removal; anonymous volumes go only with
    ``--rm`` containers, since whether ``rm -v`` was asked for is not known."""
    for record in records:
        if record.is_running or service.container_dir(record.id).is_dir():
            continue
        log.info("finishing the removal of container %s", record.id[:12])
        try:
            await service._remove_now(record.id, volumes=record.host_config.auto_remove)
        except Exception as err:  # noqa: BLE001 - one broken container must not stop the rest
            log.warning("removing container %s failed: %s", record.id[:12], err)


def sweep_unrecorded_dirs(containers_root: Path, known: set[str], exec_root: Path,
                          trash: Trash) -> None:
    """Container directories no record names: a create that died before it recorded the
    container. Unmounted first, then moved to the trash."""
    from berth.engine import launch

    for cdir in containers_root.iterdir():
        if cdir.name in known or not cdir.is_dir():
            continue
        log.info("removing directory %s of a container that was never recorded", cdir)
        try:
            launch.remove_container_files(cdir, exec_root, trash)
        except Exception as err:  # noqa: BLE001 - one broken directory must not stop the rest
            log.warning("cannot remove %s: %s", cdir, err)


async def _kill_shim(record: ContainerRecord, cdir: Path, exec_root: Path, why: str) -> None:
    from berth.engine import launch

    shim = await launch.reconnect(record, cdir, exec_root)
    if shim is None:
        return
    log.warning("killing container %s %s", record.id[:12], why)
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
