"""Claude Code's hooks and statusline reach the database through the host spool and a running reactor,
without any other `ps-health` call; facts written while the reactor or the database is away arrive
later, in order, at the time they happened."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from reactor.agent import spool
from tests.claude_code import Agent
from tests.support import wait_for


@pytest.fixture
def agent(reactors, tmux_server) -> Agent:
    """A Claude Code session of project shop in a live pane of the test's tmux server."""
    return Agent(reactors.spool, pane=tmux_server.recorder().target)


def status_cache(spool) -> dict:
    """The reactor's status cache for host-a, {} before it is first written."""
    path = spool / "status-host-a.json"
    return json.loads(path.read_text()) if path.exists() else {}


def forwarded(spool) -> bool:
    """Every fact written so far was taken and forwarded (or skipped) by the reactor."""
    active = spool / "facts.jsonl"
    return not list(spool.glob("batch-*")) and (not active.exists() or active.stat().st_size == 0)


def spawn(conn, task_id: str) -> dict | None:
    return conn.execute("SELECT * FROM active_spawns WHERE task_id = %s", (task_id,)).fetchone()


def session(conn, project: str = "shop") -> dict | None:
    return conn.execute("SELECT * FROM ps_sessions WHERE project = %s", (project,)).fetchone()


def test_hook_calls_become_session_spawns_and_heartbeats_through_the_reactor(conn, reactors, agent):
    proc = reactors.start()
    agent.session_start()
    s = wait_for(lambda: session(conn), what="the session registered by SessionStart")
    assert (s["tmux_target"], s["host"], s["session_id"], s["transcript_path"]) == (
        agent.pane, "host-a", agent.session_id, agent.transcript)
    started = s["last_activity"]

    agent.prompt()
    agent.agent_start("toolu_01")
    sp = wait_for(lambda: spawn(conn, "toolu_01"), what="the spawn started by PreToolUse")
    assert (sp["project"], sp["task_type"], sp["description"], sp["status"], sp["host"]) == (
        "shop", "general-purpose", "Research the thing", "running", "host-a")
    agent.agent_done("toolu_01")
    agent.stop()
    wait_for(lambda: spawn(conn, "toolu_01")["status"] == "completed", what="the spawn finished by PostToolUse")
    assert session(conn)["last_activity"] > started, "the turn's hooks are heartbeats"
    checks = conn.execute("SELECT status FROM health_checks WHERE project = 'shop'").fetchall()
    assert all(c["status"] == "ok" for c in checks), "a healthy session raises nothing"

    agent.compact()
    row = wait_for(lambda: conn.execute("SELECT * FROM health_checks WHERE subject = 'compaction'").fetchone(),
                   what="the compaction recorded")
    assert (row["check_type"], row["status"], row["details"]["trigger"]) == ("context", "ok", "manual")

    agent.end()
    wait_for(lambda: session(conn)["ended_at"] is not None, what="the session ended by SessionEnd")
    assert agent.calls == 8 and "refused" not in proc.text()


def test_a_failed_subagent_fails_its_spawn_and_an_interrupted_one_ends_quietly(conn, reactors, agent):
    reactors.start()
    agent.session_start()
    agent.agent_start("toolu_bad", subagent_type="no-such-agent")
    agent.agent_failed("toolu_bad", "Agent type 'no-such-agent' not found. Available agents: Explore, Plan")
    agent.agent_start("toolu_esc", tool="Task")
    agent.agent_failed("toolu_esc", "Interrupted by user", interrupt=True)
    wait_for(lambda: (s := spawn(conn, "toolu_esc")) and s["status"] == "completed", what="the interrupted spawn")
    bad = spawn(conn, "toolu_bad")
    assert bad["status"] == "failed" and "no-such-agent" in bad["error_message"]
    prompts = conn.execute("SELECT text FROM prompts WHERE project = 'shop'").fetchall()
    assert len(prompts) == 1 and "toolu_bad" in prompts[0]["text"], "only the failure prompts the supervisor"
    assert spawn(conn, "toolu_esc")["error_message"] == "interrupted by the user"


