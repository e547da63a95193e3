"""A simulated day of sessions and spawns with scripted trouble, p_now moved minute by minute: shared by the
day benchmark (bench/bench_day.py, 8 hours of 500 sessions) and its smaller CI run (tests/test_simulated_day.py).

Prints incidents scripted vs prompted, prompts per incident, whether any healthy session was
prompted (a bug if so), reminder spacing, sweep times and table sizes before and after retention.
Prompts are claimed and completed by a simulated reactor through the real SQL protocol.
"""

from __future__ import annotations

import random
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import psycopg

SESSIONS, SPAWNS, MINUTES, SEED = 500, 5_000, 480, 20261128
REAL_SAMPLE = 25  # sessions whose prompts the real reactor types into real tmux panes
DAY = {"sessions": SESSIONS, "spawns": SPAWNS, "minutes": MINUTES}
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)
HOST = "sim-host"
REAL_HOST = "real-host"


@dataclass
class Script:
    """Events per minute, and the incidents each session was given."""

    events: dict = field(default_factory=lambda: defaultdict(lambda: defaultdict(list)))
    incidents: list = field(default_factory=list)   # (project, check_type, subject)
    healthy: set = field(default_factory=set)

    minutes: int = MINUTES

    def at(self, minute: int, kind: str, *args) -> None:
        if 0 <= minute < self.minutes:
            self.events[minute][kind].append(args)


