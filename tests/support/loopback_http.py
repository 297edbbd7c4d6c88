"""A threaded HTTP server on 127.0.0.1 (a free port) for the tests' stand-in servers."""

from __future__ import annotations

import http.server
import threading


class LoopbackHTTP:
    """Serves ``handler`` in a daemon thread from construction until ``stop``."""

    def __init__(self, handler: type[http.server.BaseHTTPRequestHandler]) -> None:
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = int(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
