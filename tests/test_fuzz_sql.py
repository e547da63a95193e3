"""Hostile input against the SQL API: every call succeeds or fails cleanly, nothing half-written survives."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from reactor import errors
from tests import pg

EXAMPLES = 1000
# Refusals a caller may see: bad value (22), constraint (23), not found (P0002), refused state change (55000).
CLEAN_STATES = ("22", "23", "P0002", "55000")

nasty_chars = st.sampled_from(["'", '"', "\\", ";", "--", "\x00", "\x03", "\x1b[31m", "\n", "\r", "\x7f", "é",
                               "日本", "🙂", "%s", "{project}", "$$", "#{pane_id}", "-R", "\u202e"])
nasty_text = st.one_of(
    st.text(max_size=40),
    st.lists(nasty_chars, max_size=6).map("".join),
    st.sampled_from(["alpha", "beta", "t1", "t2", "%1", "h1", ""]),
    st.just("x" * 100_000),
    st.none(),
)


def mostly(valid, hostile=nasty_text):
    """Three valid draws to one hostile, so calls reach deep states as well as the refusals."""
    return st.one_of(valid, valid, valid, hostile)


projects = mostly(st.sampled_from(["alpha", "beta", "gamma"]))
tasks = mostly(st.sampled_from(["t1", "t2", "t3"]))
labels = mostly(st.sampled_from(["research", "planning", "boom: it failed", None]))
ints = st.one_of(st.integers(-3, 3), st.integers(-(2 ** 31), 2 ** 31 - 1), st.sampled_from([2 ** 31, -(2 ** 63)]),
                 st.none())
numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-1000, 1000), st.none())
base = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)
times = st.one_of(
    st.integers(-600, 600).map(lambda m: base + timedelta(minutes=m)),
    st.integers(-600, 600).map(lambda m: base + timedelta(minutes=m)),
    st.integers(-600, 600).map(lambda m: base + timedelta(minutes=m)),
    st.sampled_from([datetime(1, 1, 1, tzinfo=timezone.utc), datetime(9999, 12, 31, tzinfo=timezone.utc),
                     datetime(1970, 1, 1, tzinfo=timezone.utc)]),
)
check_ids = st.one_of(st.integers(-5, 50), st.just(2 ** 31 - 1), st.none())

# function -> strategy for its argument tuple (positional, p_now last where the function takes it)
CALLS = {
    "register_session": st.tuples(projects, st.sampled_from(["cli", "sdk", "web", None]), nasty_text, nasty_text,
                                  nasty_text, nasty_text, times),
    "heartbeat_session": st.tuples(projects, times),
    "end_session": st.tuples(projects, times),
    "report_context": st.tuples(projects, mostly(st.integers(0, 100), numbers), ints, ints, times),
    "update_session_context": st.tuples(projects, mostly(st.integers(0, 100), numbers), ints, ints, times),
    "start_spawn": st.tuples(projects, tasks, labels, labels, labels, ints, labels, times),
    "report_spawn_output": st.tuples(projects, tasks, st.one_of(st.none(), times), times),
    "finish_spawn": st.tuples(projects, tasks, ints, labels, times),
    "set_spawn_status": st.tuples(projects, tasks, st.sampled_from(["running", "stalled", "completed", "failed",
                                                                    "abandoned", "done", None]), times),
    "respond": st.tuples(check_ids, nasty_text, times),
    "report_handoff": st.tuples(projects, nasty_text, times),
    "mute_project": st.tuples(projects, times, nasty_text, st.one_of(st.none(), st.booleans()), times),
    "unmute_project": st.tuples(projects),
    "set_setting": st.tuples(st.sampled_from(["stall_after", "context_warning", "prompt_max_attempts", "auto_cycle",
                                              "command_channel", "nope", None]), nasty_text, projects),
    "run_checks": st.tuples(times),
    "report_output_mtimes": st.tuples(st.lists(st.integers(-2, 40), max_size=5),
                                      st.lists(times, max_size=5), times),
    "report_session_targets": st.tuples(st.lists(projects, max_size=4),
                                        st.lists(st.sampled_from(["seen", "missing", "unknown", "x"]), max_size=4),
                                        times),
    "report_session_panes": st.tuples(st.lists(projects, max_size=3),
                                      st.lists(st.sampled_from(["seen", "missing", "unknown", "x"]), max_size=3),
                                      st.lists(nasty_text, max_size=3),
                                      st.lists(st.one_of(st.none(), nasty_text, st.just("1 2 %1 3")), max_size=3),
                                      times),
    "bind_target": st.tuples(projects, nasty_text, nasty_text, st.one_of(nasty_text, st.just("1 2 %1 3")), times),
    "report_spawn_pids": st.tuples(st.lists(st.integers(-2, 40), max_size=4),
                                   st.lists(st.sampled_from(["alive", "dead", "unknown", None]), max_size=4), times),
    "claim_prompts": st.tuples(nasty_text, nasty_text, ints, ints, times),
    "complete_prompt": st.tuples(check_ids, nasty_text, st.sampled_from(["delivered", "target_missing", "failed",
                                                                          "sent", None]), nasty_text, times),
    "complete_prompts": st.tuples(nasty_text, st.one_of(st.none(), st.lists(st.integers(-2, 40), max_size=4)),
                                  st.one_of(st.none(), st.lists(st.sampled_from(["delivered", "failed", "sent", None]),
                                                                max_size=4)),
                                  st.one_of(st.none(), st.lists(nasty_text, max_size=4)), times),
}

COUNTS = """SELECT (SELECT count(*) FROM ps_health.ps_sessions) AS sessions,
                   (SELECT count(*) FROM ps_health.active_spawns) AS spawns,
                   (SELECT count(*) FROM ps_health.health_checks) AS checks,
                   (SELECT count(*) FROM ps_health.prompts) AS prompts,
                   (SELECT count(*) FROM ps_health.prompt_items) AS items,
                   (SELECT count(*) FROM ps_health.check_state) AS states"""

INVARIANTS = {
    "prompt without its check": "SELECT count(*) FROM ps_health.prompts p WHERE NOT EXISTS "
                                "(SELECT 1 FROM ps_health.prompt_items i WHERE i.prompt_id = p.id)",
    "finished spawn without completed_at": "SELECT count(*) FROM ps_health.active_spawns "
                                           "WHERE status IN ('completed', 'failed') AND completed_at IS NULL",
    "stalled spawn without stalled_at": "SELECT count(*) FROM ps_health.active_spawns "
                                        "WHERE status = 'stalled' AND stalled_at IS NULL",
    "state pointing at no check": "SELECT count(*) FROM ps_health.check_state s WHERE NOT EXISTS "
                                  "(SELECT 1 FROM ps_health.health_checks h WHERE h.id = s.last_check_id)",
    "claimed prompt without a lease": "SELECT count(*) FROM ps_health.prompts "
                                      "WHERE state = 'claimed' AND (lease_until IS NULL OR worker IS NULL)",
    "pending tmux prompt without a pane": "SELECT count(*) FROM ps_health.prompts "
                                          "WHERE state = 'pending' AND channel = 'tmux' AND kind <> 'escalation' "
                                          "AND target IS NULL",
    "context usage out of range": "SELECT count(*) FROM ps_health.ps_sessions "
                                  "WHERE context_usage < 0 OR context_usage > 1",
}


@pytest.fixture(scope="module")
def fuzz_db(admin_dsn, template_dsn):
    dsn = pg.clone(admin_dsn)
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("SELECT ps_health.register_session(p, 'cli', '%1', 'h1') FROM unnest(ARRAY['alpha', 'beta']) p")
        c.execute("SELECT ps_health.start_spawn('alpha', t, 'research') FROM unnest(ARRAY['t1', 't2']) t")
    yield dsn
    pg.drop(admin_dsn, dsn)


@pytest.fixture(scope="module")
def conns(fuzz_db):
    with psycopg.connect(fuzz_db, autocommit=True) as caller, psycopg.connect(fuzz_db, autocommit=True) as listener:
        listener.execute("LISTEN ps_health")
        yield caller, listener


def arg_types(conn, name: str) -> list[str]:
    """The declared parameter types, so values are cast as a typed client would."""
    row = conn.execute("SELECT proargtypes::regtype[]::text[] FROM pg_proc p"
                       " JOIN pg_namespace s ON s.oid = p.pronamespace"
                       " WHERE s.nspname = 'ps_health' AND p.proname = %s", (name,)).fetchone()
    return row[0]


def call(conn, name: str, args: tuple, types: list[str]):
    query = sql.SQL("SELECT * FROM ps_health.{}({})").format(
        sql.Identifier(name),
        sql.SQL(", ").join(sql.SQL("{}::{}").format(sql.Placeholder(), sql.SQL(t)) for t in types))
    try:
        conn.execute(query, args).fetchall()
        return None
    except psycopg.Error as exc:
        return errors.from_psycopg(exc)


@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")
@pytest.mark.parametrize("name", sorted(CALLS))
def test_hostile_calls_succeed_or_fail_cleanly_leaving_nothing_half_written(name, conns):
    caller, listener = conns
    outcomes = {"ok": 0, "refused": 0}
    types = arg_types(caller, name)

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
    @given(CALLS[name])
    def run(args):
        before = caller.execute(COUNTS).fetchone()
        err = call(caller, name, args, types[:len(args)])
        if err is None:
            outcomes["ok"] += 1
            return
        outcomes["refused"] += 1
        assert isinstance(err, errors.PsHealthError)
        # NUL bytes and out-of-range numbers are refused by the driver before the server sees them
        assert err.sqlstate is None or err.sqlstate.startswith(CLEAN_STATES), (name, args, err.sqlstate, str(err))
        assert caller.execute(COUNTS).fetchone() == before, f"{name} failed but left rows behind: {err}"

    run()
    for what, query in INVARIANTS.items():
        assert caller.execute(query).fetchone()[0] == 0, what
    for note in listener.notifies(timeout=0.2):
        assert len(note.payload.encode()) < 8000
        assert set(json.loads(note.payload)) in ({"id", "host"}, {"session", "host"})
    assert outcomes["ok"] + outcomes["refused"] >= EXAMPLES
    print(f"{name}: {outcomes['ok']} accepted, {outcomes['refused']} refused")
