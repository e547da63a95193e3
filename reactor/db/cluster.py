"""The embedded PostgreSQL cluster: initdb, start, stop, status, DSN (as `postgres` when root).

Locked by default: over the socket only the OS user who ran `db up` (and the server's own user,
as which pg_cron's jobs connect) get in as `postgres`, by peer; every other login needs its password.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
import pwd
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from psycopg import sql
from psycopg.conninfo import make_conninfo

from reactor import db
from reactor.db.queries import query
from reactor.errors import DatabaseUnavailable, PsHealthError

log = logging.getLogger(__name__)

DBNAME = "ps_health"
SYSTEM_USER = "postgres"
APT_PACKAGES = "postgresql-15 postgresql-15-cron"
IDENT_MAP = "ps_health"
LOCKED_MARK = "# ps-health: locked"
# Unqualified names such as `\\d ps_sessions` find the schema; public first, as a client expects.


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


def _os_user() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


def _reachable_by_postgres(path: Path) -> bool:
    """Whether the postgres user can traverse every parent of path (a 0700 /root is not)."""
    probe = path.parent  # path itself is made the server's own
    while not probe.exists():
        probe = probe.parent
    return subprocess.run(["runuser", "-u", SYSTEM_USER, "--", "test", "-x", str(probe)],
                          capture_output=True).returncode == 0


def _methods(hba: str) -> str:
    """The authentication methods of an old pg_hba.conf, e.g. 'trust'."""
    methods = {line.split()[-1] for line in hba.splitlines() if line.strip() and not line.lstrip().startswith("#")}
    return "/".join(sorted(methods)) or "no rules"


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

    @property
    def server_user(self) -> str:
        """The OS user the server runs as: `postgres` when root starts it, else the caller."""
        return SYSTEM_USER if _is_root() else _os_user()

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

    def _prepare_dirs(self) -> list[str]:
        """Home and socket folder 0700, owned by the server's user; returns what had to change."""
        changed = []
        for d in (self.home, self.rundir):
            existed = d.exists()
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
            st = d.stat()
            if _is_root() and st.st_uid != pwd.getpwnam(SYSTEM_USER).pw_uid:
                shutil.chown(d, SYSTEM_USER, SYSTEM_USER)
                changed += [f"{d} now owned by {SYSTEM_USER}"] if existed else []
            if st.st_mode & 0o777 != 0o700:
                d.chmod(0o700)
                changed += [f"{d} mode {st.st_mode & 0o777:o} -> 700"] if existed else []
        if _is_root() and not self.pgdata.exists():
            self.pgdata.mkdir(mode=0o700)
            shutil.chown(self.pgdata, SYSTEM_USER, SYSTEM_USER)
        return changed

    def _hba(self) -> str:
        return f"""{LOCKED_MARK} (rewritten by `ps-health db up`)
# TYPE  DATABASE  USER      ADDRESS        METHOD
local   all       {SYSTEM_USER:9}                peer map={IDENT_MAP}
local   all       all                      scram-sha-256
host    all       all       127.0.0.1/32   scram-sha-256
host    all       all       ::1/128        scram-sha-256
"""

    def _ident_users(self) -> list[str]:
        # the caller, and the server's own user: pg_cron's jobs connect as it through the socket
        return list(dict.fromkeys([_os_user(), self.server_user]))

    def _ident(self) -> str:
        return "\n".join([f"{LOCKED_MARK}: the OS users who may log in as {SYSTEM_USER} over the socket",
                          *(f"{IDENT_MAP:10} {u:20} {SYSTEM_USER}" for u in self._ident_users())]) + "\n"

    def _write_auth(self) -> dict[str, str]:
        """Write pg_hba.conf and pg_ident.conf; return the old text of each file that changed."""
        old = {}
        for name, text in (("pg_ident.conf", self._ident()), ("pg_hba.conf", self._hba())):
            path = self.pgdata / name
            before = path.read_text() if path.exists() else ""
            if before != text:
                path.write_text(text)  # an existing file keeps its owner (the server's user)
                path.chmod(0o600)
                if _is_root():
                    shutil.chown(path, SYSTEM_USER, SYSTEM_USER)
                old[name] = before
        return old

    def _check_pg_cron(self) -> None:
        libdir = subprocess.run([str(pg_bindir() / "pg_config"), "--pkglibdir"], capture_output=True,
                                text=True).stdout.strip()
        if libdir and not Path(libdir, "pg_cron.so").exists():
            raise PsHealthError(f"pg_cron is not installed; install it: apt-get install -y {APT_PACKAGES}")

    def _initdb(self) -> None:
        # never trust: the real pg_hba.conf is written before the first start
        self._run("initdb", "-D", str(self.pgdata), "-U", SYSTEM_USER, "--auth-local=peer",
                  "--auth-host=scram-sha-256", "-E", "UTF8", "--no-instructions")
        conf = [
            "# ps-health embedded cluster",
            "listen_addresses = '127.0.0.1'",
            f"port = {self.port}",
            f"unix_socket_directories = '{self.rundir}'",
            "unix_socket_permissions = 0700",
            "password_encryption = 'scram-sha-256'",
            "shared_preload_libraries = 'pg_cron'",
            f"cron.database_name = '{DBNAME}'",
            # pg_cron's jobs connect over libpq as the server's OS user: through the socket, by peer.
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
        dirs_changed = self._prepare_dirs()
        fresh = not self.exists()
        if fresh:
            self._initdb()
        old = self._write_auth()
        old_hba = old.get("pg_hba.conf", "")
        running = self.is_running()
        if not fresh and old_hba and LOCKED_MARK not in old_hba:
            log.warning("locked down the embedded cluster in %s (its pg_hba.conf allowed %s): now only OS "
                        "user(s) %s log in as %s, over the socket; every other login needs its password%s",
                        self.home, _methods(old_hba), ", ".join(self._ident_users()), SYSTEM_USER,
                        "; " + ", ".join(dirs_changed) if dirs_changed else "")
        elif dirs_changed and not fresh:
            log.warning("tightened the embedded cluster's folders: %s", ", ".join(dirs_changed))
        if running and old:
            self._run("pg_ctl", "reload", "-D", str(self.pgdata))
            self._wait_locked(timeout)
        if not running:
            self._run("pg_ctl", "start", "-D", str(self.pgdata), "-l", str(self.logfile), "-w",
                      "-t", str(int(timeout)))
        self._wait_ready(timeout)
        self._ensure_database()
        return self.dsn()

    def _wait_locked(self, timeout: float) -> None:
        """After a reload, wait until a wrong password over TCP is refused (the new rules are live)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                db.connect(make_conninfo(host="127.0.0.1", port=self.port, dbname="postgres", user=SYSTEM_USER,
                                         password="not-the-password"), connect_timeout=2).close()
            except DatabaseUnavailable:
                return
            if time.monotonic() > deadline:
                raise PsHealthError(f"the embedded cluster still accepts any login after reloading "
                                    f"{self.pgdata / 'pg_hba.conf'}; see {self.logfile}")
            time.sleep(0.05)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                db.connect(self.dsn("postgres"), connect_timeout=2).close()
                return
            except DatabaseUnavailable as exc:
                if time.monotonic() > deadline:
                    raise PsHealthError(f"server did not accept connections within {timeout:.0f} s: {exc}; "
                                        f"see {self.logfile}") from exc
                time.sleep(0.1)

    def _ensure_database(self) -> None:
        name = sql.Identifier(DBNAME)
        with db.connect(self.dsn("postgres"), autocommit=True) as conn:
            if not db.fetch_one(conn, "cluster", "has_database", {"name": DBNAME}):
                conn.execute(sql.SQL(query("cluster", "create_database")).format(name=name))
            conn.execute(sql.SQL(query("cluster", "search_path")).format(name=name))
        with db.connect(self.dsn(), autocommit=True) as conn:
            db.fetch(conn, "cluster", "create_pg_cron")

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
