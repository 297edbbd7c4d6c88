"""berth's error classes → HTTP status, in exactly one function (as moby's httpstatus)."""

from __future__ import annotations

from berth import errors

# Most specific first: AlreadyExists and Conflict share 409 but are separate classes.
_STATUS_BY_CLASS: tuple[tuple[type[errors.BerthError], int], ...] = (
    (errors.InvalidArgument, 400),
    (errors.Unauthorized, 401),
    (errors.PermissionDenied, 403),
    (errors.NotFound, 404),
    (errors.AlreadyExists, 409),
    (errors.Conflict, 409),
    (errors.NotModified, 304),
    (errors.NotImplementedByBerth, 501),
    (errors.Unavailable, 503),
    (errors.FailedPrecondition, 500),
    (errors.Internal, 500),
)


def status_for(exc: BaseException) -> int:
    """The HTTP status Docker answers for a failure of this class; 500 for anything unknown."""
    for cls, status in _STATUS_BY_CLASS:
        if isinstance(exc, cls):
            return status
    return 500
