"""`cron install|remove|status`: the pg_cron jobs that sweep every minute and prune daily."""

from __future__ import annotations

import argparse
import re

from psycopg.conninfo import make_conninfo

from reactor import db
from reactor.cli.util import print_json
from reactor.db.queries import PG_CRON_DIR
from reactor.errors import PsHealthError

JOBS_FILE = PG_CRON_DIR / "jobs.sql"
_JOB = re.compile(r"^--\s*name:\s*(\S+)\s*\n(.+?)(?=^--\s*name:|\Z)", re.MULTILINE | re.DOTALL)


def register(sub) -> None:
    cron = sub.add_parser("cron", help="install, remove or show the pg_cron jobs",
                          description="Schedule the sweep (every minute) and the retention prune (daily) with "
                                      "pg_cron, idempotently by job name. Without pg_cron (some hosted databases) "
                                      "run the reactor with --run-checks-every 60 instead.")
    csub = cron.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, text in (("install", "schedule the jobs (again: harmless)"),
                       ("remove", "unschedule the jobs"),
                       ("status", "list the jobs and their last run")):
        p = csub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".",
                            epilog=f"examples:\n  ps-health cron {name}" + ("\n  ps-health cron status --json"
                                                                             if name == "status" else ""),
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("--json", action="store_true", help="print JSON") if name == "status" else None
        p.set_defaults(func=_cron)


def jobs_in_file() -> dict[str, str]:
    """Job name -> the one statement that schedules it, from pg_cron/jobs.sql."""
    return {m[1]: m[2].strip() for m in _JOB.finditer(JOBS_FILE.read_text())}


def cron_connection(dsn: str):
    """A connection to pg_cron's database and the name of the ps-health database."""
    with db.connect(dsn, autocommit=True) as conn:
        row = db.fetch_one(conn, "cron", "cron_database")
    if not row["cron_database"]:
        raise PsHealthError("pg_cron is not loaded on this server (shared_preload_libraries); "
                            "run the reactor with --run-checks-every 60 to sweep without it")
    cron_dsn = dsn if row["cron_database"] == row["database"] else make_conninfo(dsn, dbname=row["cron_database"])
    conn = db.connect(cron_dsn, autocommit=True)
    if not db.fetch_one(conn, "cron", "has_pg_cron")["installed"]:
        conn.close()
        raise PsHealthError(f"the pg_cron extension is not created in database {row['cron_database']!r}: "
                            "run CREATE EXTENSION pg_cron there")
    return conn, row["database"]


def _cron(args: argparse.Namespace, cfg) -> int:
    conn, database = cron_connection(cfg.require_dsn())
    with conn, db.mapped_errors():
        if args.action == "install":
            for name, statement in jobs_in_file().items():
                conn.execute(statement, {"database": database})
                print(f"scheduled {name}")
        elif args.action == "remove":
            removed = len(db.fetch(conn, "cron", "unschedule", {"database": database}))
            print(f"removed {removed} job(s)")
        else:
            rows = db.fetch(conn, "cron", "jobs", {"database": database})
            if args.json:
                print_json(rows)
            elif not rows:
                print("no ps-health jobs scheduled (ps-health cron install)")
            for row in [] if args.json else rows:
                last = (f"last run {row['last_start']:%Y-%m-%d %H:%M:%S} {row['last_status']}" if row["last_start"]
                        else "not run yet")
                print(f"{row['jobname']:18} {row['schedule']:12} {'active' if row['active'] else 'inactive':8} {last}")
    return 0
