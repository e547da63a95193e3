"""`ps-health db up|status|url|down` on a real embedded cluster."""

from __future__ import annotations

import os

import psycopg

from tests.conftest import run_cli
from tests.pg import free_port


def test_db_up_twice_is_harmless_and_down_stops_it(tmp_path_factory):
    home = tmp_path_factory.mktemp("embedded", numbered=True)
    os.chmod(home, 0o755)
    env = {"PS_HEALTH_HOME": str(home), "PS_HEALTH_PORT": str(free_port())}
    try:
        first = run_cli(None, "db", "up", env=env, timeout=120)
        assert first.returncode == 0, first.stderr
        dsn = first.stdout.strip()
        second = run_cli(None, "db", "up", env=env, timeout=120)
        assert second.returncode == 0, second.stderr
        assert second.stdout.strip() == dsn
        assert run_cli(None, "db", "url", env=env).stdout.strip() == dsn
        with psycopg.connect(dsn) as c:
            assert c.execute("SHOW shared_preload_libraries").fetchone()[0] == "pg_cron"
            assert c.execute("SELECT count(*) FROM pg_extension WHERE extname = 'pg_cron'").fetchone()[0] == 1
        assert run_cli(None, "db", "status", env=env).returncode == 0
        down = run_cli(None, "db", "down", env=env, timeout=120)
        assert down.returncode == 0 and down.stdout.strip() == "stopped"
        status = run_cli(None, "db", "status", env=env)
        assert status.returncode == 1 and status.stdout.startswith("stopped")
        assert run_cli(None, "db", "down", env=env).stdout.strip() == "not running"
    finally:
        run_cli(None, "db", "down", env=env, timeout=120)
