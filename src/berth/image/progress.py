"""Docker's JSON progress messages, as dockerd's progress formatter writes them."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

_BAR_WIDTH = 50


def short_id(digest: str) -> str:
    """The 12 hex digits Docker shows for a layer."""
    return digest.split(":", 1)[-1][:12]


def human_size(size: float) -> str:
    """go-units HumanSize: decimal units, four significant digits (``19.97kB``, ``1.984MB``)."""
    units = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
    i = 0
    while size >= 1000 and i < len(units) - 1:
        size /= 1000
        i += 1
    return f"{size:.4g}{units[i]}"


def progress_bar(current: int, total: int) -> str:
    """``[==>      ]  1.2MB/3.4MB`` (a bar only when the total is known)."""
    if total <= 0:
        return f"{human_size(current):>8}"
    filled = min(int(current / total * 100) // 2, _BAR_WIDTH)
    bar = f"[{'=' * filled}>{' ' * (_BAR_WIDTH - filled)}] "
    numbers = f"{human_size(current):>8}"
    if current <= total:
        numbers += f"/{human_size(total)}"
    return bar + numbers


class ProgressSink:
    """Serialises messages from worker threads to one progress callback."""

    def __init__(self, send: Callable[[Mapping[str, Any]], None]) -> None:
        self._send = send
        self._lock = threading.Lock()

    def send(self, message: Mapping[str, Any]) -> None:
        with self._lock:
            self._send(message)
