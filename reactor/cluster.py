"""The embedded PostgreSQL cluster: initdb, start, stop, status, DSN (as `postgres` when root)."""

from __future__ import annotations

import glob
import hashlib
import logging
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from reactor.errors import PsHealthError

log = logging.getLogger(__name__)

DBNAME = "ps_health"
SYSTEM_USER = "postgres"
APT_PACKAGES = "postgresql-15 postgresql-15-cron"


def pg_bindir() -> Path:
    """Server binaries: PS_HEALTH_PG_BIN, else the newest /usr/lib/postgresql/*/bin, else PATH."""
    if os.environ.get("PS_HEALTH_PG_BIN"):
        return Path(os.environ["PS_HEALTH_PG_BIN"])
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    which = shutil.which("pg_ctl")
    if which:
        return Path(which).resolve().parent
    raise PsHealthError(f"PostgreSQL server binaries not found; install them: apt-get install -y {APT_PACKAGES}")


def _is_root() -> bool:
    return os.geteuid() == 0


def _reachable_by_postgres(path: Path) -> bool:
    """Whether the postgres user can traverse every parent of path (a 0700 /root is not)."""
    probe = path if path.exists() else path.parent
    while not probe.exists():
        probe = probe.parent
    return subprocess.run(["runuser", "-u", SYSTEM_USER, "--", "test", "-x", str(probe)],
                          capture_output=True).returncode == 0


@dataclass
class Cluster:
    """One local cluster under `home`: pgdata/, run/ (socket, log)."""

    home: Path
    port: int
    fast: bool = False  # test clusters trade durability for speed

    @classmethod
    def from_config(cls, config) -> "Cluster":
        return cls(home=config.home, port=config.port)

    def __post_init__(self) -> None:
        self.home = Path(self.home).resolve()
        if _is_root() and not _reachable_by_postgres(self.home):
            digest = hashlib.sha1(str(self.home).encode()).hexdigest()[:10]
            fallback = Path("/var/lib/ps-health") / digest
            log.warning("%s is not reachable by the postgres user; keeping the cluster in %s instead",
                        self.home, fallback)
            self.home = fallback

    @property
    def pgdata(self) -> Path:
        return self.home / "pgdata"

    @property
    def rundir(self) -> Path:
        return self.home / "run"

    @property
    def logfile(self) -> Path:
        return self.rundir / "postgres.log"

    def dsn(self, dbname: str = DBNAME) -> str:
        return f"host={self.rundir} port={self.port} dbname={dbname} user={SYSTEM_USER}"

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(pg_bindir() / argv[0]), *argv[1:]]
        if _is_root():
            cmd = ["runuser", "-u", SYSTEM_USER, "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd="/")
        if check and proc.returncode != 0:
            output = proc.stderr.strip() or proc.stdout.strip()
            raise PsHealthError(f"{argv[0]} failed (exit {proc.returncode}): {output}")
        return proc

    def _prepare_dirs(self) -> None:
        for d in (self.home, self.rundir):
            d.mkdir(parents=True, exist_ok=True)
        if _is_root():
            shutil.chown(self.rundir, SYSTEM_USER, SYSTEM_USER)
            if not self.pgdata.exists():
                self.pgdata.mkdir(mode=0o700)
                shutil.chown(self.pgdata, SYSTEM_USER, SYSTEM_USER)

    def _check_pg_cron(self) -> None:
        libdir = subprocess.run([str(pg_bindir() / "pg_config"), "--pkglibdir"], capture_output=True,
                                text=True).stdout.strip()
        if libdir and not Path(libdir, "pg_cron.so").exists():
            raise PsHealthError(f"pg_cron is not installed; install it: apt-get install -y {APT_PACKAGES}")

    def _initdb(self) -> None:
        self._run("initdb", "-D", str(self.pgdata), "-U", SYSTEM_USER, "-A", "trust", "-E", "UTF8",
                  "--no-instructions")
        conf = [
            "# ps-health embedded cluster",
            "listen_addresses = '127.0.0.1'",
            f"port = {self.port}",
            f"unix_socket_directories = '{self.rundir}'",
            "shared_preload_libraries = 'pg_cron'",
            f"cron.database_name = '{DBNAME}'",
            # pg_cron's jobs connect over libpq: the socket needs no password.
            f"cron.host = '{self.rundir}'",
            "max_connections = 200",
            "timezone = 'UTC'",
        ]
        if self.fast:
            conf += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
        with open(self.pgdata / "postgresql.conf", "a") as fh:
            fh.write("\n".join(conf) + "\n")

    def exists(self) -> bool:
        """Whether initdb has made the cluster (running or not)."""
        return (self.pgdata / "PG_VERSION").exists()

    def is_running(self) -> bool:
        return self.pgdata.exists() and self._run("pg_ctl", "status", "-D", str(self.pgdata),
                                                  check=False).returncode == 0

    def up(self, timeout: float = 60) -> str:
        """Create and start the cluster when needed, ensure the database and pg_cron; return the DSN."""
        self._check_pg_cron()
        self._prepare_dirs()
        if not self.exists():
            self._initdb()
        if not self.is_running():
            self._run("pg_ctl", "start", "-D", str(self.pgdata), "-l", str(self.logfile), "-w",
                      "-t", str(int(timeout)))
        self._wait_ready(timeout)
        self._ensure_database()
        return self.dsn()

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(self.dsn("postgres"), connect_timeout=2).close()
                return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise PsHealthError(f"server did not accept connections within {timeout:.0f} s: {exc}; "
                                        f"see {self.logfile}") from exc
                time.sleep(0.1)

    def _ensure_database(self) -> None:
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DBNAME,)).fetchone():
                conn.execute(f'CREATE DATABASE "{DBNAME}"')
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_cron")

    def down(self) -> bool:
        """Stop the cluster cleanly; False when it was not running."""
        if not self.is_running():
            return False
        self._run("pg_ctl", "stop", "-D", str(self.pgdata), "-m", "fast", "-w", "-t", "60")
        return True

    def restart(self) -> None:
        self._run("pg_ctl", "restart", "-D", str(self.pgdata), "-m", "fast", "-w", "-t", "60",
                  "-l", str(self.logfile))

    def status(self) -> dict:
        return {"running": self.is_running(), "pgdata": str(self.pgdata), "port": self.port,
                "socket_dir": str(self.rundir), "log": str(self.logfile), "dsn": self.dsn()}

    def destroy(self) -> None:
        """Stop and delete everything (test clusters)."""
        self.down()
        shutil.rmtree(self.home, ignore_errors=True)
