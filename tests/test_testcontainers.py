"""The same schema build in a testcontainers PostgreSQL, when a Docker engine is reachable."""

from __future__ import annotations

import os

import psycopg
import pytest

from reactor.db.migrate import Runner
from tests.pg import docker_reason

REASON = docker_reason()


@pytest.mark.skipif(REASON is not None, reason=f"{REASON}: the tests use a local throw-away cluster instead")
def test_the_schema_builds_in_a_container_postgres():
    from testcontainers.postgres import PostgresContainer

    image = os.environ.get("PS_HEALTH_TEST_IMAGE", "postgres:15")
    with PostgresContainer(image, username="postgres", password="postgres", dbname="postgres") as pg:
        dsn = (f"host={pg.get_container_host_ip()} port={pg.get_exposed_port(5432)} "
               "user=postgres password=postgres dbname=postgres")
        runner = Runner(dsn, say=lambda _: None)
        runner.migrate()
        with psycopg.connect(dsn) as c:
            version = c.execute("SELECT max(version) FROM ps_health_meta.migrations").fetchone()[0]
    assert version == runner.latest
