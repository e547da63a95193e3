"""Throw-away PostgreSQL for tests: a local cluster (or PS_HEALTH_TEST_DSN), a migrated template, clones."""

from __future__ import annotations

import socket
import tempfile
import uuid

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from reactor.db.cluster import Cluster
from reactor.db.migrate import Runner

TEMPLATE = "ps_health_template"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_cluster() -> Cluster:
    """A fresh fast cluster in a temp folder, locked like the embedded one (the folder becomes 0700)."""
    home = tempfile.mkdtemp(prefix="ps-health-test-", dir="/tmp")
    cluster = Cluster(home, free_port(), fast=True)
    cluster.up()
    return cluster


def docker_reason() -> str | None:
    """None when a Docker engine is reachable, else why not."""
    try:
        import docker  # testcontainers' dependency

        docker.from_env().ping()
        return None
    except Exception as exc:  # any failure means: no engine here
        return f"no Docker engine reachable ({type(exc).__name__})"


def migrate_template(admin_dsn: str) -> str:
    """Create and migrate the template database once; return its DSN."""
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(TEMPLATE)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE)))
    dsn = make_conninfo(admin_dsn, dbname=TEMPLATE)
    Runner(dsn, say=lambda _: None).migrate()
    return dsn


def template_once(admin_dsn: str, run_id: str) -> str:
    """migrate_template, once per test run even when parallel workers all ask for it."""
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(hashtext('ps_health_test_template'))")
        try:
            made = conn.execute("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                                (TEMPLATE,)).fetchone()
            if made and made[0] == run_id:
                return make_conninfo(admin_dsn, dbname=TEMPLATE)
            dsn = migrate_template(admin_dsn)
            conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(TEMPLATE), sql.Literal(run_id)))
            return dsn
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtext('ps_health_test_template'))")


def clone(admin_dsn: str, template: str = TEMPLATE) -> str:
    """A fresh database cloned from the template; returns its DSN."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name),
                                                                     sql.Identifier(template)))
    return make_conninfo(admin_dsn, dbname=name)


def drop(admin_dsn: str, dsn: str) -> None:
    name = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
