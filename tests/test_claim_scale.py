"""A claim and its outcome read their own prompt's rows, however much history the database keeps.

With a history of prompts that carried many checks each, the planner joined whole tables on the way of every
prompt: one claim read every check ever recorded (3,010 rows here), one outcome every check and every prompt,
and both grew with the history (on a slow 2-core VM a claim went from 4.2 to 8.8 ms within 500 prompts). Counted
here as the rows each call reads (pg_stat_xact_user_tables), with the plans the reactor's connection keeps after a
few calls.
"""

from __future__ import annotations

import psycopg
from psycopg.rows import dict_row

HISTORY = 3000
BURST = 100
HOST = "h1"


def _connect(dsn, autocommit=True):
    return psycopg.connect(dsn, autocommit=autocommit, row_factory=dict_row,
                           options="-c search_path=ps_health,public")


def _history(conn) -> None:
    """3,000 failed spawns of another host's project in bursts of 100, each burst's prompt (with its 100 checks)
    delivered; statistics taken, as autovacuum takes them in a database that ran a while."""
    conn.execute("SELECT register_session('hist', 'cli', 'h:0.0', 'other-host')")
    for burst in range(0, HISTORY, BURST):
        conn.execute("SELECT start_spawn('hist', 't' || i, 'impl') FROM generate_series(%s::int, %s::int) i",
                     (burst, burst + BURST - 1))
        conn.execute("SELECT finish_spawn('hist', 't' || i, 1, 'boom') FROM generate_series(%s::int, %s::int) i",
                     (burst, burst + BURST - 1))
        conn.execute("UPDATE prompts SET state = 'delivered', outcome = 'delivered', completed_at = now() "
                     "WHERE state <> 'delivered'")
    conn.execute("VACUUM ANALYZE")


def _prompt(conn, task: str) -> None:
    conn.execute("SELECT start_spawn('alpha', %s, 'impl')", (task,))
    conn.execute("SELECT finish_spawn('alpha', %s, 1, 'boom')", (task,))


def _rows_read(tx, call) -> dict[str, int]:
    """Rows of each table call(tx) reads (its transaction's counts after it less those before it: PostgreSQL 15 keeps
    counting across transactions until it reports them)."""
    query = ("SELECT relname, coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) AS n "
             "FROM pg_stat_xact_user_tables WHERE schemaname = 'ps_health'")
    before = {r["relname"]: r["n"] for r in tx.execute(query)}
    call(tx)
    after = {r["relname"]: r["n"] for r in tx.execute(query)}
    tx.commit()
    return {table: n - before.get(table, 0) for table, n in after.items()}


def _claim(tx) -> list[dict]:
    return tx.execute("SELECT * FROM claim_prompts(%s, 'w1', 10, 60)", (HOST,)).fetchall()


def _complete(tx, rows: list[dict]) -> None:
    """The outcomes as the reactor sends them: each naming its claim."""
    tx.execute("SELECT * FROM complete_prompts('w1', %s, %s, %s, now(), %s)",
               ([r["id"] for r in rows], ["delivered"] * len(rows), ["typed"] * len(rows),
                [r["claimed_at"] for r in rows])).fetchall()


def test_a_claim_and_its_outcome_read_their_own_rows_not_the_history(db):
    with _connect(db) as conn, _connect(db, autocommit=False) as tx:
        _history(conn)
        conn.execute("SELECT set_setting('idle_seconds', '0')")
        conn.execute("SELECT register_session('alpha', 'cli', '%%1', %s)", (HOST,))
        checks = conn.execute("SELECT count(*) AS n FROM health_checks").fetchone()["n"]
        assert checks > HISTORY // 2
        # The reactor's connection claims and completes prompt after prompt: PL/pgSQL keeps a plan for each of
        # their statements after five calls.
        for n in range(8):
            _prompt(conn, f"t{n}")
            rows = _claim(tx)
            tx.commit()
            _complete(tx, rows)
            tx.commit()
            assert len(rows) == 1 and rows[0]["check_ids"], rows

        _prompt(conn, "last")
        rows = []
        claimed = _rows_read(tx, lambda tx: rows.extend(_claim(tx)))
        completed = _rows_read(tx, lambda tx: _complete(tx, rows))

    assert len(rows) == 1 and len(rows[0]["check_ids"]) == 1, rows
    assert completed, "no reads counted"
    for call, read in (("claim", claimed), ("outcome", completed)):
        for table in ("health_checks", "prompt_items", "prompts", "check_state"):
            assert read.get(table, 0) < 50, f"{call} read {read.get(table)} rows of {table} ({checks} checks kept)"
