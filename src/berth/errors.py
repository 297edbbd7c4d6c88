"""One exception hierarchy for berth, by class of failure.

Every layer raises the most specific class with a message a Docker user would recognise.
The API maps a class to an HTTP status in exactly one place (``berth.api.errors``); the CLI maps
it to an exit code. Foreign exceptions (OSError, sqlite3, HTTP) are translated where they enter
our code, with ``raise ... from err``.
"""

from __future__ import annotations


class BerthError(Exception):
    """Base of every error berth raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidArgument(BerthError):
    """The request or input is malformed (HTTP 400)."""


class NotFound(BerthError):
    """The named object does not exist (HTTP 404)."""


class AlreadyExists(BerthError):
    """An object with that name exists already (HTTP 409)."""


class Conflict(BerthError):
    """The object is in a state that forbids the operation (HTTP 409)."""


class NotModified(BerthError):
    """The operation was a no-op: start of a running container, stop of a stopped one (HTTP 304)."""


class FailedPrecondition(BerthError):
    """The system is not in a state where this can succeed (HTTP 500 in Docker's mapping)."""


class Unavailable(BerthError):
    """A service berth needs cannot be reached (HTTP 503)."""


class PermissionDenied(BerthError):
    """The caller may not do this (HTTP 403)."""


class Unauthorized(BerthError):
    """Credentials are missing or wrong (HTTP 401)."""


class NotImplementedByBerth(BerthError):
    """A Docker feature berth does not provide (HTTP 501)."""


class Internal(BerthError):
    """A bug or an unexpected failure (HTTP 500)."""


# Domain subclasses: callers may catch the precise failure, the API still maps by base class.


class InvalidReference(InvalidArgument):
    """An image reference that does not parse (``invalid reference format...``)."""


class ImageNotFound(NotFound):
    """``No such image: NAME``."""


class ContainerNotFound(NotFound):
    """``No such container: NAME``."""


class DigestMismatch(InvalidArgument):
    """Content whose digest or size is not what its descriptor says."""


class UnsafeArchive(InvalidArgument):
    """A tar layer that tries to write outside its root, or is otherwise hostile."""


class DockerfileError(InvalidArgument):
    """A Dockerfile that does not parse; the message names the file and line.

    ``phase`` says where it failed, which Docker's classic builder words differently:
    ``parse`` (the text: directives, continuations, JSON forms), ``instruction`` (one
    instruction's keyword, flags and arguments), or ``""`` (the stages as a whole).
    """

    def __init__(self, message: str, line: int | None = None, filename: str = "Dockerfile",
                 phase: str = "") -> None:
        text = f"{filename}:{line}: {message}" if line is not None else message
        super().__init__(text)
        self.line = line
        self.detail = message
        self.filename = filename
        self.phase = phase

    def during(self, phase: str) -> DockerfileError:
        """The same error, placed in ``phase`` (unless it already knows its phase)."""
        if self.phase:
            return self
        return DockerfileError(self.detail, self.line, self.filename, phase)


class RuntimeFailure(BerthError):
    """The OCI runtime could not create or start a container.

    ``exit_code`` follows Docker: 126 when the command cannot be invoked, 127 when it is not found,
    125 for any other failure of the engine itself.
    """

    def __init__(self, message: str, exit_code: int = 125) -> None:
        super().__init__(message)
        self.exit_code = exit_code
