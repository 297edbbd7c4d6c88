"""What every command receives: the streams, the daemon address and a lazily made client."""

from __future__ import annotations

from berth.cli import flags

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, BinaryIO, TextIO

    from berth.cli.client import Client
    from berth.cli.tls import TLSOptions


class StatusError(Exception):
    """End the command with ``code``; ``message`` (if any) goes to stderr first."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class Cli:
    def __init__(self, host: str, stdout: TextIO, stderr: TextIO, stdin: BinaryIO,
                 environ: Mapping[str, str], debug: bool = False, invoked: str = "",
                 tls: TLSOptions | None = None) -> None:
        self.host = host
        self.tls = tls
        self.stdout = stdout
        self.stderr = stderr
        self.stdin = stdin
        self.environ = environ
        self.debug = debug
        self.invoked = invoked
        self._client: Client | None = None

    @property
    def client(self) -> Client:
        if self._client is None:
            from berth.cli.client import Client

            self._client = Client(self.host, tls=self.tls)
        return self._client

    def parse(self, spec: flags.Command, argv: list[str]) -> tuple[dict[str, Any], list[str]]:
        return flags.parse(spec, argv, self.invoked or spec.name)

    def out(self, text: str = "") -> None:
        self.stdout.write(text + "\n")

    def err(self, text: str) -> None:
        self.stdout.flush()
        self.stderr.write(text + "\n")
        self.stderr.flush()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
