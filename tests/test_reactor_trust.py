"""The reactor never types into the wrong place: a replaced pane, a shell, a pane in a mode, a line the user is
typing on, another project's pane. Real tmux, real PostgreSQL, the real reactor process."""

from __future__ import annotations

import re
import shutil
import stat
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

from reactor.tmux.client import PaneRefused, sanitise
from reactor.tmux.typist import Trust, Typist
from tests.reactor_proc import HOST, create_login, delivered, failed_spawn, fast, prompt, session, submitted
from tests.support import wait_for
from tests.tmux_server import RECORDER

MARKER = r"\[ps-health #[0-9]+\]"


def _state(conn, project: str) -> dict:
    return conn.execute("SELECT * FROM ps_health.ps_sessions WHERE project = %s", (project,)).fetchone()


def _action(conn, prompt_id: int) -> str:
    return conn.execute("SELECT c.action_taken FROM ps_health.prompt_items i JOIN ps_health.health_checks c "
                        "ON c.id = i.check_id WHERE i.prompt_id = %s", (prompt_id,)).fetchone()["action_taken"] or ""


def _pane_checks(conn, project: str) -> list[str]:
    return [r["reason"] for r in conn.execute(
        "SELECT details->>'reason' AS reason FROM ps_health.health_checks WHERE project = %s AND check_type = 'pane' "
        "AND status <> 'ok' ORDER BY id", (project,))]


# ---------------------------------------------------------------- pane identity

BURST_SQL = """
WITH c AS (
    INSERT INTO ps_health.health_checks (project, check_type, status, subject, details)
    SELECT 'ps' || (g %% %(panes)s), 'spawn', 'warning', 'b' || g, '{}' FROM generate_series(1, %(n)s) g
    RETURNING id, project, subject),
st AS (
    INSERT INTO ps_health.check_state (project, check_type, subject, status, since, last_check_id)
    SELECT c.project, 'spawn', c.subject, 'warning', now(), c.id FROM c),
p AS (
    INSERT INTO ps_health.prompts (project, host, target, severity, text, state, not_before, created_at)
    SELECT c.project, %(host)s, s.tmux_target, 'warning', 'p-' || substr(c.subject, 2) || '-end', 'pending',
           now(), now()
      FROM c JOIN ps_health.ps_sessions s ON s.project = c.project ORDER BY c.id
    RETURNING id, text),
i AS (
    INSERT INTO ps_health.prompt_items (prompt_id, check_id, line)
    SELECT p.id, c.id, p.text FROM p JOIN c ON 'p-' || substr(c.subject, 2) || '-end' = p.text RETURNING prompt_id)
SELECT count(*) FROM i
"""
MARK_SQL = "UPDATE ps_health.prompts SET text = ps_health._marker(id) || ' ' || text WHERE text LIKE 'p-%'"


def test_tmux_restart_reusing_pane_ids_types_nothing_into_the_new_panes(conn, tmux_server, reactors):
    fast(conn, submit_delay="20 milliseconds", prompt_retry_delay="200 milliseconds", prompt_max_attempts="50")
    old = [tmux_server.recorder() for _ in range(4)]
    for n, pane in enumerate(old):
        session(conn, f"ps{n}", pane.target)
    session(conn, "quiet", tmux_server.recorder().target)  # never prompted: only the probe looks at it
    reactors.start("--lease", "5")
    # right after registration the reactor identifies each pane
    wait_for(lambda: conn.execute("SELECT bool_and(target_identity IS NOT NULL) AS ok FROM ps_health.ps_sessions"
                                  ).fetchone()["ok"], what="every pane identified")
    with conn.transaction():
        conn.execute(BURST_SQL, {"n": 400, "panes": len(old), "host": HOST})
        conn.execute(MARK_SQL)
    wait_for(lambda: conn.execute("SELECT count(*) AS n FROM ps_health.prompts WHERE state = 'delivered'"
                                  ).fetchone()["n"] >= 40, what="some prompts delivered")

    tmux_server.kill()
    tmux_server.start()  # a new server on the same socket: an unrelated session, more panes, the same %ids
    new = [tmux_server.recorder() for _ in range(7)]
    assert {p.target for p in old} <= {p.target for p in new}

    wait_for(lambda: conn.execute("SELECT count(*) AS n FROM ps_health.prompts WHERE state IN ('pending', 'claimed')"
                                  ).fetchone()["n"] == 0, timeout=40, interval=0.2, what="no prompt left to try")
    assert [pane.received() for pane in new] == [b""] * len(new)
    for project in ("ps0", "ps1", "ps2", "ps3", "quiet"):
        # a delivery that found the pane changed, or the next probe round, says why
        reasons = wait_for(lambda project=project: _pane_checks(conn, project), what=f"the pane check of {project}")
        assert re.search(r"is not the pane the session registered", reasons[0])
        assert _state(conn, project)["target_state"] == "gone"
    counts = {r["state"]: r["n"] for r in conn.execute("SELECT state, count(*) AS n FROM ps_health.prompts "
                                                       "GROUP BY state")}
    submitted_lines = sum(len(pane.submitted()) for pane in old)
    print(f"\n400 prompts, tmux restarted: {counts}; submitted in the old panes {submitted_lines}, "
          f"typed into the new panes 0")
    # An Enter tmux took just as its server was killed may never reach the program (one per pane at most: each
    # pane gets one prompt at a time); every other prompt recorded delivered was submitted in its old pane.
    assert 0 <= counts.get("delivered", 0) - submitted_lines <= len(old), \
        "nothing recorded delivered that no old pane got"
    assert counts.get("delivered", 0) + counts.get("waiting", 0) == 400


