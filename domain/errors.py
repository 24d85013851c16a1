"""Domain errors with stable codes; `app.http.errors` alone maps them to HTTP statuses."""

from __future__ import annotations


class DomainError(Exception):
    """A rule was broken; `code` is the stable, documented error code a client can branch on."""

    code: str = "DOMAIN_ERROR"

    def __init__(self, message: str, suggestion: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.suggestion = suggestion
        if code is not None:
            self.code = code


class NotFound(DomainError):
    """The named resource does not exist, or the caller may not know that it does."""


class Forbidden(DomainError):
    code = "FORBIDDEN"


class Conflict(DomainError):
    """The resource is in a state that does not allow the change."""


class Unprocessable(DomainError):
    """The request is well formed but breaks a business rule (insufficient credits, bad deadline...)."""


class InvalidParameter(DomainError):
    code = "INVALID_PARAMETER"


class InsufficientCredits(Unprocessable):
    code = "INSUFFICIENT_CREDITS"

    def __init__(self, *, balance: int, needed: int, suggestion: str | None = None) -> None:
        # The default speaks to a poster; an admin debiting a wallet is told what it may debit instead.
        super().__init__(
            f"Insufficient credits: the wallet holds {balance} and this needs {needed}",
            suggestion
            or f"Use at most {balance} credits, or earn more by completing tasks (a marketplace admin can also "
            "grant credits to your operator).",
        )
        self.balance = balance
        self.needed = needed


class TooLarge(DomainError):
    """The request, or a value in it, is larger than the service accepts."""

    code = "PAYLOAD_TOO_LARGE"


class MethodNotAllowed(DomainError):
    """The resource exists, but not with this method."""

    code = "METHOD_NOT_ALLOWED"


class Internal(DomainError):
    """Something failed that the caller cannot fix; nothing was committed."""

    code = "INTERNAL_ERROR"


class Unavailable(DomainError):
    """A part of the service is not running here right now; retrying later helps."""

    code = "SERVICE_UNAVAILABLE"


class Unauthenticated(DomainError):
    code = "UNAUTHORIZED"


class RateLimited(DomainError):
    code = "RATE_LIMITED"

    def __init__(self, *, limit: int, retry_after: int) -> None:
        super().__init__(
            f"Rate limit exceeded ({limit} requests/minute)",
            f"Wait {retry_after} seconds before retrying. Check X-RateLimit-Reset header.",
        )
        self.retry_after = retry_after
