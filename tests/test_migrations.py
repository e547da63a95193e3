"""The schema runner: a fresh build, pre-release databases brought forward, code reloads, adopt, drift."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile

import psycopg
import pytest

from reactor.db import drift as schemadiff
from reactor.db import migrate
from reactor.db.queries import SQL_DIR
from reactor.errors import BadInput, MigrationError
from tests.support import CLI, ROOT, run_cli

# The pre-release migrations 0001-0006 as they shipped, to make databases as they left them.
PRE_RELEASE = ROOT / "tests" / "fixtures" / "pre_release_migrations.tar.gz"
# The newest version: the number of the last delta in sql/migrations/.
LATEST = migrate.discover()[-1].version


def quiet(dsn, files=None, schema=None):
    return migrate.Runner(dsn, files=files, schema=schema, say=lambda _: None)


def recorded(dsn) -> list[tuple]:
    with psycopg.connect(dsn) as c:
        return c.execute("SELECT version, how FROM ps_health_meta.migrations ORDER BY version").fetchall()


def load_legacy(dsn) -> None:
    """A database exactly as the pre-release runner left it: each file in order, privileges, a record."""
    with tarfile.open(PRE_RELEASE) as tar, psycopg.connect(dsn, autocommit=True) as c:
        c.execute("CREATE SCHEMA ps_health_meta; CREATE TABLE ps_health_meta.migrations (version integer PRIMARY "
                  "KEY, name text NOT NULL, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(), "
                  "duration_ms numeric(12,3) NOT NULL, adopted boolean NOT NULL DEFAULT false)")
        for member in sorted(tar.getmembers(), key=lambda m: m.name):
            body = tar.extractfile(member).read()
            with c.transaction():
                c.execute(body.decode())
                if c.execute("SELECT to_regprocedure('ps_health._apply_privileges()')").fetchone()[0]:
                    c.execute("SELECT ps_health._apply_privileges()")
                c.execute("INSERT INTO ps_health_meta.migrations (version, name, checksum, duration_ms) "
                          "VALUES (%s, %s, %s, 1)", (int(member.name[:4]), member.name,
                                                     hashlib.sha256(body).hexdigest()))


def function_source(dsn, name: str) -> str:
    with psycopg.connect(dsn) as c:
        return c.execute("SELECT prosrc FROM pg_proc WHERE proname = %s AND pronamespace = 'ps_health'::regnamespace",
                         (name,)).fetchone()[0]


def test_schema_and_migration_files_follow_the_naming_convention():
    schema = migrate.Schema(SQL_DIR / "schema")
    assert schema.state() and schema.code(), "the schema has tables and code"
    assert all(int(p.name[:2]) < migrate.FIRST_CODE_FILE for p in schema.state())
    files = migrate.discover()
    assert [f.version for f in files] == list(range(max(migrate.LEGACY) + 1, max(migrate.LEGACY) + 1 + len(files)))


def test_badly_named_migration_is_refused(tmp_path):
    (tmp_path / "0007_declared_schema.sql").write_text("SELECT 1;")
    (tmp_path / "8_Oops.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="8_Oops.sql"):
        migrate.discover(tmp_path)
    (tmp_path / "8_Oops.sql").unlink()
    (tmp_path / "0003_again.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="pre-release"):
        migrate.discover(tmp_path)


def test_a_fresh_database_is_built_from_the_schema_and_stamped(empty_db):
    done = quiet(empty_db).migrate()
    assert done and done[0].startswith(f"built the schema (version {LATEST})")
    assert recorded(empty_db) == [(v, "schema") for v in range(7, LATEST + 1)]
    assert quiet(empty_db).migrate() == [], "a second run has nothing to do"
    states = {row["name"]: row["state"] for row in quiet(empty_db).status()}
    assert states["0007_declared_schema.sql"] == "applied"
    assert states["code (functions, views, triggers)"] == "current"


def test_a_pre_release_database_plus_the_deltas_equals_a_fresh_one(empty_db, db):
    load_legacy(empty_db)
    with psycopg.connect(empty_db) as c:
        c.execute("SET search_path = ps_health")
        c.execute("INSERT INTO ps_sessions (project, host, tmux_target) VALUES ('kept', 'h1', '%1')")
        c.execute("INSERT INTO settings (key, project, value) VALUES ('stall_after', 'kept', '20 minutes')")
    done = quiet(empty_db).migrate()
    assert done[0].startswith("applied 0007_declared_schema.sql") and done[-1].startswith("reloaded the code")
    assert schemadiff.diff(empty_db, db) == ""
    assert schemadiff.diff(db, empty_db) == ""
    assert [v for v, _ in recorded(empty_db)] == list(range(1, LATEST + 1))
    with psycopg.connect(empty_db) as c:
        c.execute("SET search_path = ps_health")
        assert c.execute("SELECT host, tmux_target FROM ps_sessions WHERE project = 'kept'").fetchone() == ("h1", "%1")
        assert c.execute("SELECT setting('stall_after', 'kept')").fetchone()[0] == "20 minutes"


def test_remove_then_build_again_leaves_no_difference(empty_db, db):
    runner = quiet(empty_db)
    runner.migrate()
    assert runner.migrate(to=0)
    with psycopg.connect(empty_db) as c:
        left = c.execute("SELECT count(*) FROM pg_namespace WHERE nspname IN ('ps_health', 'ps_health_meta')")
        assert left.fetchone()[0] == 0, "--to 0 removes the schema and its records"
    runner.migrate()
    assert schemadiff.diff(empty_db, db) == ""


def test_an_older_target_version_is_refused_with_the_choices(empty_db):
    quiet(empty_db).migrate()
    with pytest.raises(BadInput, match=f"version {LATEST} .* or removed with --to 0"):  # bad usage: the CLI exits 2
        quiet(empty_db).migrate(to=3)


def test_changed_code_is_reloaded_in_place_without_a_migration(empty_db, tmp_path):
    folder = tmp_path / "schema"
    shutil.copytree(SQL_DIR / "schema", folder)
    quiet(empty_db, schema=migrate.Schema(folder)).migrate()
    changed = folder / "21_input.sql"
    changed.write_text(changed.read_text().replace(
        "SELECT floor(extract(epoch FROM p_to - p_from) / 60)::integer",
        "SELECT floor(extract(epoch FROM p_to - p_from) / 60)::integer  -- reloaded"))
    assert "reloaded" not in function_source(empty_db, "_minutes")
    done = quiet(empty_db, schema=migrate.Schema(folder)).migrate()
    assert done == [done[0]] and done[0].startswith("reloaded the code")
    assert "-- reloaded" in function_source(empty_db, "_minutes")
    assert quiet(empty_db, schema=migrate.Schema(folder)).migrate() == []
    with psycopg.connect(empty_db) as c:
        definer = c.execute("SELECT prosecdef FROM pg_proc WHERE proname = 'register_session'").fetchone()[0]
    assert definer, "privileges are applied again after a reload"


def profiles_version(dsn) -> str:
    with psycopg.connect(dsn) as c:
        return c.execute("SELECT ps_health._profiles_version()").fetchone()[0]


def test_a_reload_of_the_code_is_a_new_version_of_the_agent_profiles_a_reactor_is_sent_again(empty_db, tmp_path):
    # the functions that hand out the profiles and the marker may have changed: a reactor holding the version from
    # before the upgrade must not keep using what it holds
    folder = tmp_path / "schema"
    shutil.copytree(SQL_DIR / "schema", folder)
    quiet(empty_db, schema=migrate.Schema(folder)).migrate()
    before = profiles_version(empty_db)
    assert quiet(empty_db, schema=migrate.Schema(folder)).migrate() == []
    assert profiles_version(empty_db) == before, "nothing loaded: the same version"
    changed = folder / "54_panes.sql"
    changed.write_text(changed.read_text() + "\n-- changed\n")
    quiet(empty_db, schema=migrate.Schema(folder)).migrate()
    assert profiles_version(empty_db) != before


def test_a_reload_refuses_to_drop_what_others_built_on_the_code(empty_db, tmp_path):
    folder = tmp_path / "schema"
    shutil.copytree(SQL_DIR / "schema", folder)
    quiet(empty_db, schema=migrate.Schema(folder)).migrate()
    with psycopg.connect(empty_db) as c:
        c.execute("CREATE VIEW public.my_targets AS SELECT project FROM ps_health.active_monitoring_targets")
    (folder / "21_input.sql").write_text((folder / "21_input.sql").read_text() + "\n-- changed\n")
    with pytest.raises(MigrationError, match="view my_targets depends on"):
        quiet(empty_db, schema=migrate.Schema(folder)).migrate()
    with psycopg.connect(empty_db) as c:
        assert c.execute("SELECT count(*) FROM public.my_targets").fetchone()[0] == 0, "nothing was dropped"


def test_a_changed_delta_is_refused_and_a_failing_one_changes_nothing(empty_db, tmp_path):
    folder = tmp_path / "migrations"
    shutil.copytree(SQL_DIR / "migrations", folder)
    load_legacy(empty_db)
    quiet(empty_db, migrate.discover(folder)).migrate()
    delta = folder / "0007_declared_schema.sql"
    delta.write_text(delta.read_text() + "\n-- edited after it was applied\n")
    with pytest.raises(MigrationError, match="checksum differs"):
        quiet(empty_db, migrate.discover(folder)).migrate()
    delta.write_text((SQL_DIR / "migrations" / delta.name).read_text())
    broken = "ALTER TABLE ps_health.mutes ADD COLUMN note text;\nSELECT 1/0;\n"
    (folder / f"{LATEST + 1:04d}_broken.sql").write_text(broken)
    with pytest.raises(MigrationError, match="rolled back.*division by zero"):
        quiet(empty_db, migrate.discover(folder)).migrate()
    assert [v for v, _ in recorded(empty_db)][-1] == LATEST
    with psycopg.connect(empty_db) as c:
        assert c.execute("SELECT count(*) FROM information_schema.columns WHERE table_name = 'mutes' "
                         "AND column_name = 'note'").fetchone()[0] == 0


def test_a_delta_creates_a_new_table_as_declared_and_refuses_one_not_declared(empty_db, tmp_path):
    folder = tmp_path / "migrations"
    shutil.copytree(SQL_DIR / "migrations", folder)
    load_legacy(empty_db)
    new_table = folder / f"{LATEST + 1:04d}_new_table.sql"
    new_table.write_text("-- create table: ps_health.no_such_table\n")
    with pytest.raises(MigrationError, match="rolled back.*declares table ps_health.no_such_table"):
        quiet(empty_db, migrate.discover(folder)).migrate()
    with psycopg.connect(empty_db) as c:
        assert c.execute("SELECT max(version) FROM ps_health_meta.migrations").fetchone()[0] == 6, "nothing applied"
    new_table.unlink()
    quiet(empty_db, migrate.discover(folder)).migrate()
    with psycopg.connect(empty_db) as c:  # 0007 created it from 12_access_tables.sql: the declared columns
        assert [r[0] for r in c.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = "
                                        "'ps_health' AND table_name = 'reactor_hosts' ORDER BY ordinal_position")] \
            == ["login", "host"]


def test_dry_run_changes_nothing(empty_db):
    res = run_cli(empty_db, "migrate", "--dry-run")
    assert res.returncode == 0, res.stderr
    assert f"would build the schema (version {LATEST})" in res.stdout
    with psycopg.connect(empty_db) as c:
        assert c.execute("SELECT to_regclass('ps_health_meta.migrations')").fetchone()[0] is None
        assert c.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'ps_health'").fetchone()[0] == 0


def test_status_lists_versions_and_the_code(empty_db):
    load_legacy(empty_db)
    res = run_cli(empty_db, "migrate", "status")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert [line.split()[1] for line in lines[:6]] == list(migrate.LEGACY.values())
    assert "pre-release migration" in lines[0]
    assert lines[6].startswith("pending") and "0007_declared_schema.sql" in lines[6]
    assert run_cli(empty_db, "migrate").returncode == 0
    lines = run_cli(empty_db, "migrate", "status").stdout.splitlines()
    assert lines[6].startswith("applied") and lines[-1].startswith("current")


def test_two_migrate_processes_build_once(empty_db):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PS_HEALTH_")}
    env.update(PS_HEALTH_DSN=empty_db, PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen([*CLI, "migrate"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    built = [line for out, _ in outs for line in out.splitlines() if line.startswith("built")]
    assert len(built) == 1, outs
    assert sorted(out.strip() for out, _ in outs)[1] == "up to date"
    assert recorded(empty_db) == [(v, "schema") for v in range(7, LATEST + 1)]


def test_hand_made_schema_is_refused_then_adopted_only_when_equal(empty_db):
    with psycopg.connect(empty_db) as c:
        migrate.build(c, migrate.Schema(SQL_DIR / "schema"))
        c.execute("ALTER TABLE ps_health.ps_sessions ADD COLUMN notes text")
    refused = run_cli(empty_db, "migrate")
    assert refused.returncode == 1
    assert "no migration is recorded" in refused.stderr and "--adopt" in refused.stderr
    mismatch = run_cli(empty_db, "migrate", "--adopt")
    assert mismatch.returncode == 1
    assert "does not equal the declared schema" in mismatch.stderr and "notes" in mismatch.stderr
    with psycopg.connect(empty_db) as c:
        assert c.execute("SELECT to_regclass('ps_health_meta.migrations')").fetchone()[0] is None
        c.execute("ALTER TABLE ps_health.ps_sessions DROP COLUMN notes")
    adopted = run_cli(empty_db, "migrate", "--adopt")
    assert adopted.returncode == 0, adopted.stderr
    assert f"equals the declared schema (version {LATEST})" in adopted.stdout
    assert recorded(empty_db) == [(LATEST, "adopted")]
    assert run_cli(empty_db, "migrate").stdout.strip() == "up to date"


def test_drift_is_zero_on_a_migrated_database_and_shows_the_fix_otherwise(db):
    clean = run_cli(db, "drift")
    assert clean.returncode == 0, clean.stderr
    with psycopg.connect(db) as c:
        c.execute("ALTER TABLE ps_health.health_checks ADD COLUMN hand_added integer")
    drifted = run_cli(db, "drift")
    assert drifted.returncode == 2
    assert 'drop column "hand_added"' in drifted.stdout


def test_a_migration_lock_held_by_another_login_ends_the_wait_naming_it(empty_db):
    """Any login may take the runner's advisory lock; migrate waits --wait seconds, then names who holds it."""
    with psycopg.connect(empty_db, autocommit=True, application_name="squatter") as squatter:
        squatter.execute("SELECT pg_advisory_lock(hashtext('ps_health.migrate'))")
        res = run_cli(empty_db, "migrate", "--wait", "0.5")
        assert res.returncode == 1, res
        assert (f"another session holds the migration lock (pid {squatter.info.backend_pid}, login postgres, "
                "'squatter') after 0.5 s of waiting") in res.stderr
        assert "waiting up to 0.5 s for another session's migration lock" in res.stderr
        assert "Traceback" not in res.stderr
        with psycopg.connect(empty_db) as c:
            assert c.execute("SELECT to_regclass('ps_health_meta.migrations')").fetchone()[0] is None
    assert run_cli(empty_db, "migrate").returncode == 0  # the lock gone, it builds
    assert "--wait: must be from 0 to 86400 seconds" in run_cli(empty_db, "migrate", "--wait", "-1").stderr