# ---------------------------------------------------------------- agent gate

def _wait_for_shell(tmux_server, target: str) -> None:
    wait_for(lambda: tmux_server.run("display-message", "-p", "-t", target, "#{pane_current_command}") == "bash",
             what="the pane back at bash")


def test_a_pane_back_at_bash_gets_nothing_and_the_prompt_waits_for_the_agent(conn, tmux_server, reactors, tmp_path):
    fast(conn, prompt_defer_delay="1 second")
    # a marker without "#" and an error ending in a command: what a shell would run after the ";"
    conn.execute("UPDATE ps_health.prompt_templates SET body = '[ps-health {prompt_id}]' WHERE key = 'marker'")
    conn.execute("UPDATE ps_health.prompt_templates SET body = '{error}' WHERE key = 'spawn.failed'")
    pwned = tmp_path / "pwned"
    target, _ = tmux_server.run("new-session", "-d", "-x", "100", "-y", "30", "-P", "-F", "#{pane_id} #{pane_pid}",
                                "bash", "--norc", "--noprofile").split()
    records = [tmp_path / "agent-1.bin", tmp_path / "agent-2.bin"]

    def start_agent(record: Path) -> None:  # the user starts the agent CLI from the shell
        tmux_server.run("send-keys", "-t", target, f"{sys.executable} {RECORDER} {record}", "Enter")
        wait_for(record.exists, what="the agent started")

    start_agent(records[0])
    session(conn, "alpha", target)
    reactors.start()
    first = delivered(conn, failed_spawn(conn, "alpha", "t1", "first"))
    wait_for(lambda: records[0].read_bytes().endswith(b"\r"), what="the first prompt submitted")

    tmux_server.run("send-keys", "-t", target, "C-c")  # the agent CLI exits: the pane is back at bash
    _wait_for_shell(tmux_server, target)
    prompt_id = failed_spawn(conn, "alpha", "t2", f"x; touch {pwned}")

    wait_for(lambda: "deferred" in _action(conn, prompt_id), what="the prompt deferred")
    assert "the pane runs bash, not an accepted agent program (recorder)" in _action(conn, prompt_id)
    row = prompt(conn, prompt_id)
    assert (row["state"], row["attempts"]) == ("pending", 0)
    assert "touch" not in tmux_server.run("capture-pane", "-p", "-t", target)  # nothing typed into the shell
    assert not pwned.exists()

    start_agent(records[1])
    row = delivered(conn, prompt_id, timeout=20)
    assert row["attempts"] == 1, "waiting at the shell used no attempt"
    wait_for(lambda: records[1].read_bytes() == sanitise(row["text"]).encode() + b"\r", what="the prompt in the agent")
    assert not pwned.exists()
    assert first["attempts"] == 1


def _stand_in(folder: Path, name: str, source: str) -> Path:
    """An executable script called `name`, as an agent CLI installs itself (run through its interpreter)."""
    path = folder / name
    path.write_text(source)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


