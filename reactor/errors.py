"""The project's exceptions; database errors are mapped here, once."""

from __future__ import annotations

import psycopg


class PsHealthError(Exception):
    """Base class: every error ps-health raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, sqlstate: str | None = None):
        super().__init__(message)
        self.sqlstate = sqlstate


class BadInput(PsHealthError):
    """Refused input: a value out of range, an unknown project or check, a refused transition."""

    exit_code = 2


class DatabaseUnavailable(PsHealthError):
    """The database cannot be reached or went away."""


class MigrationError(PsHealthError):
    """The migration history and the files disagree, or a migration failed."""


# SQLSTATE classes that mean "the caller sent something the database refused".
_BAD_INPUT_CLASSES = ("22", "23", "P0002", "55000", "42501")


def from_psycopg(exc: psycopg.Error) -> PsHealthError:
    """Map a psycopg error to the project's exception with the server's message and SQLSTATE."""
    state = getattr(exc, "sqlstate", None)
    diag = getattr(exc, "diag", None)
    message = (diag.message_primary if diag and diag.message_primary else str(exc)).strip()
    if isinstance(exc, psycopg.OperationalError) and state is None:
        return DatabaseUnavailable(f"database unavailable: {message}")
    if state and (state.startswith(_BAD_INPUT_CLASSES) or state in _BAD_INPUT_CLASSES):
        return BadInput(message, state)
    if state and state.startswith("08"):
        return DatabaseUnavailable(f"database unavailable: {message}", state)
    return PsHealthError(message, state)
