"""The one error of a query: what the server answers instead of a value."""

from __future__ import annotations


class QueryError(Exception):
    """A request this worker refuses: ``status`` is the HTTP status, ``retry_after`` set
    for a 503 (the task restores or moves: ask again)."""

    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