GEMINI = """#!/usr/bin/env node
// A stand-in for Gemini CLI: node runs it, a readline input line with a "> " prompt, submitted lines recorded.
const fs = require('fs');
const rl = require('readline').createInterface({input: process.stdin, output: process.stdout, prompt: '> '});
rl.on('line', line => { fs.appendFileSync(process.argv[2], line + '\\n'); rl.prompt(); });
rl.prompt();
fs.writeFileSync(process.argv[2] + '.ready', '');
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_agents_run_by_node_or_python_are_known_by_their_script_and_other_programs_are_not(
        conn, tmux_server, reactors, tmp_path):
    conn.execute("SELECT ps_health.set_setting('submit_delay', '100 milliseconds')")
    conn.execute("SELECT ps_health.set_setting('idle_seconds', '0')")
    # The stand-ins draw a plain "> " prompt, not the real CLIs' screens: their profiles say so.
    conn.execute("UPDATE ps_health.agent_profiles p SET (input_pattern, ready_pattern, dialog_pattern, busy_pattern) "
                 "= (SELECT input_pattern, NULL, NULL, NULL FROM ps_health.agent_profiles WHERE program = '*') "
                 "WHERE p.program IN ('gemini', 'aider')")
    gemini = _stand_in(tmp_path, "gemini", GEMINI)
    aider = _stand_in(tmp_path, "aider", RECORDER.read_text())
    out = {name: tmp_path / f"{name}.out" for name in ("gemini", "aider", "recorder")}
    targets = {
        "gemini": tmux_server.run("new-session", "-d", "-P", "-F", "#{pane_id}", "node", str(gemini),
                                  str(out["gemini"])),
        "aider": tmux_server.run("new-session", "-d", "-P", "-F", "#{pane_id}", sys.executable, str(aider),
                                 str(out["aider"])),
        "recorder": tmux_server.recorder().target,
    }
    wait_for(lambda: Path(f"{out['gemini']}.ready").exists() and out["aider"].exists(), what="the agents started")
    for name, target in targets.items():  # the default agent_programs: no setting for these projects
        conn.execute("SELECT ps_health.register_session(%s, 'cli', %s, %s)", (name, target, HOST))
    reactors.start()

    ids = {name: failed_spawn(conn, name) for name in targets}

    lines = {"gemini": out["gemini"], "aider": Path(f"{out['aider']}.lines")}  # what each agent was sent
    for name, path in lines.items():
        text = sanitise(delivered(conn, ids[name])["text"]).encode()
        assert wait_for(lambda path=path: path.exists() and path.read_bytes(), what=f"a line in {name}") == text + b"\n"
    wait_for(lambda: "deferred" in _action(conn, ids["recorder"]), what="the recorder refused")
    assert re.search(r"the pane runs python[0-9.]* recorder\.py, not an accepted agent program "
                     r"\(claude, codex, gemini, aider, opencode\)", _action(conn, ids["recorder"]))
    assert prompt(conn, ids["recorder"])["state"] == "pending"


# ---------------------------------------------------------------- modes

def test_a_pane_in_copy_mode_is_deferred_and_other_panes_are_served(conn, tmux_server, reactors):
    fast(conn, prompt_defer_delay="1 second")
    reading, working = tmux_server.recorder(), tmux_server.recorder()
    session(conn, "reading", reading.target)
    session(conn, "working", working.target)
    tmux_server.run("copy-mode", "-t", reading.target)  # the user scrolls back through the output
    reactors.start()

    waiting = failed_spawn(conn, "reading")
    wait_for(lambda: "deferred" in _action(conn, waiting), what="the prompt deferred")
    row = delivered(conn, failed_spawn(conn, "working"))
    assert submitted(working) == sanitise(row["text"]).encode() + b"\r"

    assert "the pane is in copy-mode" in _action(conn, waiting)
    assert tmux_server.run("display-message", "-p", "-t", reading.target, "#{pane_in_mode}") == "1"
    assert reading.received() == b""
    tmux_server.run("send-keys", "-t", reading.target, "-X", "cancel")  # done reading
    row = delivered(conn, waiting, timeout=20)
    assert submitted(reading) == sanitise(row["text"]).encode() + b"\r"


# ---------------------------------------------------------------- the input line

def test_text_the_user_is_typing_is_never_touched_and_the_prompt_waits_for_an_empty_line(
        conn, tmux_server, reactors):
    fast(conn, prompt_defer_delay="1 second")
    pane = tmux_server.recorder()
    session(conn, "alpha", pane.target)
    tmux_server.run("send-keys", "-t", pane.target, "-l", "half a thought")  # the user is typing
    reactors.start()

    prompt_id = failed_spawn(conn, "alpha")
    wait_for(lambda: "deferred" in _action(conn, prompt_id), what="the prompt deferred")
    assert "the input line holds text the reactor did not type" in _action(conn, prompt_id)
    assert pane.received() == b"half a thought"

    tmux_server.run("send-keys", "-t", pane.target, "Enter")  # the user sends their line
    row = delivered(conn, prompt_id, timeout=20)
    wait_for(lambda: len(pane.submitted()) == 2, what="the prompt submitted")
    assert pane.submitted() == [b"half a thought", sanitise(row["text"]).encode()]


def _trust(**given) -> Trust:
    return Trust(**{"identity": None, "programs": ("recorder",), "marker_pattern": MARKER,
                    "profiles": {"*": {"input_pattern": r"^> ", "clear_keys": ["C-u"]}}, **given})


def test_a_prompt_typed_earlier_but_not_submitted_is_submitted_once_not_typed_again(tmux_server):
    pane = tmux_server.recorder()
    text = "[ps-health #7] alpha: spawn t1 failed"
    tmux_server.run("send-keys", "-t", pane.target, "-l", text)  # a reactor typed it and was killed

    outcome = Typist(tmux_server.tmux).deliver(pane.target, text, 0.1, trust=_trust())

    assert outcome.outcome == "delivered" and "typed by an earlier attempt" in outcome.detail
    wait_for(lambda: pane.submitted() == [text.encode()], what="one submission")
    assert pane.received() == text.encode() + b"\r"


def test_an_earlier_prompt_left_on_the_input_line_is_cleared_before_the_next_is_typed(tmux_server):
    pane = tmux_server.recorder()
    partial, text = "[ps-health #6] beta: context win", "[ps-health #7] alpha: spawn t1 failed"
    tmux_server.run("send-keys", "-t", pane.target, "-l", partial)

    outcome = Typist(tmux_server.tmux).deliver(pane.target, text, 0.1, trust=_trust())

    assert outcome.outcome == "delivered", outcome
    wait_for(lambda: pane.submitted() == [text.encode()], what="only the new prompt submitted")
    assert pane.received() == partial.encode() + b"\x15" + text.encode() + b"\r"


def test_a_prompt_already_submitted_by_an_earlier_attempt_is_not_typed_again(tmux_server):
    pane = tmux_server.recorder()
    text = "[ps-health #7] alpha: spawn t1 failed"
    tmux_server.run("send-keys", "-t", pane.target, "-l", text)
    tmux_server.run("send-keys", "-t", pane.target, "Enter")  # submitted; the reactor died before recording it
    wait_for(lambda: pane.submitted() == [text.encode()], what="the first submission")

    again = Typist(tmux_server.tmux).deliver(pane.target, text, 0.1, trust=_trust(claimed_before=True))

    assert again.outcome == "delivered" and "not typed again" in again.detail
    assert pane.submitted() == [text.encode()]
    assert pane.received() == text.encode() + b"\r"


def test_a_pane_with_synchronize_panes_on_gets_nothing_and_no_pane_beside_it_does(tmux_server, tmp_path):
    # With synchronize-panes on, tmux copies every key sent to the pane into the other panes of its window: a
    # shell beside the agent would run the prompt. Nothing is typed while it is on; once it is off, the pane
    # alone gets the prompt.
    pane = tmux_server.recorder()
    beside = tmux_server.run("split-window", "-d", "-t", pane.target, "-P", "-F", "#{pane_id}",
                             sys.executable, str(RECORDER), str(tmp_path / "beside.bin"))
    wait_for((tmp_path / "beside.bin").exists, what="the pane beside set up")
    tmux_server.run("set-option", "-w", "-t", pane.target, "synchronize-panes", "on")
    text = "[ps-health #7] alpha: spawn t1 failed"
    typist, checks = Typist(tmux_server.tmux), _trust()

    refused = typist.deliver(pane.target, text, 0.1, trust=checks)

    assert refused.outcome == "deferred" and "synchronize-panes is on" in refused.detail, refused
    tmux_server.run("set-option", "-w", "-t", pane.target, "synchronize-panes", "off")
    assert typist.deliver(pane.target, text, 0.1, trust=checks).outcome == "delivered"
    wait_for(lambda: pane.submitted() == [text.encode()], what="the prompt submitted in its pane")
    assert (tmp_path / "beside.bin").read_bytes() == b"", f"keys reached {beside}"


def test_synchronize_panes_turned_on_after_the_look_stops_the_keys_at_tmux(tmux_server, tmp_path):
    # tmux itself checks the option as it sends each key: a pane synchronized between the look and the keys
    # gets nothing.
    pane = tmux_server.recorder()
    tmux_server.run("split-window", "-d", "-t", pane.target, sys.executable, str(RECORDER),
                    str(tmp_path / "beside.bin"))
    wait_for((tmp_path / "beside.bin").exists, what="the pane beside set up")
    look = tmux_server.tmux.look(pane.target)
    tmux_server.run("set-option", "-w", "-t", pane.target, "synchronize-panes", "on")
    with pytest.raises(PaneRefused):
        tmux_server.tmux.send_keys(pane.target, look.identity, "Enter")
    assert pane.received() == b"" and (tmp_path / "beside.bin").read_bytes() == b""


EXIT_AGENT = RECORDER.with_name("exit_agent.py")


def test_an_agent_that_exits_to_a_shell_while_the_last_prompt_is_taken_gets_nothing_more(tmux_server, tmp_path):
    # A prompt follows another into the same pane: the reactor waits for the agent to take the first, and
    # meanwhile the agent exits to a shell whose prompt looks like an agent's input line ("❯ "). The program
    # in the pane is checked again on that look, so nothing is typed into the shell.
    record = tmp_path / "agent.bin"
    target = tmux_server.run("new-session", "-d", "-x", "100", "-y", "30", "-P", "-F", "#{pane_id}",
                             "env", "PS1=❯ ", "bash", "--norc", "--noprofile")
    wait_for(lambda: "❯" in tmux_server.run("capture-pane", "-p", "-t", target), what="the shell's prompt")
    tmux_server.run("send-keys", "-t", target, "-l", f"{sys.executable} {EXIT_AGENT} {record} 0.3")
    tmux_server.run("send-keys", "-t", target, "Enter")
    wait_for(record.exists, what="the agent up")
    checks = Trust(identity=None, programs=("exit_agent",), marker_pattern=MARKER,
                   profiles={"*": {"input_pattern": r"^\s*[>❯](\s|$)", "clear_keys": ["C-u"]}})
    typist = Typist(tmux_server.tmux)

    first = typist.deliver(target, "[ps-health #1] first", 0.1, trust=checks)
    second = typist.deliver(target, "[ps-health #2] second: x; touch nothing", 0.1, trust=checks)

    assert first.outcome == "delivered", first
    assert second.outcome == "deferred" and "not an accepted agent program" in second.detail, second
    assert "[ps-health #2]" not in tmux_server.run("capture-pane", "-p", "-t", target)


def test_text_the_user_typed_beside_an_unsubmitted_prompt_is_never_cleared(tmux_server):
    # The prompt was typed, and before its Enter the user typed more on the same line: it is not submitted;
    # the next attempt finds the prompt and the user's words and touches neither.
    pane = tmux_server.recorder()
    text = "[ps-health #7] alpha: spawn t1 failed"
    tmux_server.run("send-keys", "-t", pane.target, "-l", text + " -- and rerun the migration")

    outcome = Typist(tmux_server.tmux).deliver(pane.target, text, 0.1, trust=_trust())

    assert outcome.outcome == "deferred" and "did not type" in outcome.detail, outcome
    assert b"\x15" not in pane.received() and pane.submitted() == []


@pytest.mark.parametrize("stdin", ["inherited", "/dev/tty"])
def test_a_program_the_agent_started_on_its_terminal_gets_nothing(tmux_server, tmp_path, stdin):
    # The agent opens a program on its own terminal (a pager, $EDITOR), its standard input inherited or
    # /dev/tty (`cmd </dev/tty`, `xargs -o`: the pane's terminal under another name): the agent still leads
    # the foreground process group, but the keys would go to the program. Here the program is cat, and a line
    # of the screen looks like an input line.
    agent = tmp_path / "opener_agent.py"
    opened = "stdin=open('/dev/tty')" if stdin == "/dev/tty" else ""
    agent.write_text(f"import subprocess, sys\nprint('> ', flush=True)\nchild = subprocess.Popen(['cat'], {opened})\n"
                     "open(sys.argv[1], 'w').close()\nchild.wait()\n")
    ready = tmp_path / "ready"
    target = tmux_server.run("new-session", "-d", "-x", "100", "-y", "30", "-P", "-F", "#{pane_id}",
                             sys.executable, str(agent), str(ready))
    wait_for(ready.exists, what="the agent's program started")
    checks = Trust(identity=None, programs=("opener_agent",), marker_pattern=MARKER,
                   profiles={"*": {"input_pattern": r"^>( |$)", "clear_keys": ["C-u"]}})
    outcome = Typist(tmux_server.tmux).deliver(target, "[ps-health #1] spawn failed", 0.1, trust=checks)

    assert outcome.outcome == "deferred" and outcome.detail.startswith("cat, started by the agent, reads"), outcome
    assert "[ps-health #1]" not in tmux_server.run("capture-pane", "-p", "-t", target)


RELAUNCHING_AGENT = """import subprocess, sys, time
if sys.argv[2] == "launcher":  # restarts itself as its child, as Gemini CLI does (Codex CLI's node script too)
    sys.exit(subprocess.call([sys.executable, sys.argv[0], sys.argv[1], "agent"] + sys.argv[3:]))
