"""The registry side of the engine: one distribution client, the puller and the pusher over it.

Built once by ``wiring.build_engine`` from the daemon's configuration. ``BERTH_CERTS_DIR``
(environment) moves the per-registry certificate folder from ``/etc/berth/certs.d``, so tests
can use a CA of their own.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from berth.content.store import LocalContentStore
from berth.engine.config import DaemonConfig
from berth.image.pull import RegistryPuller
from berth.image.push import RegistryPusher
from berth.image.store import ImageStore
from berth.registry.client import DEFAULT_CERTS_DIR, RegistryClient, RegistryConfig
from berth.snapshot.layers import LayerStore


@dataclass(frozen=True)
class Registries:
    client: RegistryClient
    puller: RegistryPuller
    pusher: RegistryPusher


def build_registries(config: DaemonConfig, images: ImageStore, content: LocalContentStore,
                     layers: LayerStore, environ: Mapping[str, str] = os.environ) -> Registries:
    certs = environ.get("BERTH_CERTS_DIR")
    client = RegistryClient(RegistryConfig(
        insecure_registries=config.insecure_registries,
        mirrors=config.registry_mirrors,
        certs_dir=Path(certs) if certs else DEFAULT_CERTS_DIR,
    ))
    return Registries(client, RegistryPuller(images, content, layers, client),
                      RegistryPusher(images, content, client))
