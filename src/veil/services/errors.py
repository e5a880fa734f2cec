"""Errors a use case raises; the API maps them to Custom Vision's `{"code", "message"}` bodies."""

from __future__ import annotations


class ServiceError(Exception):
    """Base: `code` is Custom Vision's error code where one fits, `message` says what to do."""

    code = "BadRequest"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code


class NotFound(ServiceError):
    code = "NotFound"


class InvalidInput(ServiceError):
    code = "BadRequest"


class Conflict(ServiceError):
    code = "Conflict"


class Unavailable(ServiceError):
    """A project whose data key was destroyed (being deleted) or a key that is not available."""

    code = "ServiceUnavailable"
