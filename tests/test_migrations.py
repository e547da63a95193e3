"""The migration runner: order, equality with the declared schema, rollback, checksums, locking, adopt."""

from __future__ import annotations

import shutil
import subprocess

import psycopg
import pytest

from reactor import migrate, schemadiff
from reactor.errors import MigrationError
from reactor.sqlfiles import SQL_DIR
from tests.conftest import CLI, ROOT, run_cli


def quiet(dsn, files=None):
    return migrate.Runner(dsn, files=files, say=lambda _: None)


def recorded(dsn) -> list[int]:
    with psycopg.connect(dsn) as c:
        return [r[0] for r in c.execute("SELECT version FROM ps_health_meta.migrations ORDER BY version")]


def test_migration_file_names_follow_convention():
    names = sorted(p.name for p in (SQL_DIR / "migrations").iterdir())
    files = migrate.discover()
    assert files, "no migrations found"
    assert [f.version for f in files] == list(range(1, len(files) + 1)), "versions must be 1..N without gaps"
    for name in names:
        assert migrate.UP_NAME.match(name) or migrate.DOWN_NAME.match(name), name


def test_badly_named_migration_is_refused(tmp_path):
    (tmp_path / "0001_seed.sql").write_text("SELECT 1;")
    (tmp_path / "1_Oops.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="1_Oops.sql"):
        migrate.discover(tmp_path)


def test_migrations_applied_in_order_equal_declared_schema(db):
    with schemadiff.scratch_database(db) as declared:
        schemadiff.load_files(declared, migrate.declared_schema_files())
        assert schemadiff.diff(db, declared) == ""
        assert schemadiff.diff(declared, db) == ""


def test_up_down_up_leaves_no_difference(empty_db, db):
    runner = quiet(empty_db)
    runner.migrate()
    runner.migrate(to=0)
    with psycopg.connect(empty_db) as c:
        left = c.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'ps_health'").fetchone()[0]
    assert left == 0, "rolling back to 0 must remove the ps_health schema"
    assert recorded(empty_db) == []
    runner.migrate()
    assert schemadiff.diff(empty_db, db) == ""


def test_each_down_step_leaves_the_schema_of_the_version_below(empty_db, admin_dsn):
    runner = quiet(empty_db)
    runner.migrate()
    for f in reversed(migrate.discover()[1:]):
        runner.migrate(to=f.version - 1)
        assert recorded(empty_db) == list(range(1, f.version))
        with schemadiff.scratch_database(admin_dsn) as reference:
            quiet(reference).migrate(to=f.version - 1)
            assert schemadiff.diff(empty_db, reference) == "", f"rolling back {f.name} left a difference"


def test_changed_checksum_is_refused(empty_db, tmp_path):
    folder = tmp_path / "migrations"
    shutil.copytree(SQL_DIR / "migrations", folder)
    quiet(empty_db, migrate.discover(folder)).migrate()
    first = folder / "0001_seed.sql"
    first.write_text(first.read_text() + "\n-- edited after it was applied\n")
    with pytest.raises(MigrationError, match="checksum differs"):
        quiet(empty_db, migrate.discover(folder)).migrate()


def test_dry_run_changes_nothing(empty_db):
    res = run_cli(empty_db, "migrate", "--dry-run")
    assert res.returncode == 0, res.stderr
    assert "would apply 0001_seed.sql" in res.stdout
    with psycopg.connect(empty_db) as c:
        assert c.execute("SELECT to_regclass('ps_health_meta.migrations')").fetchone()[0] is None
        assert c.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'ps_health'").fetchone()[0] == 0


def test_status_lists_applied_and_pending(empty_db):
    quiet(empty_db).migrate(to=1)
    res = run_cli(empty_db, "migrate", "status")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith("applied") and "0001_seed.sql" in lines[0]
    assert all(line.startswith("pending") for line in lines[1:])
    assert len(lines) == len(migrate.discover())


def test_two_migrate_processes_apply_each_file_once(empty_db):
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("PS_HEALTH_")}
    env.update(PS_HEALTH_DSN=empty_db, PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen([*CLI, "migrate"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    applied_lines = [line for out, _ in outs for line in out.splitlines() if line.startswith("applied")]
    assert len(applied_lines) == len(migrate.discover()), outs
    assert recorded(empty_db) == [f.version for f in migrate.discover()]


def test_hand_made_schema_is_refused_then_adopted_only_when_equal(empty_db):
    seed = (SQL_DIR / "migrations" / "0001_seed.sql").read_text()
    with psycopg.connect(empty_db) as c:
        c.execute(seed)
        c.execute("ALTER TABLE ps_health.ps_sessions ADD COLUMN notes text")
    refused = run_cli(empty_db, "migrate")
    assert refused.returncode == 1
    assert "no migration is recorded" in refused.stderr and "--adopt" in refused.stderr
    mismatch = run_cli(empty_db, "migrate", "--adopt")
    assert mismatch.returncode == 1
    assert "matches no migration" in mismatch.stderr and "notes" in mismatch.stderr
    with psycopg.connect(empty_db) as c:
        assert c.execute("SELECT count(*) FROM ps_health_meta.migrations").fetchone()[0] == 0
        c.execute("ALTER TABLE ps_health.ps_sessions DROP COLUMN notes")
    adopted = run_cli(empty_db, "migrate", "--adopt")
    assert adopted.returncode == 0, adopted.stderr
    assert "equals migrations up to 0001_seed.sql" in adopted.stdout
    with psycopg.connect(empty_db) as c:
        rows = c.execute("SELECT version, adopted FROM ps_health_meta.migrations ORDER BY 1").fetchall()
    assert rows[0] == (1, True)
    assert [r[0] for r in rows] == [f.version for f in migrate.discover()]


def test_drift_is_zero_on_a_migrated_database_and_shows_the_fix_otherwise(db):
    clean = run_cli(db, "drift")
    assert clean.returncode == 0, clean.stderr
    with psycopg.connect(db) as c:
        c.execute("ALTER TABLE ps_health.health_checks ADD COLUMN hand_added integer")
    drifted = run_cli(db, "drift")
    assert drifted.returncode == 2
    assert 'drop column "hand_added"' in drifted.stdout
