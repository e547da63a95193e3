"""`db`, `migrate` and `drift`: the embedded cluster and the schema's life cycle."""

from __future__ import annotations

import argparse
import sys
import textwrap

from reactor.cli.util import print_json
from reactor.db import cluster as cluster_mod
from reactor.db import migrate as migrate_mod
from reactor.errors import BadInput


def register(sub) -> None:
    db = sub.add_parser("db", help="manage the embedded PostgreSQL cluster",
                        description="Manage the embedded PostgreSQL cluster (pg_cron preloaded) under "
                                    "PS_HEALTH_HOME (default ./.ps-health), port PS_HEALTH_PORT (54329). It is "
                                    "locked: only the OS user who runs `db up` logs in (as postgres, over the "
                                    "socket in a 0700 folder); every other login needs its password.")
    dsub = db.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, text in (("up", "create if needed, lock, start, wait until it accepts connections, print the DSN"),
                       ("down", "stop the cluster cleanly"),
                       ("status", "say whether it runs, where its data and socket are"),
                       ("url", "print the DSN (libpq conninfo)")):
        p = dsub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".",
                            epilog=f"examples:\n  ps-health db {name}" + {
                                "up": "\n  PS_HEALTH_HOME=~/.ps-health PS_HEALTH_PORT=54330 ps-health db up",
                                "status": "\n  ps-health db status --json",
                                "url": "\n  export PS_HEALTH_DSN=\"$(ps-health db url)\""}.get(name, ""),
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        if name == "status":
            p.add_argument("--json", action="store_true", help="print JSON")
        p.set_defaults(func=_db)

    mig = sub.add_parser("migrate", help="build or bring forward the database schema, or list its versions",
                         description=textwrap.fill(
                             "Build the declared schema (sql/schema) on a database that has none, or bring an "
                             "older one forward: the deltas in sql/migrations in order, then the functions, views "
                             "and triggers reloaded from sql/schema whenever they changed. All in one "
                             "transaction, recorded in ps_health_meta.", 88),
                         epilog="examples:\n  ps-health migrate\n  ps-health migrate status\n"
                                "  ps-health migrate --dry-run\n  ps-health migrate --wait 10",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    mig.add_argument("action", nargs="?", choices=["status"], help="`status` lists versions and the code")
    mig.add_argument("--to", type=int, metavar="N",
                     help="0 removes the ps_health schema and its records (the roles stay)")
    mig.add_argument("--dry-run", action="store_true", help="print what would run, change nothing")
    mig.add_argument("--adopt", action="store_true",
                     help="when ps_health exists with nothing recorded, record it as current if it equals "
                          "the declared schema (checked with a schema diff)")
    mig.add_argument("--json", action="store_true", help="print `status` as JSON")
    mig.add_argument("--wait", type=float, default=120.0, metavar="SECONDS",
                     help="how long to wait for another session's migration lock before giving up, naming "
                          "it (default 120)")
    mig.set_defaults(func=_migrate)

    drift = sub.add_parser("drift", help="diff the live schema against the declared one",
                           description=textwrap.fill("Compare the live ps_health schema with sql/schema (migra). "
                                                     "Exit 0 when equal, 2 when different (prints the SQL that "
                                                     "would reconcile them).", 88),
                           epilog="examples:\n  ps-health drift\n  PS_HEALTH_DSN=postgresql://… ps-health drift",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    drift.set_defaults(func=_drift)


def _db(args: argparse.Namespace, cfg) -> int:
    cluster = cluster_mod.Cluster.from_config(cfg)
    if args.action == "up":
        print(cluster.up())
    elif args.action == "down":
        print("stopped" if cluster.down() else "not running")
    elif args.action == "url":
        print(cluster.dsn())
    else:
        status = cluster.status()
        if args.json:
            print_json(status)
        else:
            print(f"{'running' if status['running'] else 'stopped'}: data {status['pgdata']}, "
                  f"socket {status['socket_dir']}, port {status['port']}, log {status['log']}")
        return 0 if status["running"] else 1
    return 0


def _migrate(args: argparse.Namespace, cfg) -> int:
    if not 0 <= args.wait <= 86400:
        raise BadInput(f"--wait: must be from 0 to 86400 seconds, got {args.wait:g}")
    runner = migrate_mod.Runner(cfg.require_dsn(), lock_wait=args.wait)
    if args.action == "status":
        rows = runner.status()
        if args.json:
            print_json(rows)
        hows = {"schema": "built from sql/schema", "delta": "applied", "adopted": "adopted",
                "applied": "pre-release migration"}
        for row in [] if args.json else rows:
            when = f"{row['applied_at']:%Y-%m-%d %H:%M:%S} ({row['duration_ms']:.1f} ms)" if row["applied_at"] else ""
            how = hows.get(row["how"] or "", "")
            print(f"{row['state']:8} {row['name']:40} {when}{'  ' + how if how and row['applied_at'] else ''}")
        return 0
    done = runner.migrate(to=args.to, dry_run=args.dry_run, adopt=args.adopt)
    if not done:
        print("up to date")
    return 0


def _drift(args: argparse.Namespace, cfg) -> int:
    sql = migrate_mod.drift(cfg.require_dsn())
    if not sql:
        print("no drift: the live schema equals sql/schema")
        return 0
    sys.stdout.write(sql + "\n")
    return 2