def test_a_background_subagent_runs_until_it_stops(conn, reactors, agent, tmp_path):
    reactors.start()
    output = tmp_path / "tasks" / "aca8b3b8b69514a7d.output"
    agent.session_start()
    agent.agent_start("toolu_bg", background=True)
    agent.agent_launched("toolu_bg", "aca8b3b8b69514a7d", str(output))
    agent.subagent_stop("a0c8435d7d9f25b85")  # another subagent (the compaction's) stopping changes nothing
    agent.stop()
    wait_for(lambda: forwarded(reactors.spool), what="the facts forwarded")
    assert spawn(conn, "toolu_bg")["output_file"] == str(output), "its output file is watched for activity"
    assert spawn(conn, "toolu_bg")["status"] == "running", "a background subagent is not done when launched"
    agent.subagent_stop("aca8b3b8b69514a7d")
    wait_for(lambda: spawn(conn, "toolu_bg")["status"] == "completed", what="the background spawn completed")


def test_facts_written_while_the_reactor_is_stopped_arrive_later_in_order(conn, reactors, agent):
    agent.session_start()
    agent.agent_start("toolu_01")
    agent.agent_done("toolu_01")
    agent.agent_start("toolu_02")
    written = datetime.now(timezone.utc)
    assert session(conn) is None, "nothing reaches the database without a reactor"

    reactors.start()
    wait_for(lambda: (s := spawn(conn, "toolu_02")) and s["status"] == "running", what="the spool forwarded")
    first = spawn(conn, "toolu_01")
    assert first["status"] == "completed", "the end came after the start, as written"
    assert session(conn)["started_at"] <= first["spawn_time"] <= first["completed_at"] <= written, \
        "each fact is recorded at the time it happened, not when it was forwarded"
    # (a batch is removed just after its facts are committed)
    wait_for(lambda: not list(reactors.spool.glob("batch-*")), what="the forwarded batches removed")


def test_facts_written_while_the_database_is_down_arrive_when_it_is_back(conn, db, admin_dsn, reactors, agent):
    proc = reactors.start()
    agent.session_start()
    wait_for(lambda: session(conn), what="the session registered")
    name = sql.Identifier(conninfo_to_dict(db)["dbname"])
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(name))
        try:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE datname = current_database() AND application_name LIKE 'ps-health-reactor:%%'")
            agent.agent_start("toolu_01")
            agent.agent_done("toolu_01")
            agent.end()
            wait_for(lambda: "agent facts wait in the spool (database unavailable" in proc.text(),
                     timeout=20, what="the outage noticed by the spool thread")
            assert spawn(conn, "toolu_01") is None
        finally:
            admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(name))
    wait_for(lambda: session(conn)["ended_at"] is not None, timeout=20, what="the facts forwarded after the outage")
    assert spawn(conn, "toolu_01")["status"] == "completed"
    wait_for(lambda: "agent facts flow again" in proc.text(), what="the recovery logged")  # (logged just after)


def test_a_refused_fact_is_logged_and_later_facts_still_arrive(conn, reactors, agent):
    proc = reactors.start()
    agent.session_start()
    agent.agent_done("toolu_never_started")            # unknown spawn: refused for good
    agent.run("hook", "PreToolUse", payload=agent.payload(
        "PreToolUse", tool_name="Agent", tool_use_id="toolu_x", tool_input={"subagent_type": "x\x01y"}))
    (reactors.spool / "facts.jsonl").open("ab").write(b'{"kind": "rm -rf", "t": 1}\nnot json\n')
    agent.agent_start("toolu_02")
    wait_for(lambda: spawn(conn, "toolu_02"), what="the fact after the refused ones")
    log = proc.text()
    assert 'spawn_end of shop refused [P0002]: unknown spawn "toolu_never_started"' in log
    assert "spawn_start of shop refused [22023]: task_type must not contain control or invisible" in log
    assert log.count("skipped a spool line that is not a fact") == 2
    assert spawn(conn, "toolu_x") is None


