"""`make test`: one throw-away cluster, pgTAP through pg_prove, then pytest against the same server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests import pg

ROOT = Path(__file__).resolve().parent.parent


def run_pgtap(admin_dsn: str) -> int:
    """Migrate a database, add pgTAP, and run pg_prove over tests/sql."""
    template_dsn = pg.migrate_template(admin_dsn)
    dsn = pg.clone(admin_dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pgtap")
    info = conninfo_to_dict(dsn)
    files = sorted(str(p) for p in (ROOT / "tests" / "sql").glob("*.sql"))
    cmd = ["pg_prove", "--ext", ".sql", "-d", info["dbname"], "-h", info["host"], "-p", str(info["port"]),
           "-U", info.get("user", "postgres"), *files]
    rc = subprocess.call(cmd)
    pg.drop(admin_dsn, dsn)
    del template_dsn
    return rc


def main(argv: list[str]) -> int:
    external = os.environ.get("PS_HEALTH_TEST_DSN")
    cluster = None
    if external:
        admin = external
    else:
        cluster = pg.start_cluster()
        admin = make_conninfo(cluster.dsn("postgres"))
        print(f"test cluster: {cluster.home} (port {cluster.port})", flush=True)
    try:
        what = argv[0] if argv else "all"
        rc = 0
        if what in ("all", "sql"):
            rc |= run_pgtap(admin)
        if what in ("all", "py"):
            env = dict(os.environ, PS_HEALTH_TEST_DSN=admin)
            if cluster:
                env["PS_HEALTH_TEST_CLUSTER_HOME"] = str(cluster.home)
            rc |= subprocess.call([sys.executable, "-m", "pytest", *argv[1:]], env=env, cwd=ROOT)
        return rc
    finally:
        if cluster:
            cluster.destroy()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
