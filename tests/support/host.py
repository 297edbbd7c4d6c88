"""Host preparation the suite needs, done the way a systemd hybrid boot would do it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def move_cgroup2_controllers_to_v1() -> None:
    """crun refuses a hybrid host whose cgroup2 mount still holds controllers (hugetlb here):
    mount each such controller as its own v1 hierarchy, which moves it off cgroup2. Idempotent;
    nothing to do on a pure v1 or a pure v2 host."""
    controllers = Path("/sys/fs/cgroup/unified/cgroup.controllers")
    if not controllers.exists():
        return
    for name in controllers.read_text().split():
        target = Path("/sys/fs/cgroup") / name
        target.mkdir(exist_ok=True)
        if not os.path.ismount(target):
            subprocess.run(["mount", "-t", "cgroup", "-o", name, "cgroup", str(target)],
                           check=True)