def test_an_agent_folder_with_a_newline_is_refused_on_one_log_line(conn, reactors, tmux_server):
    forged = "2099-01-01 00:00:00,000 ERROR reactor.process.ingest: FORGED LINE"
    odd = Agent(reactors.spool, cwd=f"/home/me/shop\n{forged}\n", pane=tmux_server.recorder().target)
    proc = reactors.start()
    odd.session_start()  # its project is the folder's name, newlines and all
    Agent(reactors.spool, pane=odd.pane).session_start()
    wait_for(lambda: session(conn), what="the fact after the refused one")
    wait_for(lambda: "refused" in proc.text(), what="the refused session logged")
    log = proc.text()
    assert not [line for line in log.splitlines() if line.startswith("2099")], log
    assert f"session_start of shop\\x0a{forged}\\x0a refused [22023]" in log, log


def test_after_clear_the_session_follows_the_new_conversation_and_its_transcript(conn, reactors, agent, tmp_path):
    reactors.start()
    old, new = tmp_path / "old.jsonl", tmp_path / "new.jsonl"
    agent.transcript = str(old)
    old.write_text(_turn(100_000) + "\n")
    agent.session_start()
    agent.statusline(10)
    wait_for(lambda: (s := session(conn)) and s["context_usage"] is not None and float(s["context_usage"]) == 0.10,
             what="the context of the first conversation")

    new.write_text(_turn(20_000) + "\n")
    agent.clear("d7a6890c-1c67-4386-a74e-e2cb9ac045a8", str(new))
    s = wait_for(lambda: (s := session(conn)) and s["session_id"] == agent.session_id and s,
                 what="the session following the new conversation")
    assert s["transcript_path"] == str(new) and s["ended_at"] is None
    # the transcript probe reads the new file, against the 1M window the statusline reported
    wait_for(lambda: session(conn)["estimated_tokens_used"] == 20_000, what="the new transcript read")
    assert float(session(conn)["context_usage"]) == 0.02


def test_a_resumed_long_conversation_of_a_1m_model_is_measured_against_its_window(conn, reactors, agent, tmp_path):
    transcript = tmp_path / "resumed.jsonl"
    transcript.write_text(_turn(300_000) + "\n")
    agent.transcript = str(transcript)
    reactors.start()
    agent.session_start("resume")                      # model claude-opus-4-8[1m], no statusline yet
    wait_for(lambda: (s := session(conn)) and s["estimated_tokens_used"] == 300_000, what="the transcript read")
    assert float(session(conn)["context_usage"]) == 0.30, "300,000 tokens are 30 % of 1M, not 100 % of 200k"
    assert conn.execute("SELECT count(*) AS n FROM prompts").fetchone()["n"] == 0


def test_a_statusline_report_of_the_old_conversation_cannot_reopen_the_context_check(conn, reactors, agent):
    reactors.start()
    agent.session_start()
    agent.statusline(90)
    old_id = agent.session_id
    agent.clear("d7a6890c-1c67-4386-a74e-e2cb9ac045a8", agent.transcript.replace("39c1", "d7a6"))
    agent.session_id = old_id                           # a statusline of the old conversation, late
    agent.statusline(91)
    agent.session_id = "d7a6890c-1c67-4386-a74e-e2cb9ac045a8"
    agent.statusline(3)
    wait_for(lambda: (s := session(conn)) and s["context_usage"] is not None and float(s["context_usage"]) == 0.03,
             what="the new conversation's report")
    reports = conn.execute("SELECT status FROM health_checks WHERE check_type = 'context' AND subject = 'session' "
                           "ORDER BY id").fetchall()
    assert [r["status"] for r in reports] == ["critical", "ok"], "the late 91 % report was ignored"


