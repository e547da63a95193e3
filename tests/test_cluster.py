"""`ps-health db up|status|url|down` on a real embedded cluster, and who may connect to it."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from reactor.db.cluster import Cluster
from tests.pg import free_port
from tests.support import run_cli

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="connecting as another OS user (runuser) needs root; "
                                                          "CI runs the tests as root")
# What an attacker on the same machine would run: a shell command as the server's OS user.
PAYLOAD = "COPY (SELECT 1) TO PROGRAM 'id > {marker}'"
# What `initdb -A trust` wrote, as clusters made before the lock-down had it.
OPEN_HBA = """local   all             all                                     trust
host    all             all             127.0.0.1/32            trust
host    all             all             ::1/128                 trust
local   replication     all                                     trust
"""


class Embedded:
    """An embedded cluster made by `ps-health db up` in a folder of its own under /tmp."""

    def __init__(self):
        self.home = Path(tempfile.mkdtemp(prefix="ps-health-embedded-", dir="/tmp"))
        self.env = {"PS_HEALTH_HOME": str(self.home), "PS_HEALTH_PORT": str(free_port())}
        self.cluster = Cluster(self.home, int(self.env["PS_HEALTH_PORT"]))

    def cli(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
        res = run_cli(None, *args, env=self.env, timeout=120)
        assert not ok or res.returncode == 0, f"{args}: rc {res.returncode}\n{res.stdout}\n{res.stderr}"
        return res

    def remove(self) -> None:
        run_cli(None, "db", "down", env=self.env, timeout=120)
        shutil.rmtree(self.home, ignore_errors=True)


@pytest.fixture
def embedded():
    emb = Embedded()
    yield emb
    emb.remove()


def psql_as(os_user: str, conninfo: str, command: str, password: str | None = None) -> subprocess.CompletedProcess:
    """psql run by another OS user (never prompting for a password)."""
    env = {"PATH": os.environ["PATH"], "PGPASSFILE": "/nonexistent/pgpass"}
    if password is not None:
        env["PGPASSWORD"] = password
    return subprocess.run(["runuser", "-u", os_user, "--", "psql", "-w", "-X", "-At", conninfo, "-c", command],
                          capture_output=True, text=True, env=env, cwd="/", timeout=30)


def psql(conninfo: str, command: str, *flags: str) -> subprocess.CompletedProcess:
    """psql as the user running the tests, as a user types it (no search_path of its own)."""
    return subprocess.run(["psql", "-w", "-X", *(flags or ("-At",)), conninfo, "-c", command], capture_output=True,
                          text=True, timeout=30, env={"PATH": os.environ["PATH"], "PGPASSFILE": "/nonexistent/pgpass"})


def attempts(emb: Embedded, os_user: str, marker: Path) -> list[subprocess.CompletedProcess]:
    """The payload as another OS user: as postgres over the socket, and over TCP without a password."""
    port = emb.env["PS_HEALTH_PORT"]
    payload = PAYLOAD.format(marker=marker)
    return [psql_as(os_user, f"host={emb.cluster.rundir} port={port} dbname=postgres user=postgres", payload),
            psql_as(os_user, f"host=127.0.0.1 port={port} dbname=postgres user=postgres", payload),
            psql_as(os_user, f"host=localhost port={port} dbname=ps_health user=postgres", payload)]


def test_db_up_twice_is_harmless_and_down_stops_it(embedded):
    dsn = embedded.cli("db", "up").stdout.strip()
    second = embedded.cli("db", "up")
    assert second.stdout.strip() == dsn
    assert "locked down" not in second.stderr and "tightened" not in second.stderr
    assert embedded.cli("db", "url").stdout.strip() == dsn
    with psycopg.connect(dsn) as c:
        assert c.execute("SHOW shared_preload_libraries").fetchone()[0] == "pg_cron"
        assert c.execute("SELECT count(*) FROM pg_extension WHERE extname = 'pg_cron'").fetchone()[0] == 1
    assert embedded.cli("db", "status").returncode == 0
    assert embedded.cli("db", "down").stdout.strip() == "stopped"
    status = embedded.cli("db", "status", ok=False)
    assert status.returncode == 1 and status.stdout.startswith("stopped")
    assert embedded.cli("db", "down").stdout.strip() == "not running"


@needs_root
def test_another_os_user_is_refused_and_runs_nothing_while_the_caller_and_password_logins_get_in(embedded):
    dsn = embedded.cli("db", "up").stdout.strip()
    marker = Path(f"/tmp/ps-health-pwned-{uuid.uuid4().hex[:8]}")
    for res in attempts(embedded, "nobody", marker):
        assert res.returncode != 0, f"another OS user got in: {res.stdout}"
        assert "Permission denied" in res.stderr or "no password supplied" in res.stderr, res.stderr
    assert not marker.exists(), "a command ran as the server's OS user"
    for folder in (embedded.cluster.home, embedded.cluster.rundir):
        assert stat.S_IMODE(folder.stat().st_mode) & 0o077 == 0, f"{folder} is open to other users"

    # The OS user who ran `db up` is the superuser over the socket, with the DSN `db url` prints.
    assert psql(embedded.cli("db", "url").stdout.strip(), "SELECT current_user").stdout.strip() == "postgres"
    # A login the operator creates with a password gets in, from any OS user, over TCP; without it, not.
    login, password = f"agent_{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(login), sql.Literal(password)))
    tcp = f"host=127.0.0.1 port={embedded.env['PS_HEALTH_PORT']} dbname=ps_health user={login}"
    assert psql_as("nobody", tcp, "SELECT current_user", password=password).stdout.strip() == login
    refused = psql_as("nobody", tcp, "SELECT current_user")
    assert refused.returncode != 0 and "no password supplied" in refused.stderr
    refused = psql_as("nobody", tcp, "SELECT current_user", password="wrong")
    assert refused.returncode != 0 and "password authentication failed" in refused.stderr


@needs_root
def test_a_cluster_left_open_by_trust_is_locked_on_the_next_db_up(embedded):
    embedded.cli("db", "up")
    # Put the cluster back the way clusters made before the lock-down were: trust, folders 0755.
    (embedded.cluster.pgdata / "pg_hba.conf").write_text(OPEN_HBA)
    for folder in (embedded.cluster.home, embedded.cluster.rundir):
        folder.chmod(0o755)
    embedded.cluster._run("pg_ctl", "reload", "-D", str(embedded.cluster.pgdata))
    before = Path(f"/tmp/ps-health-pwned-{uuid.uuid4().hex[:8]}")
    assert any(r.returncode == 0 for r in attempts(embedded, "nobody", before)), "the open cluster let nobody in"
    before.unlink(missing_ok=True)

    up = embedded.cli("db", "up")
    assert "locked down the embedded cluster" in up.stderr and "allowed trust" in up.stderr, up.stderr

    marker = Path(f"/tmp/ps-health-pwned-{uuid.uuid4().hex[:8]}")
    for res in attempts(embedded, "nobody", marker):
        assert res.returncode != 0, f"another OS user still got in: {res.stdout}"
    assert not marker.exists()
    assert psql(up.stdout.strip(), "SELECT current_user").stdout.strip() == "postgres"
    again = embedded.cli("db", "up")
    assert "locked down" not in again.stderr


def test_the_embedded_database_finds_the_schema_without_a_search_path(embedded):
    dsn = embedded.cli("db", "up").stdout.strip()
    embedded.cli("migrate")
    described = psql(dsn, r"\d ps_sessions", "-P", "pager=off")
    assert described.returncode == 0 and 'Table "ps_health.ps_sessions"' in described.stdout, described.stderr
    stalled = psql(dsn, "SELECT count(*) FROM get_stalled_spawns('x')")
    assert stalled.returncode == 0 and stalled.stdout.strip() == "0", stalled.stderr
