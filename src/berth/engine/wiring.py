"""The one composition root: builds every engine service from a ``DaemonConfig``.

Nothing else constructs stores or services for the daemon; tests build smaller graphs the same
way, from the same constructors. On-disk layout under the data root (see ARCHITECTURE.md;
with ``--userns-remap`` all of it moves to ``<data-root>/<uid>.<gid>/``, as in dockerd)::

    engine-id           this daemon's ID (/info "ID"), created once
    berth.db            SQLite metadata (image refs here; containers etc. share the file)
    content/            blobs by digest
    layers/             unpacked layers by chain ID
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

from berth.content.store import LocalContentStore
from berth.engine.builder import BuildService
from berth.engine.config import ENGINE_VERSION, DaemonConfig
from berth.engine.container_archive import ArchiveService
from berth.engine.containers import ContainerService
from berth.engine.db import ContainerDB
from berth.engine.events import ContainerEvents, EventBus
from berth.engine.execs import ExecService
from berth.engine.mounts import MountManager, MountTable
from berth.engine.networks import NetworkService
from berth.engine.registries import Registries, build_registries
from berth.engine.shim import start_forkserver
from berth.engine.userns import RemappedRoot
from berth.engine.volumes import VolumeService
from berth.errors import Internal
from berth.image.store import ImageStore
from berth.snapshot.layers import LayerStore
from berth.volume.local import LocalDriver
from berth.volume.store import VolumeStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Engine:
    """The daemon's services; the API adapts these to HTTP."""

    config: DaemonConfig
    id: str
    images: ImageStore
    root: Path  # where the state is: the data root, or its <uid>.<gid>/ when remapped
    # Filled in as the services land (containers, volumes, networks): None = not wired yet.
    containers: ContainerService | None = None
    events: EventBus | None = None
    execs: ExecService | None = None
    registries: Registries | None = None
    networks: NetworkService | None = None
    builds: BuildService | None = None
    volumes: VolumeService | None = None
    archives: ArchiveService | None = None

    async def recover(self) -> None:
        """At start, before the API listens: reconcile the disk with the records, whatever way
        the previous daemon ended. Containers first (running ones re-adopted; what crashed
        builds, creates, starts and removals left is finished or undone), then build scratch
        space and volume directories without a record, last the blobs and layers no image
        needs (a container whose image was removed keeps that image's layers)."""
        keep: list[str] = []
        if self.containers is not None:
            await self.containers.restore()
            keep = [r.image_id for r in self.containers.all()]
        if self.builds is not None:
            await asyncio.to_thread(self.builds.recover)
        if self.volumes is not None:
            await asyncio.to_thread(self.volumes.recover)
        await asyncio.to_thread(self.images.sweep_unreferenced, keep)

    async def close(self) -> None:
        """Release what the services hold open; containers keep running under their shims."""
        if self.volumes is not None:
            self.volumes.close()  # unmounts volumes with driver options
        if self.execs is not None:
            await self.execs.close()
        if self.containers is not None:
            await self.containers.close()
        if self.networks is not None:
            await self.networks.close()
        self.images.close()


def build_engine(config: DaemonConfig, remap: RemappedRoot | None = None) -> Engine:
    """Create the data root's layout if needed and build every service over it.

    ``remap``: the resolved ``--userns-remap`` (``userns.setup_daemon_root`` has made its
    directory); layers, volumes and container files then belong to the remapped root."""
    root = config.data_root / remap.directory_name if remap is not None else config.data_root
    root.mkdir(parents=True, exist_ok=True)
    ids = remap.mapping if remap is not None else None
    owner = ids.root_pair() if ids is not None else (0, 0)
    content = LocalContentStore(root / "content")
    content.clean_ingest()
    layers = LayerStore(root / "layers", ids=ids)
    users: list[ContainerService] = []  # bound below: rmi must see the containers on an image
    images = ImageStore(content, layers, root / "berth.db", docker_version=ENGINE_VERSION,
                        image_users=lambda image_id: [
                            (r.id, r.is_running) for svc in users for r in svc.all()
                            if r.image_id == image_id])
    config.exec_root.mkdir(parents=True, exist_ok=True)
    events = EventBus()
    container_events = ContainerEvents(events)
    networks = NetworkService(
        root, config.exec_root,
        on_event=lambda action, net_id, attrs: events.publish("network", action, net_id, attrs))
    mount_table = MountTable(root / "berth.db")
    volumes = VolumeService(VolumeStore(root / "berth.db"),
                            LocalDriver(root / "volumes", owner=owner),
                            mount_table,
                            on_event=lambda action, name, attrs: events.publish(
                                "volume", action, name, attrs))
    mounts = MountManager(mount_table, volumes, owner=owner)
    containers = ContainerService(
        root, config.exec_root, ContainerDB(root / "berth.db"), images, layers,
        runtimes={name: resolve_runtime(entry.path) for name, entry in config.runtimes.items()},
        default_runtime=config.default_runtime, on_event=container_events,
        forkserver=start_forkserver(str(config.exec_root)),  # before asyncio and threads
        networks=networks, mounts=mounts, remap=remap)
    container_events.bind(containers.get)
    users.append(containers)
    execs = ExecService(containers, on_event=container_events)
    container_events.on_action(
        lambda action, cid: execs.forget_container(cid) if action == "destroy" else None)
    return Engine(config=config, id=load_engine_id(root), images=images, root=root,
                  containers=containers,
                  events=events, execs=execs,
                  registries=build_registries(config, images, content, layers), networks=networks,
                  builds=BuildService(images, containers, layers, root),
                  volumes=volumes, archives=ArchiveService(containers, mounts, images, layers,
                                                            on_event=container_events))


def resolve_runtime(path: str) -> str:
    """A runtime named without a path: beside this interpreter first (a venv install), then PATH."""
    if os.sep in path:
        return path
    beside = Path(sys.executable).parent / path
    if beside.exists():
        return str(beside)
    return shutil.which(path) or path


def load_engine_id(root: Path) -> str:
    """The daemon's stable ID, created on first start (written atomically)."""
    path = root / "engine-id"
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        text = ""
    except OSError as err:
        raise Internal(f"cannot read {path}: {err}") from err
    if text:
        return text
    new_id = str(uuid.uuid4())
    tmp = path.with_name(f".engine-id.{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(new_id + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    log.info("created engine ID %s", new_id)
    return new_id
