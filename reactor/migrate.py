"""Plain-SQL migration runner: ordered files, one transaction each, checksums, advisory lock."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg

from reactor import schemadiff
from reactor.errors import MigrationError, from_psycopg
from reactor.sqlfiles import SQL_DIR, query

UP_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
DOWN_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.down\.sql$")


@dataclass(frozen=True)
class MigrationFile:
    version: int
    path: Path
    down: Path | None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def discover(folder: Path = SQL_DIR / "migrations") -> list[MigrationFile]:
    """The migration files in order; a badly named or duplicate file is an error."""
    ups, downs = {}, {}
    for path in sorted(folder.iterdir()):
        if DOWN_NAME.match(path.name):
            downs[int(path.name[:4])] = path
        elif m := UP_NAME.match(path.name):
            if int(m[1]) in ups:
                raise MigrationError(f"two migrations with version {m[1]}: {ups[int(m[1])].name}, {path.name}")
            ups[int(m[1])] = path
        else:
            raise MigrationError(f"{path.name}: migration files are named NNNN_description.sql "
                                 "or NNNN_description.down.sql (lower case, digits, underscores)")
    orphans = set(downs) - set(ups)
    if orphans:
        raise MigrationError(f"down migration without its up file: {downs[min(orphans)].name}")
    return [MigrationFile(v, ups[v], downs.get(v)) for v in sorted(ups)]


class Runner:
    """Applies, rolls back, adopts and reports migrations on one database."""

    def __init__(self, dsn: str, files: list[MigrationFile] | None = None,
                 say: Callable[[str], None] = print):
        self.dsn = dsn
        self.files = discover() if files is None else files
        self.say = say

    def _connect(self) -> psycopg.Connection:
        try:
            return psycopg.connect(self.dsn, autocommit=True)
        except psycopg.Error as exc:
            raise from_psycopg(exc) from exc

    def _applied(self, conn: psycopg.Connection) -> list[tuple]:
        if conn.execute("SELECT to_regclass('ps_health_meta.migrations')").fetchone()[0] is None:
            return []
        return conn.execute(query("migrate", "applied")).fetchall()

    def _verify(self, applied: list[tuple]) -> None:
        by_version = {f.version: f for f in self.files}
        for version, name, checksum, applied_at, *_ in applied:
            f = by_version.get(version)
            if f is None:
                raise MigrationError(f"migration {name} is recorded as applied but its file is missing")
            if f.checksum != checksum:
                raise MigrationError(f"{f.name} changed after it was applied on {applied_at:%Y-%m-%d %H:%M}: "
                                     "checksum differs; refusing to continue (add a new migration instead)")

    def status(self) -> list[dict]:
        """Every migration file with its state: applied (when, how long) or pending."""
        with self._connect() as conn:
            applied = {row[0]: row for row in self._applied(conn)}
        self._verify(list(applied.values()))
        return [{"version": f.version, "name": f.name,
                 "state": "applied" if f.version in applied else "pending",
                 "applied_at": applied[f.version][3] if f.version in applied else None,
                 "duration_ms": float(applied[f.version][4]) if f.version in applied else None,
                 "adopted": applied[f.version][5] if f.version in applied else False}
                for f in self.files]

    def migrate(self, to: int | None = None, dry_run: bool = False, adopt: bool = False) -> list[str]:
        """Bring the database to version `to` (latest by default); return what was (or would be) done."""
        with self._connect() as conn:
            conn.execute(query("migrate", "lock"))
            try:
                if not dry_run:
                    conn.execute(query("migrate", "ensure_tracking"))
                applied = self._applied(conn)
                self._verify(applied)
                if not applied:
                    applied = self._handle_unrecorded(conn, adopt, dry_run)
                current = max((row[0] for row in applied), default=0)
                target = self.files[-1].version if to is None else to
                if to is not None and to != 0 and to not in {f.version for f in self.files}:
                    raise MigrationError(f"--to {to}: no migration with that version")
                if target >= current:
                    return self._up(conn, current, target, dry_run)
                return self._down(conn, target, {row[0] for row in applied}, dry_run)
            finally:
                conn.execute(query("migrate", "unlock"))

    def _handle_unrecorded(self, conn, adopt: bool, dry_run: bool) -> list[tuple]:
        objects, _ = conn.execute(query("migrate", "schema_objects")).fetchone()
        if objects == 0:
            return []
        if not adopt:
            raise MigrationError(
                f"schema ps_health already holds {objects} objects but no migration is recorded "
                "(it was created by hand or by another tool). Run `ps-health migrate --adopt` to compare "
                "it with the migrations and record the matching one as applied.")
        return self._adopt(conn, dry_run)

    def _adopt(self, conn, dry_run: bool) -> list[tuple]:
        with schemadiff.scratch_database(self.dsn, "ps_health_adopt") as scratch:
            with psycopg.connect(scratch, autocommit=True) as sconn:
                closest = (None, "")
                for i, f in enumerate(self.files):
                    with sconn.transaction():
                        sconn.execute(f.path.read_text())
                        sconn.execute(query("migrate", "apply_privileges"))
                    difference = schemadiff.diff(self.dsn, scratch)
                    if not difference:
                        return self._record_adopted(conn, self.files[: i + 1], dry_run)
                    if closest[0] is None or len(difference) < len(closest[1]):
                        closest = (f.name, difference)
        raise MigrationError(f"--adopt: the live ps_health schema matches no migration; the closest is "
                             f"{closest[0]}, which differs by:\n" + closest[1][:4000])

    def _record_adopted(self, conn, files: list[MigrationFile], dry_run: bool) -> list[tuple]:
        self.say(f"adopt: the live schema equals migrations up to {files[-1].name}"
                 + (" (dry run: nothing recorded)" if dry_run else "; recorded as applied"))
        if not dry_run:
            for f in files:
                conn.execute(query("migrate", "record"), {"version": f.version, "name": f.name,
                                                          "checksum": f.checksum, "duration_ms": 0,
                                                          "adopted": True})
        return [(f.version, f.name, f.checksum, None, 0, True) for f in files]

    def _up(self, conn, current: int, target: int, dry_run: bool) -> list[str]:
        done = []
        for f in self.files:
            if not current < f.version <= target:
                continue
            if dry_run:
                done.append(f"would apply {f.name}")
                self.say(done[-1])
                continue
            started = time.perf_counter()
            try:
                with conn.transaction():
                    conn.execute(f.path.read_text())
                    conn.execute(query("migrate", "apply_privileges"))
                    ms = (time.perf_counter() - started) * 1000
                    conn.execute(query("migrate", "record"), {"version": f.version, "name": f.name,
                                                              "checksum": f.checksum, "duration_ms": ms,
                                                              "adopted": False})
            except psycopg.Error as exc:
                raise MigrationError(f"{f.name} failed and was rolled back: {from_psycopg(exc)}") from exc
            done.append(f"applied {f.name} in {ms:.1f} ms")
            self.say(done[-1])
        return done

    def _down(self, conn, target: int, applied: set[int], dry_run: bool) -> list[str]:
        done = []
        for f in reversed(self.files):
            if f.version <= target or f.version not in applied:
                continue
            if f.down is None:
                raise MigrationError(f"cannot roll back {f.name}: no {f.name[:-4]}.down.sql")
            if dry_run:
                done.append(f"would roll back {f.name}")
                self.say(done[-1])
                continue
            try:
                with conn.transaction():
                    conn.execute(f.down.read_text())
                    conn.execute(query("migrate", "apply_privileges"))
                    conn.execute(query("migrate", "forget"), {"version": f.version})
            except psycopg.Error as exc:
                raise MigrationError(f"rolling back {f.name} failed: {from_psycopg(exc)}") from exc
            done.append(f"rolled back {f.name}")
            self.say(done[-1])
        return done


def declared_schema_files() -> list[Path]:
    """The declarative schema, in name order."""
    return sorted((SQL_DIR / "schema").glob("*.sql"))


def drift(dsn: str) -> str:
    """SQL that would turn the live ps_health into the declared schema ('' when none)."""
    with schemadiff.scratch_database(dsn, "ps_health_declared") as scratch:
        schemadiff.load_files(scratch, declared_schema_files())
        return schemadiff.diff(dsn, scratch)