def test_a_reactor_running_through_the_upgrade_to_0010_still_counts_as_running(empty_db):
    quiet(empty_db).migrate()
    with psycopg.connect(empty_db, autocommit=True) as c:  # back to version 9's tables
        c.execute("DROP TABLE ps_health.locks, ps_health.profiles_version; "
                  "ALTER TABLE ps_health.reactors DROP COLUMN listener_name; "
                  "DELETE FROM ps_health_meta.migrations WHERE version >= 10")
    with psycopg.connect(empty_db, autocommit=True, application_name="ps-health-reactor:listen") as listener:
        with psycopg.connect(empty_db, autocommit=True) as c:  # as reactor_start of version 9 left its row
            c.execute("INSERT INTO ps_health.reactors (worker, host, last_seen, login, backend_pid, started_at) "
                      "VALUES ('h1:1', 'h1', now(), current_user, %s, now())", (listener.info.backend_pid,))
        quiet(empty_db).migrate()
        with psycopg.connect(empty_db, autocommit=True) as c:
            assert c.execute("SELECT worker FROM ps_health._live_reactors()").fetchall() == [("h1:1",)]
            with pytest.raises(psycopg.errors.LockNotAvailable, match='already running: worker "h1:1"'):
                c.execute("SELECT ps_health.reactor_start('h1', 'h1:2')")


def test_a_table_another_session_keeps_locked_rolls_the_migration_back_after_wait_saying_why(empty_db):
    quiet(empty_db).migrate()
    with psycopg.connect(empty_db, autocommit=True) as c:  # back to version 9's tables: 0010 changes reactors
        c.execute("DROP TABLE ps_health.locks, ps_health.profiles_version; "
                  "ALTER TABLE ps_health.reactors DROP COLUMN listener_name; "
                  "DELETE FROM ps_health_meta.migrations WHERE version >= 10")
    with psycopg.connect(empty_db) as reader:  # e.g. a dashboard's transaction left open after a read
        reader.execute("SELECT count(*) FROM ps_health.reactors")
        res = run_cli(empty_db, "migrate", "--wait", "1")
        assert res.returncode == 1, res
        assert "migrating failed and was rolled back: canceling statement due to lock timeout" in res.stderr
        assert "another session holds a lock on a table or view the migration changes" in res.stderr
    assert [v for v, _ in recorded(empty_db)][-1] == 9
    assert run_cli(empty_db, "migrate").returncode == 0
