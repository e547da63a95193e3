"""A regular install (`pip install .` into a fresh venv, as pipx would) works from any folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import psycopg
import pytest

from tests.support import ROOT


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The bin folder of a fresh venv holding ps-health installed from this checkout (not editable)."""
    where = tmp_path_factory.mktemp("install")
    venv, source = where / "venv", where / "source"
    # Built from a copy: a build writes build/ and an egg-info beside the sources, and another test worker
    # may be building at the same time.
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".agents", "build", "*.egg-info", "__pycache__", "tests", "bench", ".pytest_cache"))
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check", str(source)],
                         capture_output=True, text=True, timeout=900)
    assert pip.returncode == 0, pip.stderr[-3000:]
    return venv / "bin"


def _run(bin_dir, cwd, *args, dsn=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PS_HEALTH_", "PG", "PYTHON"))}
    if dsn:
        env["PS_HEALTH_DSN"] = dsn
    return subprocess.run([str(bin_dir / "ps-health"), *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=120)


def test_the_installed_package_is_not_the_checkout(installed, tmp_path):
    where = subprocess.run([str(installed / "python"), "-c", "import reactor; print(reactor.__file__)"],
                           capture_output=True, text=True, cwd=tmp_path, env={"PATH": os.environ["PATH"]})
    assert "site-packages" in where.stdout and str(ROOT) not in where.stdout, where


def test_it_migrates_drifts_and_prints_instructions_from_any_folder(installed, empty_db, tmp_path):
    migrated = _run(installed, tmp_path, "migrate", dsn=empty_db)
    assert migrated.returncode == 0 and "built the schema" in migrated.stdout, migrated.stderr
    status = _run(installed, tmp_path, "migrate", "status", dsn=empty_db)
    assert status.returncode == 0 and "current" in status.stdout, status.stderr
    drift = _run(installed, tmp_path, "drift", dsn=empty_db)
    assert drift.returncode == 0 and "no drift" in drift.stdout, drift.stdout + drift.stderr
    text = _run(installed, tmp_path, "instructions", "--project", "shop")
    assert text.returncode == 0 and "ps-health respond" in text.stdout and "shop" in text.stdout, text.stderr
    with psycopg.connect(empty_db) as c:
        assert c.execute("SELECT count(*) FROM pg_proc WHERE pronamespace = 'ps_health'::regnamespace").fetchone()[0]


def test_it_installs_the_pg_cron_jobs_from_any_folder(installed, own_cluster, tmp_path):
    dsn = own_cluster.dsn()
    assert _run(installed, tmp_path, "migrate", dsn=dsn).returncode == 0
    done = _run(installed, tmp_path, "cron", "install", dsn=dsn)
    assert done.returncode == 0, done.stderr
    with psycopg.connect(dsn) as c:
        names = [r[0] for r in c.execute("SELECT jobname FROM cron.job ORDER BY 1")]
    assert names == ["ps_health_prune", "ps_health_sweep"]