print("> ", end="", flush=True)
child = subprocess.Popen(sys.argv[3:]) if sys.argv[3:] else None  # a program it opens on its terminal
open(sys.argv[1], "w").close()
while True:
    time.sleep(60)
"""


@pytest.mark.parametrize("opens", ["nothing", "cat", "docker"])
def test_an_agent_its_launcher_started_is_typed_into_and_a_program_it_opened_is_not(tmux_server, tmp_path, opens):
    # The agent runs as its launcher's child; it may open cat on its terminal (refused), or run its sandbox in a
    # container whose runner gets the terminal (docker: the agent inside gets the keys).
    agent = tmp_path / "relaunching_agent.py"
    agent.write_text(RELAUNCHING_AGENT)
    program = []
    if opens == "cat":
        program = ["cat"]
    elif opens == "docker":
        runner = tmp_path / "docker"  # a stand-in container runner reading the terminal
        runner.write_text(f"#!{sys.executable}\nimport sys\nsys.stdin.read()\n")
        runner.chmod(0o755)
        program = [str(runner), "run", "-it", "sandbox-image"]
    ready = tmp_path / "ready"
    target = tmux_server.run("new-session", "-d", "-x", "100", "-y", "30", "-P", "-F", "#{pane_id}", sys.executable,
                             str(agent), str(ready), "launcher", *program)
    wait_for(ready.exists, what="the agent started by its launcher")
    checks = Trust(identity=None, programs=("relaunching_agent",), marker_pattern=MARKER,
                   profiles={"*": {"input_pattern": r"^>( |$)", "clear_keys": ["C-u"]}})

    outcome = Typist(tmux_server.tmux).deliver(target, "[ps-health #1] spawn failed", 0.1, attempts=1, trust=checks)

    if opens == "cat":
        assert outcome.outcome == "deferred" and outcome.detail.startswith("cat, started by the agent"), outcome
    else:
        assert outcome.outcome != "deferred", outcome
        wait_for(lambda: "[ps-health #1] spawn failed" in tmux_server.run("capture-pane", "-p", "-t", target),
                 what="the prompt typed into the agent")

# ---------------------------------------------------------------- one project per pane

@pytest.fixture
def agent_logins(server, db):
    """agent_logins(project): a connection as a login that may act as that project's agent only (needs this
    run's own server)."""
    admin_dsn, cluster = server
    if cluster is None:
        pytest.skip("logins need the test run's own PostgreSQL server")
    made: list[tuple[str, psycopg.Connection]] = []

    def login(project: str) -> psycopg.Connection:
        role, password = f"agent_{project}_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
        create_login(admin_dsn, role, password, "ps_health_agent")
        with psycopg.connect(db, autocommit=True) as c:
            c.execute("SELECT ps_health.grant_agent(%s, %s)", (role, project))
        agent = psycopg.connect(make_conninfo(db, user=role, password=password), autocommit=True,
                                row_factory=dict_row)
        made.append((role, agent))
        return agent

    yield login
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        for role, agent in made:
            agent.close()
            admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@pytest.fixture
