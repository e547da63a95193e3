"""A database connection shared by threads: opened on first use, dropped on an outage."""

from __future__ import annotations

import os
import socket
import threading

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from reactor import db
from reactor.db.queries import query
from reactor.errors import AlreadyRunning, BadInput, Busy, DatabaseUnavailable, PsHealthError, is_outage

TOPIC = "reactor"
CHANNEL = "ps_health"
# TCP keepalives notice a silently dropped network path (ignored on Unix sockets).
_KEEPALIVE = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}
# The reactor waits at most this long for a lock another transaction holds (then Busy): a transaction
# an agent's login leaves open must not stop the reactor's probes, sweeps or outcomes for other projects.
LOCK_TIMEOUT = "2s"


def conninfo(dsn: str) -> str:
    """The DSN with keepalives added (the DSN's own values win)."""
    given = psycopg.conninfo.conninfo_to_dict(dsn)
    return make_conninfo(dsn, **{k: v for k, v in _KEEPALIVE.items() if k not in given})


def open_connection(dsn: str, name: str) -> psycopg.Connection:
    """An autocommit connection; any failure to connect is DatabaseUnavailable."""
    try:
        return db.connect(conninfo(dsn), autocommit=True, application_name=name, lock_timeout=LOCK_TIMEOUT)
    except PsHealthError as exc:
        raise DatabaseUnavailable(str(exc), exc.sqlstate) from exc


class Link:
    """One autocommit connection behind a lock; reconnects on the next call after an outage."""

    def __init__(self, dsn: str, name: str):
        self._dsn = dsn
        self._name = name
        self._lock = threading.Lock()
        self._conn: psycopg.Connection | None = None

    def call(self, name: str, params: dict | None = None) -> list[dict]:
        """Run a named reactor query; DatabaseUnavailable when the database is out of reach."""
        with self._lock:
            # A connection kept from before an outage (or one the server ended) fails its first
            # call although the database is back: try once more on a fresh one before calling it
            # an outage, so a reconnect is never delayed by a whole backoff step.
            stale = self._conn is not None
            while True:
                conn = self._open()
                try:
                    return db.fetch(conn, TOPIC, name, params)
                except PsHealthError as exc:
                    if not is_outage(exc, conn):
                        raise
                    self._drop()
                    if not stale:
                        raise DatabaseUnavailable(str(exc), exc.sqlstate) from exc
                    stale = False

    def close(self, wait: float = -1) -> None:
        """Close the connection; given wait, not if a call still holds it after that many seconds (its server does
        not answer: the process's exit closes the socket)."""
        if not self._lock.acquire(timeout=wait):
            return
        try:
            self._drop()
        finally:
            self._lock.release()

    def _open(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = open_connection(self._dsn, self._name)
        return self._conn

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # closing a broken socket may fail; it is gone either way
                pass
            self._conn = None


class Listener:
    """The dedicated LISTEN connection (autocommit), holding the host's lock; its failures are
    DatabaseUnavailable, except AlreadyRunning when another reactor serves the host."""

    def __init__(self, dsn: str, name: str, host: str, worker: str):
        self._dsn = dsn
        self._name = name
        self._host, self._worker = host, worker
        self._conn: psycopg.Connection | None = None
        # The connection a ping waits on, and why it was cut (see ping); reentrant: abort() runs in a signal
        # handler, on the thread that may hold it.
        self._pinging: psycopg.Connection | None = None
        self._cut_why: str | None = None
        self._ping_lock = threading.RLock()

    def open(self) -> None:
        """(Re)connect, take the host's lock and LISTEN on the ps_health channel."""
        self.close()
        conn = open_connection(self._dsn, self._name)
        try:
            with db.mapped_errors():
                started = db.fetch_one(conn, TOPIC, "reactor_start", {"host": self._host, "worker": self._worker})
                if not started["started"]:
                    raise DatabaseUnavailable(f"an older connection of {self._worker} still holds host "
                                              f"{self._host}; waiting for the server to end it")
                conn.execute(sql.SQL(query(TOPIC, "listen")).format(channel=sql.Identifier(CHANNEL)))
        except Busy as exc:
            conn.close()
            if exc.hint:  # reactor_start's own refusal says what to do; a lock timeout has no hint
                raise AlreadyRunning(str(exc), exc.sqlstate, exc.hint) from exc
            raise DatabaseUnavailable(f"taking the host failed: {exc}", exc.sqlstate) from exc
        except (AlreadyRunning, BadInput):
            conn.close()
            raise  # another reactor serves the host, or this login may not: retrying changes nothing
        except PsHealthError as exc:
            conn.close()
            raise DatabaseUnavailable(f"LISTEN failed: {exc}", exc.sqlstate) from exc
        self._conn = conn

    def wait(self, timeout: float) -> list[str]:
        """Payloads of the notifications that arrive within timeout (returns at the first batch)."""
        try:
            with db.mapped_errors():
                return [note.payload for note in self._conn.notifies(timeout=timeout, stop_after=1)]
        except PsHealthError as exc:
            raise DatabaseUnavailable(str(exc), exc.sqlstate) from exc

    def ping(self, limit: float) -> None:
        """A round trip, so a dead idle connection is noticed. A ping that gets no answer within limit seconds (a
        server process that does not answer, a network path that drops everything) is given up, and so is one in
        flight when a stop is requested (abort()): the connection is cut, and DatabaseUnavailable raised."""
        conn = self._conn
        timer = threading.Timer(limit, self._cut, (conn, f"no answer within {limit:g} s"))
        timer.daemon = True
        with self._ping_lock:
            self._pinging, self._cut_why = conn, None
        timer.start()
        try:
            with db.mapped_errors():
                conn.execute(query(TOPIC, "ping"))
        except PsHealthError as exc:
            raise DatabaseUnavailable(f"listener ping failed: {self._cut_why or exc}", exc.sqlstate) from exc
        finally:
            timer.cancel()
            with self._ping_lock:
                self._pinging = None

    def abort(self) -> None:
        """Give up a ping in flight (a stop was requested); safe from a signal handler."""
        self._cut(self._pinging, "a stop was requested")

    def _cut(self, conn: psycopg.Connection | None, why: str) -> None:
        """Shut the socket of conn if a ping still waits on it: the wait ends at once, with an error."""
        with self._ping_lock:
            if conn is None or self._pinging is not conn:
                return
            self._cut_why = why
            try:
                with socket.socket(fileno=os.dup(conn.fileno())) as sock:
                    sock.shutdown(socket.SHUT_RDWR)
            except (OSError, psycopg.Error):
                pass  # closed meanwhile: the ping ends on its own

    @property
    def backend_pid(self) -> int | None:
        """The server process of the listener connection (None while it is closed): how its row is named."""
        return self._conn.info.backend_pid if self._conn is not None else None

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # a broken socket may fail to close; it is gone either way
                pass
            self._conn = None
