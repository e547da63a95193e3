"""The schema's life cycle: build a fresh database from sql/schema, apply deltas to older ones, reload code.

sql/schema/ is the declared end state. Files numbered below 20 hold tables ("state"); a fresh
database is built from every file and stamped with the latest version. Files from 20 up hold
functions, views, triggers and reference rows ("code"): they are dropped and loaded again whenever
their checksum differs from the one recorded, so a function is written once and changed in place.
sql/migrations/NNNN_name.sql are deltas of the state for databases built by an earlier version.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg

from reactor import db
from reactor.db import drift as schemadiff
from reactor.db.queries import SQL_DIR, query
from reactor.errors import BadInput, MigrationError, PsHealthError, from_psycopg

log = logging.getLogger(__name__)

UP_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
SCHEMA_NAME = re.compile(r"^(\d{2})_([a-z0-9_]+)\.sql$")
# In a delta, a line naming a table new in its version, created as the state files declare it.
CREATE_LINE = re.compile(r"^-- create table: (ps_health\.[a-z_][a-z0-9_]*)$", re.M)
# Schema files numbered below this hold state (tables); from it up, code that is reloaded.
FIRST_CODE_FILE = 20
# The migrations of the releases before the declared schema; a database that ran them is brought
# forward by the first delta (0007). Their files are no longer shipped.
LEGACY = {1: "0001_seed.sql", 2: "0002_engine.sql", 3: "0003_cli.sql", 4: "0004_handoff_channels.sql",
          5: "0005_roles.sql", 6: "0006_claim_speed.sql"}


@dataclass(frozen=True)
class MigrationFile:
    version: int
    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class Schema:
    """The declared schema: its state files and its code files, in name order."""

    folder: Path

    def files(self) -> list[Path]:
        found = sorted(self.folder.glob("*.sql"))
        for path in found:
            if not SCHEMA_NAME.match(path.name):
                raise MigrationError(f"{path.name}: schema files are named NN_topic.sql (lower case, digits, "
                                     "underscores)")
        return found

    def state(self) -> list[Path]:
        return [p for p in self.files() if int(p.name[:2]) < FIRST_CODE_FILE]

    def code(self) -> list[Path]:
        return [p for p in self.files() if int(p.name[:2]) >= FIRST_CODE_FILE]

    def table(self, name: str) -> str:
        """The CREATE TABLE statement of table `name` (schema-qualified) as the state files declare it."""
        pattern = re.compile(rf"^CREATE TABLE {re.escape(name)} \(\n.*?^\);$", re.M | re.S)
        for path in self.state():
            found = pattern.search(path.read_text())
            if found:
                return found.group(0)
        raise MigrationError(f"no state file of {self.folder} declares table {name}")

    def expand(self, delta: str) -> str:
        """A delta's text with each `-- create table: NAME` line replaced by the table's declared CREATE TABLE:
        a table new in a version is written once, in the state files."""
        return CREATE_LINE.sub(lambda m: self.table(m.group(1)), delta)

    def code_checksum(self) -> str:
        digest = hashlib.sha256()
        for path in self.code():
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
        return digest.hexdigest()


def discover(folder: Path = SQL_DIR / "migrations") -> list[MigrationFile]:
    """The delta files in order; a badly named or duplicate file is an error."""
    ups: dict[int, Path] = {}
    for path in sorted(folder.iterdir()) if folder.exists() else []:
        m = UP_NAME.match(path.name)
        if not m:
            raise MigrationError(f"{path.name}: migration files are named NNNN_description.sql "
                                 "(lower case, digits, underscores)")
        version = int(m[1])
        if version in ups:
            raise MigrationError(f"two migrations with version {m[1]}: {ups[version].name}, {path.name}")
        if version in LEGACY:
            raise MigrationError(f"{path.name}: versions up to {max(LEGACY)} belong to the pre-release migrations")
        ups[version] = path
    return [MigrationFile(v, ups[v]) for v in sorted(ups)]


def build(conn: psycopg.Connection, schema: Schema) -> None:
    """Create the declared schema (state, then code) on a connection, inside the caller's transaction."""
    conn.execute(query("migrate", "no_body_checks"))  # functions may name each other in any order
    for path in schema.state():
        conn.execute(path.read_text())
    load_code(conn, schema)


