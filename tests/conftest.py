"""Shared fixtures: one PostgreSQL per run (local cluster, Docker, or PS_HEALTH_TEST_DSN), a clone per test."""

from __future__ import annotations

import os
import uuid

import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

from reactor.db.migrate import Runner
from tests import pg
from tests.support import run_cli

RUN_ID = uuid.uuid4().hex
# Fixtures of the tmux server and the reactors, registered once for every test module.
pytest_plugins = ("tests.tmux_server", "tests.reactor_proc")


def _docker_server():
    from testcontainers.postgres import PostgresContainer

    image = os.environ.get("PS_HEALTH_TEST_IMAGE", "postgres:15")
    container = PostgresContainer(image, username="postgres", password="postgres", dbname="postgres")
    container.with_command("postgres -c shared_preload_libraries=pg_cron -c cron.database_name=postgres")
    container.start()
    host, port = container.get_container_host_ip(), container.get_exposed_port(5432)
    return container, f"host={host} port={port} user=postgres password=postgres dbname=postgres"


@pytest.fixture(scope="session", autouse=True)
def private_state(tmp_path_factory):
    """Commands and reactors started by tests keep their host spool out of the real home folder."""
    os.environ["XDG_STATE_HOME"] = str(tmp_path_factory.mktemp("state"))


@pytest.fixture(scope="session")
def server():
    """(admin_dsn, cluster or None): the PostgreSQL every test of this run uses."""
    if os.environ.get("PS_HEALTH_TEST_DSN"):
        home = os.environ.get("PS_HEALTH_TEST_CLUSTER_HOME")
        cluster = None
        if home:
            from psycopg.conninfo import conninfo_to_dict

            from reactor.db.cluster import Cluster

            cluster = Cluster(home, int(conninfo_to_dict(os.environ["PS_HEALTH_TEST_DSN"])["port"]), fast=True)
        yield os.environ["PS_HEALTH_TEST_DSN"], cluster
        return
    if os.environ.get("PS_HEALTH_TEST_DOCKER") == "1" and pg.docker_reason() is None:
        container, dsn = _docker_server()
        yield dsn, None
        container.stop()
        return
    cluster = pg.start_cluster()
    yield make_conninfo(cluster.dsn("postgres")), cluster
    cluster.destroy()


@pytest.fixture(scope="session")
def admin_dsn(server) -> str:
    return server[0]


@pytest.fixture(scope="session")
def template_dsn(admin_dsn, request) -> str:
    """The migrated template each test's database is cloned from, made once per run."""
    if os.environ.get("PS_HEALTH_TEST_TEMPLATE"):  # the harness made it before the workers started
        return make_conninfo(admin_dsn, dbname=os.environ["PS_HEALTH_TEST_TEMPLATE"])
    run = getattr(request.config, "workerinput", {}).get("testrunuid") or RUN_ID
    return pg.template_once(admin_dsn, run)


@pytest.fixture
def db(admin_dsn, template_dsn):
    """DSN of a fresh, migrated database for this test only."""
    dsn = pg.clone(admin_dsn)
    yield dsn
    pg.drop(admin_dsn, dsn)


@pytest.fixture
def own_cluster():
    """A cluster of this test's own, locked like the embedded one: for a test that restarts its server
    or needs pg_cron's database to itself while other tests run beside it."""
    cluster = pg.start_cluster()
    yield cluster
    cluster.destroy()


def pytest_collection_modifyitems(items) -> None:
    """Tests that wait for pg_cron's minute tick start first, each on a worker of its own, so their
    waits overlap the other tests (worksteal hands each worker one contiguous slice at first)."""
    waits = [item for item in items if item.get_closest_marker("minutes")]
    rest = [item for item in items if not item.get_closest_marker("minutes")]
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    starts, start, left = [], 0, len(items)
    for w in range(workers):
        starts.append(start)
        start, left = start + left // (workers - w), left - left // (workers - w)
    for k, item in enumerate(waits):
        rest.insert(starts[k % workers], item)
    items[:] = rest


@pytest.fixture
def empty_db(admin_dsn):
    """DSN of a fresh database with nothing migrated."""
    dsn = pg.clone(admin_dsn, template="template0")
    yield dsn
    pg.drop(admin_dsn, dsn)


@pytest.fixture
def conn(db):
    """Autocommit connection to the test database, search_path ps_health."""
    with psycopg.connect(db, autocommit=True, row_factory=dict_row,
                         options="-c search_path=ps_health,public") as c:
        yield c

@pytest.fixture
def cron_db(admin_dsn):
    """pg_cron's own database on the test server, migrated; our jobs removed afterwards.
    (The jobs live in that one database: the only test that uses it is the scheduled sweep.)"""
    with psycopg.connect(admin_dsn) as c:
        name = c.execute("SELECT current_setting('cron.database_name', true)").fetchone()[0]
    if not name:
        pytest.skip("pg_cron is not preloaded on the test server")
    dsn = make_conninfo(admin_dsn, dbname=name)
    Runner(dsn, say=lambda _: None).migrate()
    yield dsn
    run_cli(dsn, "cron", "remove")