def test_statusline_prints_from_the_status_cache_with_the_database_down(conn, db, admin_dsn, reactors, agent):
    assert agent.statusline(12) == "ps-health shop · ctx 12% · offline", "no reactor has written figures yet"
    # long probe rounds: the cache written after the last forward stays current through the outage
    proc = reactors.start(probe="30")
    agent.session_start()
    agent.agent_start("toolu_01")
    agent.agent_start("toolu_02")
    wait_for(lambda: forwarded(reactors.spool)
             and status_cache(reactors.spool).get("panes", {}).get(agent.pane, {}).get("running") == 2,
             what="the status cache")
    assert agent.statusline(42) == "ps-health shop · ctx 42% · 2 running"
    name = sql.Identifier(conninfo_to_dict(db)["dbname"])
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(name))
        try:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE datname = current_database() AND application_name LIKE 'ps-health-reactor:%%'")
            assert agent.statusline(43) == "ps-health shop · ctx 43% · 2 running"
            other = Agent(reactors.spool, pane="%999", cwd="/home/me/newproj")
            assert other.statusline(None) == "ps-health newproj (not registered) · ctx ? · 0 running"
        finally:
            admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(name))
    assert proc.running()


def test_statusline_outside_the_pane_finds_the_session_by_its_project(conn, reactors, agent):
    reactors.start()
    agent.session_start()
    wait_for(lambda: forwarded(reactors.spool) and session(conn), what="the session registered")
    elsewhere = Agent(reactors.spool, pane=None, cwd="/home/me/other")
    wait_for(lambda: elsewhere.statusline(20, 1_000_000, "--project", "shop") == "ps-health shop · ctx 20% · 0 running",
             what="the status cache")
    wait_for(lambda: float(session(conn)["context_usage"] or 0) == 0.20, what="the report recorded by project")


def _turn(tokens: int) -> str:
    """One assistant turn of a Claude Code transcript using `tokens` of context."""
    return json.dumps({"type": "assistant", "message": {"role": "assistant", "model": "claude-opus-4-8", "usage": {
        "input_tokens": 10, "cache_creation_input_tokens": 0, "cache_read_input_tokens": tokens - 10,
        "output_tokens": 5}}})


def test_a_transaction_left_open_on_one_project_holds_back_only_that_projects_facts(conn, db, reactors, agent,
                                                                                  tmux_server):
    proc = reactors.start()
    agent.session_start()
    wait_for(lambda: session(conn), what="shop's session registered")
    holder = psycopg.connect(db)  # e.g. an agent's login that called once and left its transaction open
    try:
        holder.execute("SELECT ps_health.heartbeat_session('shop')")
        agent.agent_start("toolu_01")
        agent.agent_done("toolu_01")
        other = Agent(reactors.spool, cwd="/home/me/other", pane=tmux_server.recorder().target,
                      session_id="5a3e0c1e-7d7b-4a4e-9f00-0b1b2c3d4e5f")
        other.session_start()
        wait_for(lambda: session(conn, "other"), what="the other project's session, while shop's lock is held")
        wait_for(lambda: "agent facts of 'shop' wait for the next round" in proc.text(), what="the wait logged")
        assert spawn(conn, "toolu_01") is None, "shop's facts wait while its lock is held"
    finally:
        holder.close()
    wait_for(lambda: (s := spawn(conn, "toolu_01")) and s["status"] == "completed",
             what="shop's facts forwarded, in order, once the lock is free")
    wait_for(lambda: forwarded(reactors.spool), what="no fact left in the spool")
    assert "refused" not in proc.text()