def load_code(conn: psycopg.Connection, schema: Schema) -> None:
    """Drop every function, view and trigger of ps_health and create them from the code files."""
    conn.execute(query("migrate", "no_body_checks"))
    conn.execute(query("migrate", "drop_code"))
    for path in schema.code():
        try:
            conn.execute(path.read_text())
        except psycopg.Error as exc:
            raise MigrationError(f"{path.name}: {from_psycopg(exc)}") from exc
    conn.execute(query("migrate", "apply_privileges"))


def _failure(exc: psycopg.Error) -> str:
    """A failed migration's database error, with what to do about a lock it waited for too long."""
    said = str(from_psycopg(exc))
    if getattr(exc, "sqlstate", None) == "55P03":
        said += (" (another session holds a lock on a table or view the migration changes: see pg_locks and "
                 "pg_stat_activity, end that transaction, or give migrate a longer --wait)")
    return said


class Runner:
    """Builds, brings forward, adopts and reports the schema of one database."""

    def __init__(self, dsn: str, files: list[MigrationFile] | None = None,
                 say: Callable[[str], None] = print, schema: Schema | None = None, lock_wait: float = 120.0):
        self.dsn = dsn
        self.files = discover() if files is None else files
        self.schema = schema or Schema(SQL_DIR / "schema")
        self.say = say
        self.lock_wait = lock_wait  # seconds to wait for another runner's lock before giving up

    @property
    def latest(self) -> int:
        """The version a fresh database is stamped with."""
        return max([f.version for f in self.files] + [max(LEGACY)])

    def _connect(self) -> psycopg.Connection:
        return db.connect(self.dsn, autocommit=True, dict_rows=False, application_name="ps-health migrate")

    def _applied(self, conn: psycopg.Connection) -> list[tuple]:
        if conn.execute(query("migrate", "has_tracking")).fetchone()[0] is None:
            return []
        return conn.execute(query("migrate", "applied")).fetchall()

    def _verify(self, applied: list[tuple]) -> None:
        by_version = {f.version: f for f in self.files}
        for version, name, checksum, applied_at, _ms, _adopted, how in applied:
            if version in LEGACY:
                if name != LEGACY[version]:
                    raise MigrationError(f"version {version} is recorded as {name}, not {LEGACY[version]}")
                continue
            f = by_version.get(version)
            if f is None:
                raise MigrationError(f"migration {name} is recorded as applied but its file is missing "
                                     "(this ps-health is older than the database)")
            if how == "delta" and f.checksum != checksum:
                raise MigrationError(f"{f.name} changed after it was applied on {applied_at:%Y-%m-%d %H:%M}: "
                                     "checksum differs; refusing to continue (add a new migration instead)")

    def _loaded_code(self, conn) -> str | None:
        if conn.execute(query("migrate", "has_code_record")).fetchone()[0] is None:
            return None  # a database from before the declared schema
        row = conn.execute(query("migrate", "code_loaded")).fetchone()
        return row[0] if row else None

    def status(self) -> list[dict]:
        """The versions (applied or pending) and whether the code loaded equals the files."""
        with self._connect() as conn, db.mapped_errors():
            applied = {row[0]: row for row in self._applied(conn)}
            loaded = self._loaded_code(conn)
        self._verify(list(applied.values()))
        rows = [{"version": v, "name": row[1], "state": "applied", "how": row[6], "applied_at": row[3],
                 "duration_ms": float(row[4]), "adopted": row[5]}
                for v, row in sorted(applied.items()) if v in LEGACY]
        for f in self.files:
            row = applied.get(f.version)
            rows.append({"version": f.version, "name": f.name, "state": "applied" if row else "pending",
                         "how": row[6] if row else None, "applied_at": row[3] if row else None,
                         "duration_ms": float(row[4]) if row else None, "adopted": row[5] if row else False})
        if applied:
            rows.append({"version": None, "name": "code (functions, views, triggers)",
                         "state": "current" if loaded == self.schema.code_checksum() else "changed",
                         "how": "reload", "applied_at": None, "duration_ms": None, "adopted": False})
        return rows

    def migrate(self, to: int | None = None, dry_run: bool = False, adopt: bool = False) -> list[str]:
        """Bring the database to the declared schema (or remove it: to=0); return what was (or would be) done."""
        if to not in (None, 0, self.latest):
            raise BadInput(f"--to {to}: the schema can be brought to version {self.latest} (the latest) "
                           "or removed with --to 0; older versions are not kept")
        with self._connect() as conn:
            self._lock(conn)
            try:
                applied = self._applied(conn)
                self._verify(applied)
                if to == 0:
                    return self._remove(conn, applied, dry_run)
                if not applied:
                    return self._unrecorded(conn, adopt, dry_run)
                return self._forward(conn, applied, dry_run)
            finally:
                conn.execute(query("migrate", "unlock"))

    def _lock(self, conn) -> None:
        """The runners' lock: wait up to lock_wait seconds for another runner, saying once who holds it; then
        give up naming it (an advisory lock any login could hold forever, so the wait must end)."""
        deadline = time.monotonic() + self.lock_wait
        told = False
        while not conn.execute(query("migrate", "try_lock")).fetchone()[0]:
            holder = conn.execute(query("migrate", "lock_holder")).fetchone()
            who = (f"pid {holder[0]}, login {holder[1] or '?'}" + (f", {holder[2]!r}" if holder[2] else "")
                   if holder else "a session that just ended")
            if time.monotonic() >= deadline:
                raise MigrationError(f"another session holds the migration lock ({who}) after {self.lock_wait:g} s "
                                     "of waiting; if it is not a ps-health migrate, end it: "
                                     f"SELECT pg_terminate_backend({holder[0] if holder else 'PID'})")
            if not told:
                log.warning("waiting up to %g s for another session's migration lock (%s)", self.lock_wait, who)
                told = True
            time.sleep(0.2)
        # a change waits as long for a lock another session holds on what it changes (a reader's open
        # transaction on a table or view), then the migration is rolled back, saying so
        conn.execute(f"SET lock_timeout = '{max(int(self.lock_wait * 1000), 100)}ms'")

    # ------------------------------------------------------------------ the paths

    def _unrecorded(self, conn, adopt: bool, dry_run: bool) -> list[str]:
        objects, _ = conn.execute(query("migrate", "schema_objects")).fetchone()
        if objects == 0:
            return self._build(conn, dry_run)
        if not adopt:
            raise MigrationError(
                f"schema ps_health already holds {objects} objects but no migration is recorded "
                "(it was created by hand or by another tool). Run `ps-health migrate --adopt` to compare "
                "it with the declared schema and record it as current when they are equal.")
        return self._adopt(conn, dry_run)

    def _build(self, conn, dry_run: bool) -> list[str]:
        what = f"build the schema (version {self.latest}) from sql/schema"
        if dry_run:
            return self._said(f"would {what}")
        started = time.perf_counter()
        try:
            with conn.transaction():
                conn.execute(query("migrate", "ensure_tracking"))
                build(conn, self.schema)
                for f in self.files or [None]:
                    self._stamp(conn, f.version if f else self.latest, "schema", started, f)
                self._record_code(conn)
        except psycopg.Error as exc:
            raise MigrationError(f"building the schema failed and was rolled back: {_failure(exc)}") from exc
        return self._said(f"built the schema (version {self.latest}) in {_ms(started):.1f} ms")

    def _forward(self, conn, applied: list[tuple], dry_run: bool) -> list[str]:
        current = max(row[0] for row in applied)
        pending = [f for f in self.files if f.version > current]
        stale = self._loaded_code(conn) != self.schema.code_checksum()
        if not pending and not stale:
            return []
        if dry_run:
            return self._said(*[f"would apply {f.name}" for f in pending],
                              "would reload the code (functions, views, triggers)")
        done = []
        started = time.perf_counter()
        try:
            with conn.transaction():
                conn.execute(query("migrate", "ensure_tracking"))
                for f in pending:
                    step = time.perf_counter()
                    conn.execute(self.schema.expand(f.path.read_text()))
                    self._stamp(conn, f.version, "delta", step, f)
                    done.append(f"applied {f.name} in {_ms(step):.1f} ms")
                load_code(conn, self.schema)
                self._record_code(conn)
        except psycopg.Error as exc:
            raise MigrationError(f"migrating failed and was rolled back: {_failure(exc)}") from exc
        except MigrationError as exc:
            raise MigrationError(f"migrating failed and was rolled back: {exc}") from exc
        done.append(f"reloaded the code in {_ms(started):.1f} ms")
        return self._said(*done)

    def _adopt(self, conn, dry_run: bool) -> list[str]:
        with schemadiff.scratch_database(self.dsn, "ps_health_adopt") as scratch:
            with db.connect(scratch, dict_rows=False) as sconn:
                build(sconn, self.schema)
            difference = schemadiff.diff(self.dsn, scratch)
        if difference:
            raise MigrationError("--adopt: the live ps_health schema does not equal the declared schema; "
                                 "it differs by:\n" + difference[:4000])
        if dry_run:
            return self._said(f"adopt: the live schema equals the declared schema (version {self.latest}) "
                              "(dry run: nothing recorded)")
        with conn.transaction():
            conn.execute(query("migrate", "ensure_tracking"))
            self._stamp(conn, self.latest, "adopted", time.perf_counter())
            self._record_code(conn)
        return self._said(f"adopt: the live schema equals the declared schema (version {self.latest}); "
                          "recorded as current")

    def _remove(self, conn, applied: list[tuple], dry_run: bool) -> list[str]:
        if not applied:
            return []
        if dry_run:
            return self._said("would remove the ps_health schema and its records (roles stay)")
        with conn.transaction():
            conn.execute(query("migrate", "remove"))
        return self._said("removed the ps_health schema and its records (the roles stay: they are cluster-wide)")

    # ------------------------------------------------------------------ records

    def _stamp(self, conn, version: int, how: str, started: float, f: MigrationFile | None = None) -> None:
        f = f or next((m for m in self.files if m.version == version), None)
        conn.execute(query("migrate", "record"), {
            "version": version, "name": f.name if f else f"{version:04d}_declared_schema",
            "checksum": f.checksum if f else "",
            "duration_ms": _ms(started), "adopted": how == "adopted", "how": how})

    def _record_code(self, conn) -> None:
        conn.execute(query("migrate", "record_code"), {"checksum": self.schema.code_checksum()})

    def _said(self, *lines: str) -> list[str]:
        for line in lines:
            self.say(line)
        return list(lines)


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def drift(dsn: str) -> str:
    """SQL that would turn the live ps_health into the declared schema ('' when none)."""
    try:
        with db.mapped_errors(), schemadiff.scratch_database(dsn, "ps_health_declared") as scratch:
            with db.connect(scratch, dict_rows=False) as conn:
                build(conn, Schema(SQL_DIR / "schema"))
            return schemadiff.diff(dsn, scratch)
    except PsHealthError as exc:
        if exc.sqlstate != "42501":
            raise
        raise type(exc)(f"drift builds the declared schema in a scratch database: {exc}", exc.sqlstate,
                        "run it with the owner's login (one that may create databases)") from exc