def agent_login(agent_logins):
    """A login that may act as the agent of project alpha only."""
    return agent_logins("alpha")


def test_an_agent_cannot_point_its_session_at_another_projects_pane(conn, tmux_server, reactors, agent_login):
    fast(conn)
    beta = tmux_server.recorder(session="beta-ps")
    session(conn, "beta", beta.target)
    conn.execute("SELECT ps_health.set_setting('auto_cycle', 'true', 'alpha')")
    conn.execute("SELECT ps_health.set_setting('agent_programs', '[\"recorder\"]', 'alpha')")
    reactors.start()
    wait_for(lambda: _state(conn, "beta")["target_identity"], what="beta's pane identified")

    with pytest.raises(psycopg.errors.InsufficientPrivilege,
                       match=f'pane {beta.target} on host {HOST} belongs to the live session of another project'):
        agent_login.execute("SELECT ps_health.register_session('alpha', 'cli', %s, %s)", (beta.target, HOST))
    # the same pane by another name gets past the name check; the reactor, seeing the pane, refuses it
    agent_login.execute("SELECT ps_health.register_session('alpha', 'cli', 'beta-ps:0.0', %s)", (HOST,))
    agent_login.execute("SELECT ps_health.start_spawn('alpha', 'evil', 'impl')")
    agent_login.execute("SELECT ps_health.finish_spawn('alpha', 'evil', 1, 'rm -rf ~')")
    agent_login.execute("SELECT ps_health.report_handoff('alpha', '/tmp/x; rm -rf ~')")  # /clear, then a resume

    wait_for(lambda: _state(conn, "alpha")["target_state"] == "gone", what="alpha's session refused its pane")
    assert _pane_checks(conn, "alpha") == [f'pane {beta.target} on host {HOST} belongs to the live session of '
                                           'another project']
    wait_for(lambda: conn.execute("SELECT count(*) AS n FROM ps_health.prompts WHERE project = 'alpha' "
                                  "AND state IN ('pending', 'claimed')").fetchone()["n"] == 0,
             what="alpha's prompts waiting")
    assert beta.received() == b""
    assert _state(conn, "beta")["target_state"] == "seen"