def test_a_fact_naming_no_project_or_a_name_too_long_is_refused_and_later_facts_arrive(conn, reactors, agent):
    # the hooks cut names to size, but any process of the user may append to the spool
    proc = reactors.start()
    for project in ("p" * 3000, None):
        spool.append(str(reactors.spool), json.dumps({
            "kind": "turn", "t": datetime.now(timezone.utc).timestamp(), "project": project, "host": "host-a",
            "pane": agent.pane, "data": {}}).encode() + b"\n")
    agent.session_start()
    wait_for(lambda: session(conn), what="the fact after the refused ones")
    refused = [line for line in proc.text().splitlines() if " refused [" in line]
    assert len(refused) == 2 and "reactor.process.ingest: turn of None refused" in refused[1], refused
    assert max(map(len, refused)) < 500, "a long name is cut in the log"


def test_facts_set_aside_before_a_crash_keep_their_order_with_the_ones_after_them(conn, reactors, agent):
    """The reactor died after setting session_start aside and before its checkpoint: the batch still holds it,
    then session_end. The set-aside copy goes first, and the session ends (it must not come back live)."""
    directory = str(reactors.spool)
    spool.ensure_dir(directory)
    start = spool.encode("session_start", "shop", {"session_id": agent.session_id, "transcript_path": None,
                                                    "model": None, "agent": "claude"}, agent.pane, "host-a")
    end = spool.encode("session_end", "shop", {"reason": "exit"}, agent.pane, "host-a")
    copy = json.dumps({**json.loads(start), "origin": f"batch-000000000001.jsonl:{len(start)}"}).encode() + b"\n"
    write(directory, {"batch-000000000001.jsonl": start + end, "batch-000000000002-aside.jsonl": copy})
    proc = reactors.start()
    wait_for(lambda: forwarded(reactors.spool), what="every fact forwarded")
    s = session(conn)
    assert s is not None and s["ended_at"] is not None, s
    assert "refused" not in proc.text(), "the copy and the fact it was copied from went once, not twice"


def write(directory: str, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        fd = os.open(os.path.join(directory, name), os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, data)
        os.close(fd)


def test_a_round_that_ended_early_leaves_a_projects_facts_in_order(conn, reactors, agent):
    """The round before set shop's session_start aside (its lock was held), then ended early (the database went
    away) with the batch's spawn_start not read; spawn_end came in a later batch. They go in their order."""
    directory = str(reactors.spool)
    spool.ensure_dir(directory)
    fact = lambda kind, data: spool.encode(kind, "shop", data, agent.pane, "host-a")  # noqa: E731
    start = fact("session_start", {"session_id": agent.session_id, "transcript_path": None, "model": None,
                                   "agent": "claude"})
    other = spool.encode("turn", "beta", {}, "%99", "host-a")
    spawned = fact("spawn_start", {"task_id": "t1", "task_type": "research", "description": "d"})
    copy = json.dumps({**json.loads(start), "origin": f"batch-000000000001.jsonl:{len(start)}"}).encode() + b"\n"
    write(directory, {"batch-000000000001.jsonl": start + other + spawned, "batch-000000000002-aside.jsonl": copy,
                      "batch-000000000003.jsonl": fact("spawn_end", {"task_id": "t1", "error": None,
                                                                      "interrupted": None}),
                      spool.CHECKPOINT: json.dumps({"batch": "batch-000000000001.jsonl",
                                                    "offset": len(start)}).encode()})
    reactors.start()
    wait_for(lambda: forwarded(reactors.spool), what="every fact forwarded")
    assert spawn(conn, "t1")["status"] == "completed"


def test_a_fact_with_a_value_of_the_wrong_type_is_refused_and_later_facts_arrive(conn, reactors, agent):
    proc = reactors.start()
    for kind, data in (("context", {"session_id": None, "transcript_path": None, "percent": True,
                                    "window_size": None}),
                       ("spawn_end", {"task_id": "t9", "error": None, "interrupted": 7})):
        spool.append(str(reactors.spool), spool.encode(kind, "shop", data, agent.pane, "host-a"))
    agent.session_start()
    wait_for(lambda: session(conn), what="the fact after the refused ones")
    wait_for(lambda: forwarded(reactors.spool), what="every fact forwarded")
    assert "agent facts wait in the spool" not in proc.text()
