"""The project's exceptions; database errors are mapped here, once."""

from __future__ import annotations

import psycopg


class PsHealthError(Exception):
    """Base class: every error ps-health raises on purpose; `hint` says what to do about it."""

    exit_code = 1

    def __init__(self, message: str, sqlstate: str | None = None, hint: str | None = None):
        super().__init__(message)
        self.sqlstate = sqlstate
        self.hint = hint


class BadInput(PsHealthError):
    """Refused input: a value out of range, an unknown project or check, a refused transition."""

    exit_code = 2


class DatabaseUnavailable(PsHealthError):
    """The database cannot be reached or went away."""


class MigrationError(PsHealthError):
    """The migration history and the files disagree, or a migration failed."""


class AlreadyRunning(PsHealthError):
    """Another reactor serves this host (it holds the host's lock)."""


class Busy(PsHealthError):
    """A lock the call needs stayed held by another transaction past the connection's lock_timeout
    (55P03): nothing was written; try again later."""


# SQLSTATE classes that mean the session is gone: connection exception, operator intervention (the
# server shutting down or terminating the backend).
_OUTAGE_CLASSES = ("08", "57P")
# SQLSTATE classes that mean "the caller sent something the database refused" (54: a value past a limit
# of the server's own, such as an index row too large; 42804/42846: a value of the wrong type, as a JSON
# true where a number goes).
_BAD_INPUT_CLASSES = ("22", "23", "54", "P0002", "55000", "42501", "42804", "42846")
# A missing schema, table or function of ours: the database was never migrated, or by an older ps-health.
_NOT_MIGRATED = ("3F000", "42P01", "42883")
MIGRATE_HINT = ("this database has no ps-health schema, or an older one: run `ps-health migrate` "
                "(with the same PS_HEALTH_DSN)")


def from_psycopg(exc: psycopg.Error) -> PsHealthError:
    """Map a psycopg error to the project's exception with the server's message, hint and SQLSTATE."""
    state = getattr(exc, "sqlstate", None)
    diag = getattr(exc, "diag", None)
    message = (diag.message_primary if diag and diag.message_primary else str(exc)).strip()
    hint = diag.message_hint if diag and diag.message_hint else None
    if isinstance(exc, psycopg.OperationalError) and state is None:
        return DatabaseUnavailable(f"database unavailable: {message}")
    if state in _NOT_MIGRATED and "ps_health" in message:
        return PsHealthError(message, state, hint or MIGRATE_HINT)
    if state == "55P03":
        return Busy(message, state, hint)
    if state and (state.startswith(_BAD_INPUT_CLASSES) or state in _BAD_INPUT_CLASSES):
        return BadInput(message, state, hint)
    if state and state.startswith(_OUTAGE_CLASSES):
        return DatabaseUnavailable(f"database unavailable: {message}", state, hint)
    return PsHealthError(message, state, hint)


def is_outage(exc: BaseException, conn=None) -> bool:
    """Whether an error means the database is out of reach (retry later), not that a call was refused."""
    if isinstance(exc, DatabaseUnavailable):
        return True
    state = getattr(exc, "sqlstate", None)
    if state and state.startswith(_OUTAGE_CLASSES):
        return True
    return conn is not None and (conn.closed or conn.broken)
