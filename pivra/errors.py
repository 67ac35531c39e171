"""One error type for every refused operation; the API maps it to ``{code, detail}`` JSON."""

from __future__ import annotations


class DomainError(Exception):
    """A refused operation with a stable machine code, a readable detail and an HTTP status."""

    status: int = 400

    def __init__(self, code: str, detail: str, *, status: int | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        if status is not None:
            self.status = status

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "detail": self.detail}


class NotFound(DomainError):
    status = 404


class Conflict(DomainError):
    status = 409


class Forbidden(DomainError):
    status = 403
