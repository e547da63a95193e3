"""Sweep cost: 1,000 sessions and 10,000 running spawns, with 0 / 100k / 1M rows of history."""

from __future__ import annotations

import statistics
import time

import psycopg
from psycopg.conninfo import make_conninfo

from tests import pg

T0 = "2026-01-01 12:00+00"
SESSIONS, SPAWNS, SWEEPS = 1_000, 10_000, 20
FLOOD = 8_000


def populate(conn) -> None:
    conn.execute("SELECT ps_health.register_session('p' || i, 'cli', '%%' || i, 'bench-host', NULL, NULL, %s)"
                 " FROM generate_series(1, %s) i", (T0, SESSIONS))
    conn.execute("SELECT ps_health.report_context('p' || i, 40, NULL, NULL, %s) FROM generate_series(1, %s) i",
                 (T0, SESSIONS))
    conn.execute("SELECT ps_health.start_spawn('p' || (i %% %s + 1), 't' || i, 'research', NULL, '/tmp/out' || i,"
                 " NULL, 'bench-host', %s) FROM generate_series(1, %s) i", (SESSIONS, T0, SPAWNS))
    conn.execute("SELECT ps_health.report_output_mtimes(array_agg(id), array_agg(%s::timestamptz), %s)"
                 " FROM ps_health.active_spawns", (T0, T0))


def add_history(conn, rows: int) -> None:
    conn.execute("""INSERT INTO ps_health.health_checks (project, check_time, check_type, status, details, subject)
                    SELECT 'p' || (i %% 1000 + 1), %s::timestamptz - make_interval(secs => i),
                           (ARRAY['spawn','context','handoff','orphaned_work'])[i %% 4 + 1],
                           (ARRAY['ok','warning','critical'])[i %% 3 + 1], '{"bench": true}', 't' || i
                      FROM generate_series(1, %s) i""", (T0, rows))
    conn.execute("VACUUM ANALYZE ps_health.health_checks")


def quiet_sweeps(conn, offset_min: int) -> tuple[float, float, float, int]:
    """p50/p99 of server-side and round-trip sweep times over SWEEPS sweeps where nothing changes."""
    server, client, changes = [], [], 0
    for i in range(SWEEPS):
        at = f"{T0}"
        started = time.perf_counter()
        result = conn.execute("SELECT ps_health.run_checks(%s::timestamptz + make_interval(secs => %s))",
                              (at, offset_min * 60 + i)).fetchone()[0]
        client.append((time.perf_counter() - started) * 1000)
        server.append(float(result["duration_ms"]))
        changes += result["changes"]
    server.sort()
    return statistics.median(server), server[int(len(server) * 0.99) - 1], statistics.median(client), changes


def flood(admin: str) -> None:
    """One project that started N spawns a week ago (an agent's login may): the sweep that finds them all
    abandoned, per spawn, at two sizes. Linear in N: each problem joins the project's one prompt, which holds
    at most 100 and lists 10."""
    per = {}
    for n in (FLOOD // 4, FLOOD):
        dsn = pg.clone(admin)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("SELECT ps_health.register_session('flood', 'cli', '%%1', 'bench-host', NULL, NULL, %s)",
                         (T0,))
            conn.execute("SELECT count(ps_health.start_spawn('flood', 't' || i, 'x', NULL, NULL, NULL, 'bench-host',"
                         " %s)) FROM generate_series(1, %s) i", (T0, n))
            started = time.perf_counter()
            conn.execute("SELECT ps_health.run_checks(%s::timestamptz + interval '2 hours')", (T0,))
            per[n] = (time.perf_counter() - started) / n * 1000
            longest = conn.execute("SELECT max(length(text)) FROM ps_health.prompts").fetchone()[0]
        pg.drop(admin, dsn)
        print(f"flood: {n:,} spawns of one project abandoned at once: {per[n]:.3f} ms a spawn, "
              f"longest prompt {longest:,} characters", flush=True)
    print(f"flood: per-spawn cost at {FLOOD:,} = {per[FLOOD] / per[FLOOD // 4]:.2f}x the cost at {FLOOD // 4:,} "
          "(target <= 1.5x: linear, not quadratic)")


def main() -> None:
    cluster = pg.start_cluster()
    try:
        admin = make_conninfo(cluster.dsn("postgres"))
        pg.migrate_template(admin)
        dsn = pg.clone(admin)
        with psycopg.connect(dsn, autocommit=True) as conn:
            started = time.perf_counter()
            populate(conn)
            conn.execute("VACUUM ANALYZE")
            print(f"populated {SESSIONS} sessions, {SPAWNS} running spawns in {time.perf_counter() - started:.1f} s")
            print(f"{'history rows':>14} {'sweep p50 ms':>13} {'sweep p99 ms':>13} {'round trip p50 ms':>18} "
                  f"{'changes':>8}")
            total = 0
            for target in (0, 100_000, 1_000_000):
                if target > total:
                    add_history(conn, target - total)
                    total = target
                p50, p99, rt, changes = quiet_sweeps(conn, offset_min=1)
                print(f"{total:>14,} {p50:>13.2f} {p99:>13.2f} {rt:>18.2f} {changes:>8}")
            n = conn.execute("SELECT count(*) FROM ps_health.health_checks").fetchone()[0]
            print(f"target: a sweep in which nothing changed <= 50 ms, flat in history ({n:,} rows at the end)")
        flood(admin)
    finally:
        cluster.destroy()


if __name__ == "__main__":
    main()