def _alpha_fails(conn, alpha, error: str) -> int:
    """Alpha's agent reports a spawn failed with `error` (its text of choice): the prompt it queues, by id."""
    alpha.execute("SELECT ps_health.start_spawn('alpha', 'evil', 'impl')")
    alpha.execute("SELECT ps_health.finish_spawn('alpha', 'evil', 1, %s)", (error,))
    return conn.execute("SELECT max(id) AS id FROM ps_health.prompts WHERE project = 'alpha'").fetchone()["id"]


def _beta_pane_and_two_agents(conn, tmux_server, agent_logins):
    """A recorder pane in session beta-ps, and the agent logins of projects alpha and beta (each its own only)."""
    fast(conn, prompt_defer_delay="1 second")
    conn.execute("SELECT ps_health.set_setting('agent_programs', '[\"recorder\"]')")
    return tmux_server.recorder(session="beta-ps"), agent_logins("alpha"), agent_logins("beta")


def test_a_pane_two_projects_name_two_ways_is_typed_into_for_neither_until_one_ends(
        conn, tmux_server, reactors, agent_logins):
    pane, alpha, beta = _beta_pane_and_two_agents(conn, tmux_server, agent_logins)
    # beta's hooks register its pane (as at every /clear); alpha's agent names the same pane another way
    beta.execute("SELECT ps_health.register_session('beta', 'cli', %s, %s)", (pane.target, HOST))
    alpha.execute("SELECT ps_health.register_session('alpha', 'cli', 'beta-ps:0.0', %s)", (HOST,))
    evil = _alpha_fails(conn, alpha, "PWNED; rm -rf ~")
    reactors.start()

    wait_for(lambda: "another project's session on this host names a pane not identified yet" in _action(conn, evil),
             what="alpha's prompt deferred, its pane bound to nobody")
    wait_for(lambda: any("is also named by another project's session" in r for r in _pane_checks(conn, "alpha")),
             what="the probe round saying why")
    assert (_state(conn, "alpha")["target_identity"], _state(conn, "beta")["target_identity"]) == (None, None)
    assert _state(conn, "beta")["target_state"] != "gone"
    assert pane.received() == b""

    # alpha's session ends: the pane is beta's, and beta's own prompt reaches it
    alpha.execute("SELECT ps_health.end_session('alpha')")
    own = failed_spawn(conn, "beta", "b1", "beta's own error")
    delivered(conn, own, timeout=30)
    received = submitted(pane)
    assert f"[ps-health #{own}]".encode() in received and b"PWNED" not in received
    assert _state(conn, "beta")["target_identity"] is not None


