"""A database connection shared by threads: opened on first use, dropped on an outage."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from reactor import db
from reactor.db.queries import query
from reactor.errors import AlreadyRunning, BadInput, Busy, DatabaseUnavailable, PsHealthError, is_outage

log = logging.getLogger(__name__)

TOPIC = "reactor"
CHANNEL = "ps_health"
# TCP keepalives notice a silently dropped network path (ignored on Unix sockets).
_KEEPALIVE = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}
# The reactor waits at most this long for a lock another transaction holds (then Busy): a transaction
# an agent's login leaves open must not stop the reactor's probes, sweeps or outcomes for other projects.
LOCK_TIMEOUT = "2s"
# A Watch looks at the calls in flight this often (so a limit is kept to within this much).
_WATCH_EVERY = 0.25
# Why a call was cut when a stop came (see Watch.hurry): it is not tried again.
STOPPING = "a stop was requested"


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


class Watch:
    """Cuts the connection a call waits on when the call gets no answer within its limit (a network path that drops
    everything, a server process that does not answer), or at once on abort(): the call then ends with an error,
    instead of waiting as long as TCP takes to give up (about a quarter of an hour) or forever. One thread looks at
    every watch a few times a second; a call costs two assignments and a lock nobody else holds."""

    _all: weakref.WeakSet[Watch] = weakref.WeakSet()
    _looker: threading.Thread | None = None
    _started = threading.Lock()

    def __init__(self, limit: float):
        self.limit = limit
        self.why: str | None = None  # why the last call was cut
        # (connection, deadline, why it is cut then) of the call in flight
        self._call: tuple[psycopg.Connection, float, str] | None = None
        self._lock = threading.RLock()  # (reentrant: abort() runs in a signal handler, on the calling thread)
        with Watch._started:
            Watch._all.add(self)
            if Watch._looker is None or not Watch._looker.is_alive():  # (none yet, or a forked child's)
                Watch._looker = threading.Thread(target=Watch._look, name="call watch", daemon=True)
                Watch._looker.start()

    @contextmanager
    def watching(self, conn: psycopg.Connection) -> Iterator[None]:
        with self._lock:
            self._call, self.why = (conn, time.monotonic() + self.limit, f"no answer within {self.limit:g} s"), None
        try:
            yield
        finally:
            with self._lock:
                self._call = None

    def hurry(self, grace: float) -> None:
        """A stop was requested: the call in flight gets at most grace seconds more, then it is cut (STOPPING). Safe
        from a signal handler."""
        with self._lock:
            call = self._call
            if call is not None:
                self._call = (call[0], min(call[1], time.monotonic() + grace), STOPPING)
        if grace <= 0:
            self._due(time.monotonic())

    def _due(self, now: float) -> None:
        call = self._call
        if call is not None and now >= call[1]:
            self._cut(call)

    def _cut(self, call: tuple[psycopg.Connection, float, str]) -> None:
        with self._lock:
            if self._call is not call:
                return  # it ended meanwhile, or was given another deadline
            self.why = call[2]
            try:
                with socket.socket(fileno=os.dup(call[0].fileno())) as sock:
                    sock.shutdown(socket.SHUT_RDWR)  # the wait on it ends at once, with an error
            except (OSError, psycopg.Error):
                pass  # closed meanwhile: the call ends on its own

    @staticmethod
    def _look() -> None:
        while True:
            time.sleep(_WATCH_EVERY)
            now = time.monotonic()
            for watch in list(Watch._all):
                watch._due(now)


class Link:
    """One autocommit connection behind a lock; reconnects on the next call after an outage. With a limit, a call
    that gets no answer within it is cut (see Watch): it is tried once more on a fresh connection, as after an
    outage."""

    def __init__(self, dsn: str, name: str, limit: float | None = None):
        self._dsn = dsn
        self._name = name
        self._lock = threading.Lock()
        self._conn: psycopg.Connection | None = None
        self._watch = Watch(limit) if limit else None

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
                    if self._watch is None:
                        return db.fetch(conn, TOPIC, name, params)
                    with self._watch.watching(conn):
                        return db.fetch(conn, TOPIC, name, params)
                except PsHealthError as exc:
                    if not is_outage(exc, conn):
                        raise
                    self._drop()
                    why = self._watch.why if self._watch is not None else None
                    if why:
                        log.warning("%s call on %s: %s, connection cut", name, self._name, why)
                    if not stale or why == STOPPING:
                        raise DatabaseUnavailable(f"{name}: {why}" if why else str(exc), exc.sqlstate) from exc
                    stale = False

    def hurry(self, grace: float) -> None:
        """A stop was requested: a call in flight gets at most grace seconds more (see Watch.hurry)."""
        if self._watch is not None:
            self._watch.hurry(grace)

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

    def __init__(self, dsn: str, name: str, host: str, worker: str, ping_limit: float = 10.0):
        self._dsn = dsn
        self._name = name
        self._host, self._worker = host, worker
        self._conn: psycopg.Connection | None = None
        self._ping = Watch(ping_limit)

    def open(self) -> None:
        """(Re)connect, take the host's lock and LISTEN on the ps_health channel. Its calls are watched as a ping is:
        no answer within the limit, or a stop requested (abort()), cuts them."""
        self.close()
        conn = open_connection(self._dsn, self._name)
        try:
            with db.mapped_errors(), self._ping.watching(conn):
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
            raise DatabaseUnavailable(f"LISTEN failed: {self._ping.why or exc}", exc.sqlstate) from exc
        self._conn = conn

    def wait(self, timeout: float) -> list[str]:
        """Payloads of the notifications that arrive within timeout (returns at the first batch)."""
        try:
            with db.mapped_errors():
                return [note.payload for note in self._conn.notifies(timeout=timeout, stop_after=1)]
        except PsHealthError as exc:
            raise DatabaseUnavailable(str(exc), exc.sqlstate) from exc

    def ping(self) -> None:
        """A round trip, so a dead idle connection is noticed. A ping that gets no answer within its limit is given
        up, and so is one in flight when a stop is requested (abort()): the connection is cut (see Watch), and
        DatabaseUnavailable raised."""
        try:
            with db.mapped_errors(), self._ping.watching(self._conn):
                self._conn.execute(query(TOPIC, "ping"))
        except PsHealthError as exc:
            raise DatabaseUnavailable(f"listener ping failed: {self._ping.why or exc}", exc.sqlstate) from exc

    def abort(self) -> None:
        """Give up a ping, or the calls of open(), in flight (a stop was requested); safe from a signal handler."""
        self._ping.hurry(0.0)

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