def write_script(rng: random.Random, sessions: int = SESSIONS, spawns: int = SPAWNS, minutes: int = MINUTES) -> Script:
    s = Script(minutes=minutes)
    per_session = spawns // sessions
    for i in range(sessions):
        p = f"proj{i:03d}"
        start = rng.randrange(0, 30)
        s.at(start, "register", p, f"%{i}")
        fate = rng.random()
        troubled = False
        end = minutes
        if fate < 0.05:                                    # the session dies with work running
            end = rng.randrange(minutes // 4, minutes * 5 // 6)
            s.at(end - 3, "spawn", p, "left-behind")
            for m in range(end - 2, end + 1):
                s.at(m, "output", p, "left-behind")
            s.at(end, "end", p)
            s.incidents.append((p, "orphaned_work", "spawns"))
            troubled = True
            end -= 4                                       # its other spawns are done by then
        climbing = 0.05 <= fate < 0.15                     # context climbs to the handoff
        peak = rng.randrange(minutes * 2 // 5, minutes * 4 // 5)
        usage = rng.uniform(10, 30)
        for m in range(start + 1, end, 5):                 # statusline-style reports every 5 min
            if climbing and m >= peak - 60:
                usage = min(95.0, usage + 6)
            else:
                usage = min(65.0, usage + rng.uniform(0, 0.6))
            s.at(m, "context", p, round(usage, 1))
            if climbing and usage >= 85:
                s.incidents.append((p, "context", "session"))
                if rng.random() < 0.5:
                    s.at(m + rng.randrange(2, 8), "handoff", p, f"/tmp/{p}/HANDOFF.md")
                else:
                    s.incidents.append((p, "handoff", "session"))
                climbing = False
                usage = 20.0
                troubled = True
        t = start + 1
        spawn_trouble = rng.random() < 0.35                # a third of the sessions have spawn trouble
        for j in range(per_session):
            task = f"t{j}"
            if t >= end - 5:
                break
            length = rng.randrange(10, 45)
            s.at(t, "spawn", p, task)
            kind = rng.random() if spawn_trouble else 1.0
            quiet = t + rng.randrange(1, 5)
            if kind < 0.15 and quiet + 16 < minutes:       # goes quiet and never comes back
                for m in range(t + 1, quiet):
                    s.at(m, "output", p, task)
                s.incidents.append((p, "spawn", task))
                troubled = True
                t = quiet + 1
                continue
            if kind < 0.25 and t + 40 < end:               # stalls, then resumes and completes
                quiet = t + 2
                s.at(t + 1, "output", p, task)
                back = quiet + rng.randrange(17, 30)
                for m in range(back, back + 5):
                    s.at(m, "output", p, task)
                s.at(back + 6, "finish", p, task, 0, None)
                if quiet + 15 < minutes:                   # the stall itself falls inside the day
                    s.incidents.append((p, "spawn", task))
                troubled = True
                t = back + 7
                continue
            for m in range(t + 1, t + length, rng.randrange(1, 6)):
                s.at(m, "output", p, task)
            if kind < 0.35:                                # fails
                s.at(t + length, "finish", p, task, 2, f"Error: step {j} failed")
                if t + length < minutes:
                    s.incidents.append((p, "spawn", task))
                troubled = True
            else:
                s.at(t + length, "finish", p, task, 0, None)
            t += length + 1
        if not troubled:
            s.healthy.add(p)
    return s


def play(conn, script: Script, rng: random.Random, real: dict | None = None) -> list[float]:
    """Run the day; returns every sweep's duration in ms. Sessions in `real` (project -> pane)
    live on REAL_HOST, where the real reactor types their prompts into real panes."""
    sweeps = []
    real = real or {}
    for minute in range(script.minutes):
        now = T0 + timedelta(minutes=minute)
        ev = script.events.get(minute, {})
        for p, target in ev.get("register", []):
            where = (real[p], REAL_HOST) if p in real else (target, HOST)
            conn.execute("SELECT ps_health.register_session(%s, 'cli', %s, %s, NULL, NULL, %s)", (p, *where, now))
        if ev.get("context"):
            ps, pct = zip(*ev["context"], strict=True)
            conn.execute("SELECT ps_health.report_context(p, c, NULL, NULL, %s)"
                         " FROM unnest(%s::text[], %s::numeric[]) x(p, c)", (now, list(ps), list(pct)))
        if ev.get("spawn"):
            ps, ts = zip(*ev["spawn"], strict=True)
            conn.execute("SELECT ps_health.start_spawn(p, t, 'research', NULL, NULL, NULL, %s, %s)"
                         " FROM unnest(%s::text[], %s::text[]) x(p, t)", (HOST, now, list(ps), list(ts)))
        if ev.get("output"):
            ps, ts = zip(*ev["output"], strict=True)
            conn.execute("SELECT ps_health.report_spawn_output(p, t, NULL, %s)"
                         " FROM unnest(%s::text[], %s::text[]) x(p, t)", (now, list(ps), list(ts)))
        for p, task, code, err in ev.get("finish", []):
            conn.execute("SELECT ps_health.finish_spawn(%s, %s, %s, %s, %s)", (p, task, code, err, now))
        for (p,) in ev.get("end", []):
            conn.execute("SELECT ps_health.end_session(%s, %s)", (p, now))
        for p, f in ev.get("handoff", []):
            conn.execute("SELECT ps_health.report_handoff(%s, %s, %s)", (p, f, now))
        result = conn.execute("SELECT ps_health.run_checks(%s, 'soak')", (now,)).fetchone()[0]
        sweeps.append(float(result["duration_ms"]))
        # the simulated reactor delivers everything due; the PS answers about half of its prompts
        rows = conn.execute("SELECT id, check_ids FROM ps_health.claim_prompts(%s, 'sim', 1000, 60, %s)",
                            (HOST, now)).fetchall()
        for pid, checks in rows:
            conn.execute("SELECT ps_health.complete_prompt(%s, 'sim', 'delivered', NULL, %s)", (pid, now))
            if rng.random() < 0.5:
                conn.execute("SELECT ps_health.respond(%s, 'on it', %s)", (checks[0], now))
        if real:
            _real_reactor_caught_up(conn)
    return sweeps


def _real_reactor_caught_up(conn) -> None:
    """The day's clock waits for the real reactor, which types in real time: on a busy machine a
    prompt would otherwise expire unseen because its problem recovered minutes later in the day."""
    from tests.support import wait_for

    wait_for(lambda: conn.execute("SELECT count(*) FROM ps_health.prompts WHERE host = %s AND state IN "
                                  "('pending', 'claimed')", (REAL_HOST,)).fetchone()[0] == 0,
             timeout=60, interval=0.01, what="the real reactor to type this minute's prompts")


TABLES = ["ps_sessions", "active_spawns", "health_checks", "check_state", "prompts", "prompt_items", "sweep_runs"]


def sizes(conn) -> dict[str, int]:
    """Exact row counts of the tables that grow, and of pg_cron's run history."""
    counts = {t: conn.execute(f"SELECT count(*) FROM ps_health.{t}").fetchone()[0] for t in TABLES}
    if conn.execute("SELECT to_regclass('cron.job_run_details') IS NOT NULL").fetchone()[0]:
        counts["cron.job_run_details"] = conn.execute("SELECT count(*) FROM cron.job_run_details").fetchone()[0]
    return counts


def figures(conn, script: Script, sweeps: list[float]) -> dict:
    """What the day showed: incidents vs prompts, healthy sessions prompted, reminder spacing, sweep times."""
    prompted = {(r[0], r[1], r[2]) for r in conn.execute(
        """SELECT DISTINCT c.project, c.check_type, c.subject FROM ps_health.health_checks c
             JOIN ps_health.prompt_items i ON i.check_id = c.id JOIN ps_health.prompts p ON p.id = i.prompt_id
            WHERE c.status <> 'ok' AND p.state IN ('delivered', 'pending', 'claimed', 'waiting')""")}
    incidents = set(script.incidents)
    reminders = conn.execute(
        """SELECT count(*),
                  count(*) FILTER (WHERE gap < interval '30 minutes' * power(2, n - 1) - interval '1 minute')
             FROM (SELECT (details->>'reminder')::int AS n,
                          check_time - lag(check_time)
                              OVER (PARTITION BY project, check_type, subject ORDER BY id) AS gap
                     FROM ps_health.health_checks) x WHERE n IS NOT NULL""").fetchone()
    kinds = defaultdict(int)
    for _, check_type, _ in incidents:
        kinds[check_type] += 1
    ordered = sorted(sweeps)
    return {
        "incidents": len(incidents), "kinds": dict(sorted(kinds.items())),
        "prompted": len(incidents & prompted), "missed": sorted(incidents - prompted),
        "healthy": len(script.healthy),
        "healthy_prompts": conn.execute("SELECT count(*) FROM ps_health.prompts"
                                        " WHERE project = ANY(%s) AND kind = 'alert'",
                                        (sorted(script.healthy),)).fetchone()[0],
        "prompts": conn.execute("SELECT count(*) FROM ps_health.prompts WHERE kind = 'alert' AND state <> 'suppressed'"
                                ).fetchone()[0],
        "reminders": reminders[0], "early_reminders": reminders[1],
        "sweep_p50": statistics.median(ordered), "sweep_p99": ordered[int(len(ordered) * 0.99) - 1],
        "sweep_max": ordered[-1],
    }


def report(f: dict, script: Script, elapsed: float) -> None:
    print(f"simulated {script.minutes} minutes, {len(script.healthy)} healthy sessions, in {elapsed:.0f} s")
    print(f"incidents scripted: {f['incidents']} ({', '.join(f'{k} {v}' for k, v in f['kinds'].items())})")
    print(f"incidents prompted: {f['prompted']}  missed: {len(f['missed'])} {f['missed'][:5]}")
    print(f"healthy sessions: {f['healthy']}, prompts to them: {f['healthy_prompts']}")
    print(f"prompts sent: {f['prompts']}, prompts per incident: {f['prompts'] / max(1, f['incidents']):.2f}")
    print(f"reminders: {f['reminders']}, sooner than the configured interval: {f['early_reminders']}")
    print(f"sweep ms over the day: p50 {f['sweep_p50']:.2f}, p99 {f['sweep_p99']:.2f}, max {f['sweep_max']:.2f}")
    if "real_panes" in f:
        print(f"real reactor, {f['real_panes']} real panes: {f['real_delivered']} prompts delivered, "
              f"{len(f['real_not_in_pane'])} not found in their pane, "
              f"healthy panes typed into: {f['real_healthy_typed']}")


def prune_after(conn, say=print) -> int:
    """Prune as of 31 days after the day; print sizes; return the rows left outside retention."""
    has_cron = conn.execute("SELECT to_regclass('cron.job_run_details') IS NOT NULL").fetchone()[0]
    # a pg_cron history as old as the day, so retention has something to trim there too
    if has_cron:
        conn.execute("""INSERT INTO cron.job_run_details (jobid, runid, job_pid, database, username, command, status,
                                                       return_message, start_time, end_time)
                        SELECT 0, -g, 0, 'x', 'x', 'SELECT 1', 'succeeded', '1 row', now() - interval '10 days',
                               now() - interval '10 days' FROM generate_series(1, 1000) g""")
    with_cron = sizes(conn)
    pruned = conn.execute("SELECT ps_health.prune(%s)", (T0 + timedelta(days=31),)).fetchone()[0]
    after = sizes(conn)
    say("table sizes (rows)         after the day   after prune (+31 days)")
    for name in with_cron:
        say(f"  {name:26} {with_cron[name]:>13,}   {after[name]:>12,}")
    say(f"prune removed: {pruned}")
    stale = conn.execute(
        """SELECT (SELECT count(*) FROM ps_health.health_checks h
                    WHERE h.check_time < %(t)s - interval '30 days'
                      AND NOT EXISTS (SELECT 1 FROM ps_health.check_state s WHERE s.last_check_id = h.id)
                      AND NOT EXISTS (SELECT 1 FROM ps_health.prompt_items i
                                        JOIN ps_health.prompts p ON p.id = i.prompt_id
                                       WHERE i.check_id = h.id AND p.state IN ('waiting', 'pending', 'claimed')))
                + (SELECT count(*) FROM ps_health.health_checks h
                    WHERE h.status = 'ok' AND h.check_time < %(t)s - interval '7 days'
                      AND NOT EXISTS (SELECT 1 FROM ps_health.check_state s WHERE s.last_check_id = h.id))
                + (SELECT count(*) FROM ps_health.prompts
                    WHERE state IN ('delivered', 'failed', 'suppressed', 'expired')
                      AND coalesce(completed_at, created_at) < %(t)s - interval '30 days')
                + (SELECT count(*) FROM ps_health.sweep_runs WHERE swept_at < %(t)s - interval '7 days')
                + (SELECT count(*) FROM ps_health.active_spawns
                    WHERE status IN ('completed', 'failed') AND completed_at < %(t)s - interval '30 days')
""", {"t": T0 + timedelta(days=31)}).fetchone()[0]
    if has_cron:
        stale += conn.execute("SELECT count(*) FROM cron.job_run_details WHERE end_time < now() - interval '7 days'"
                              ).fetchone()[0]
    say(f"rows left outside retention: {stale}")
    return stale


def simulate(dsn: str, sessions: int, spawns: int, minutes: int, say=print, real_sample: int = 0) -> dict:
    """Play a scripted day against a migrated database; return the figures. With real_sample, that many
    sessions get real tmux panes and the real reactor delivers their prompts."""
    rng = random.Random(SEED)
    script = write_script(rng, sessions, spawns, minutes)
    live = RealPanes(dsn, real_sample) if real_sample else None
    with psycopg.connect(dsn, autocommit=True) as conn:
        started = time.perf_counter()
        try:
            sweeps = play(conn, script, rng, live.targets if live else None)
            result = figures(conn, script, sweeps)
            if live:
                result.update(live.check(conn, script))
        finally:
            if live:
                live.close()
        if say:
            report(result, script, time.perf_counter() - started)
        result["stale_after_prune"] = prune_after(conn, say or (lambda _: None))
    return result


class RealPanes:
    """A private tmux server with recorder panes for the first sessions, and a real reactor for them."""

    def __init__(self, dsn: str, n: int):
        import subprocess
        import sys
        import tempfile
        from pathlib import Path

        from tests.tmux_server import TmuxServer

        self.tmp = Path(tempfile.mkdtemp(prefix="ps-health-day-"))
        self.tmux = TmuxServer(self.tmp)
        self.panes = {f"proj{i:03d}": self.tmux.recorder() for i in range(n)}
        self.targets = {p: pane.target for p, pane in self.panes.items()}
        with psycopg.connect(dsn, autocommit=True) as c:
            # the sample's panes run the test recorder: the one agent program the reactor may type into here
            for key, value in (("submit_delay", "50 milliseconds"), ("idle_seconds", "0"),
                               ("agent_programs", '["recorder"]')):
                c.execute("SELECT ps_health.set_setting(%s, %s)", (key, value))
        env = {k: v for k, v in __import__("os").environ.items() if not k.startswith(("PS_HEALTH_", "PG"))}
        env.update(PS_HEALTH_DSN=dsn, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
        self.log = (self.tmp / "reactor.log").open("wb")
        self.reactor = subprocess.Popen([sys.executable, "-m", "reactor", "--host", REAL_HOST, "--tmux-socket",
                                         self.tmux.name, "--poll-interval", "0.5", "--probe-interval", "3600"],
                                        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.log)

    def check(self, conn, script: Script) -> dict:
        """Wait for the real reactor to finish, then compare what the panes got with the outbox."""
        from reactor.tmux.client import sanitise
        from tests.support import wait_for

        wait_for(lambda: conn.execute("SELECT count(*) FROM ps_health.prompts WHERE host = %s AND state IN "
                                      "('pending', 'claimed')", (REAL_HOST,)).fetchone()[0] == 0,
                 timeout=120, interval=0.5, what="the real reactor to drain")
        rows = conn.execute("SELECT project, text FROM ps_health.prompts WHERE host = %s AND state = 'delivered'",
                            (REAL_HOST,)).fetchall()
        missing = [p for p, text in rows if sanitise(text).encode() not in self.panes[p].received()]
        healthy_typed = [p for p in self.panes if p in script.healthy and self.panes[p].received()]
        return {"real_panes": len(self.panes), "real_delivered": len(rows), "real_not_in_pane": missing,
                "real_healthy_typed": healthy_typed}

    def close(self) -> None:
        import shutil

        self.reactor.terminate()
        self.reactor.wait(30)
        self.log.close()
        self.tmux.remove()
        shutil.rmtree(self.tmp, ignore_errors=True)