@pytest.fixture
def other_reactor(server, db):
    """A connection as a reactor login granted host-b only (needs this run's own server)."""
    admin_dsn, cluster = server
    if cluster is None:
        pytest.skip("logins need the test run's own PostgreSQL server")
    role, password = f"reactor_b_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    create_login(admin_dsn, role, password, "ps_health_reactor")
    with psycopg.connect(db, autocommit=True) as c:
        c.execute("SELECT ps_health.grant_reactor(%s, 'host-b')", (role,))
    other = psycopg.connect(make_conninfo(db, user=role, password=password), autocommit=True, row_factory=dict_row)
    yield other
    other.close()
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_a_reactor_of_another_host_cannot_bind_a_pane_here_so_an_agent_can_take_it(
        conn, tmux_server, reactors, agent_logins, other_reactor):
    pane, alpha, beta = _beta_pane_and_two_agents(conn, tmux_server, agent_logins)
    beta.execute("SELECT ps_health.register_session('beta', 'cli', %s, %s)", (pane.target, HOST))
    # host-b's reactor login records a made-up identity for beta's pane on host-a ...
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match=f'may not act for host "{HOST}"'):
        other_reactor.execute("SELECT ps_health.bind_target('beta', %s, %s, '1 1 %%999 1')", (HOST, pane.target))
    assert _state(conn, "beta")["target_identity"] is None
    # (had it been recorded, alpha's agent naming the same pane another way would find it held by nobody, be bound
    # to it, and get its text typed into beta's pane while beta's session went gone)
    alpha.execute("SELECT ps_health.register_session('alpha', 'cli', 'beta-ps:0.0', %s)", (HOST,))
    evil = _alpha_fails(conn, alpha, "PWNED")
    reactors.start()

    wait_for(lambda: "another project's session on this host names a pane not identified yet" in _action(conn, evil),
             what="alpha's prompt deferred")
    assert pane.received() == b""
    alpha.execute("SELECT ps_health.end_session('alpha')")
    own = failed_spawn(conn, "beta", "b1", "beta's own error")
    delivered(conn, own, timeout=30)
    assert b"PWNED" not in submitted(pane)
    assert _state(conn, "beta")["target_identity"].split()[2] == pane.target


def test_a_pane_whose_session_ended_is_not_taken_by_another_projects_agent_before_its_own_returns(
        conn, tmux_server, reactors, agent_logins):
    pane, alpha, beta = _beta_pane_and_two_agents(conn, tmux_server, agent_logins)
    beta.execute("SELECT ps_health.register_session('beta', 'cli', %s, %s)", (pane.target, HOST))
    reactors.start()
    wait_for(lambda: _state(conn, "beta")["target_identity"], what="beta's pane identified")
    # beta's agent exits (its session ends); alpha's agent registers that pane at once, by its own id
    beta.execute("SELECT ps_health.end_session('beta')")
    alpha.execute("SELECT ps_health.register_session('alpha', 'cli', %s, %s)", (pane.target, HOST))
    evil = _alpha_fails(conn, alpha, "PWNED")

    wait_for(lambda: _state(conn, "alpha")["target_state"] == "gone", what="alpha refused the pane beta had")
    assert _pane_checks(conn, "alpha")[-1].startswith(f'pane {pane.target} on host {HOST} is the pane of another '
                                                      'project, whose session ended there')
    wait_for(lambda: prompt(conn, evil)["state"] == "waiting", what="alpha's prompt waiting")
    # beta's agent starts again in its pane: its hooks register it, and its own prompt reaches it
    beta.execute("SELECT ps_health.register_session('beta', 'cli', %s, %s)", (pane.target, HOST))
    own = failed_spawn(conn, "beta", "b1", "beta's own error")
    delivered(conn, own, timeout=30)
    assert b"PWNED" not in submitted(pane)


@pytest.mark.parametrize("beta_target", ["beta-ps:0", "beta-ps:win", "=beta-ps:0.0", "%01", "{last}", "@1"])
def test_a_pane_is_registered_only_by_a_name_the_probe_resolves_exactly(conn, agent_logins, beta_target):
    # tmux resolves these names too, but the probe round, which tells two projects' sessions on one pane
    # apart, cannot: another project's agent naming the pane by its id would be given it
    beta = agent_logins("beta")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=re.escape(f'got "{beta_target}"')):
        beta.execute("SELECT ps_health.register_session('beta', 'cli', %s, %s)", (beta_target, HOST))
    assert _state(conn, "beta") is None


def test_a_pane_tmux_finds_only_by_a_partial_name_is_never_typed_into(conn, tmux_server, reactors):
    fast(conn)
    pane = tmux_server.recorder(session="beta-ps")
    session(conn, "beta", "beta")  # no session is named "beta": tmux would take beta-ps, its prefix
    reactors.start()
    own = failed_spawn(conn, "beta", "b1", "an error")
    wait_for(lambda: prompt(conn, own)["outcome"] == "target_missing", what="the prompt not typed")
    assert "no pane is named beta exactly" in prompt(conn, own)["detail"]
    wait_for(lambda: any("pane beta was not found" in r for r in _pane_checks(conn, "beta")),
             what="the probe saying the target is not there")
    assert pane.received() == b""
