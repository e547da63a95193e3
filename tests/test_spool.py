"""The host spool and the hot path, without a database: concurrent writers, the reader's batches and
checkpoint, what hooks and the statusline write and print, and what they import."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading

import pytest

from reactor.agent import spool
from reactor.agent.statusline import StatusInput, line_for
from tests.claude_code import Agent
from tests.support import ROOT

WRITERS, FACTS_EACH = 8, 200

_WRITER = """
import sys
from reactor.agent import spool
directory, writer, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
for seq in range(count):
    spool.append(directory, spool.encode("turn", "p" + writer, {"seq": seq, "pad": "x" * (seq % 50) * 40},
                                         "%1", "h"))
"""


def test_concurrent_writers_lose_and_interleave_nothing_while_the_reader_takes_batches(tmp_path):
    directory = str(tmp_path / "spool")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    writers = [subprocess.Popen([sys.executable, "-c", _WRITER, directory, str(w), str(FACTS_EACH)], env=env)
               for w in range(WRITERS)]
    reader = spool.Reader(directory)
    seen: list[dict] = []
    taken = 0

    def drain() -> None:
        nonlocal taken
        assert reader.lock()
        try:
            taken += reader.take() is not None
            for name in reader.batches():
                for line, end in reader.facts(name):
                    seen.append(json.loads(line))  # a torn or interleaved line would not parse
                    reader.ack(name, end)
                reader.done(name)
        finally:
            reader.unlock()

    while any(w.poll() is None for w in writers):
        drain()
    assert all(w.wait() == 0 for w in writers)
    drain()
    assert len(seen) == WRITERS * FACTS_EACH
    for w in range(WRITERS):
        mine = [f["data"]["seq"] for f in seen if f["project"] == f"p{w}"]
        assert mine == list(range(FACTS_EACH)), f"writer {w}: lost, duplicated or reordered facts"
    assert taken > 1, "the reader took several batches while the writers wrote"
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700


def test_reader_resumes_at_the_checkpoint_and_keeps_batches_in_order(tmp_path):
    directory = str(tmp_path)
    for n in range(3):
        spool.append(directory, spool.encode("turn", f"p{n}", {}, None, "h"))
    reader = spool.Reader(directory)
    first = reader.take()
    spool.append(directory, spool.encode("turn", "p3", {}, None, "h"))
    second = reader.take()
    assert reader.batches() == [first, second]
    line, end = next(reader.facts(first))
    reader.ack(first, end)
    # a new reader (the reactor restarted) goes on after the acknowledged fact
    projects = [json.loads(line)["project"] for name in spool.Reader(directory).batches()
                for line, _ in spool.Reader(directory).facts(name)]
    assert projects == ["p1", "p2", "p3"]


def test_facts_set_aside_come_before_every_batch_not_set_aside_and_each_batch_keeps_its_checkpoint(tmp_path):
    directory = str(tmp_path)
    for n in range(3):
        spool.append(directory, spool.encode("turn", f"p{n}", {}, None, "h"))
    reader = spool.Reader(directory)
    assert reader.lock()
    first = reader.take()
    for line, end in reader.facts(first):
        if json.loads(line)["project"] == "p0":
            reader.set_aside(line, spool.source(line, first, end))  # p0's lock is busy: it waits
        reader.ack(first, end)
        if json.loads(line)["project"] == "p1":
            break  # the round ends early (the database went away): p2 is not read yet
    reader.unlock()
    spool.append(directory, spool.encode("turn", "p3", {}, None, "h"))
    assert reader.lock()
    reader.take()
    aside, rest = reader.batches()[0], reader.batches()[1:]
    assert aside.endswith(spool.ASIDE_SUFFIX) and rest[0] == first
    read = []
    for name in reader.batches():
        for line, end in reader.facts(name):
            read.append(json.loads(line)["project"])
            reader.ack(name, end)  # an ack in one batch keeps every other batch's place
    assert read == ["p0", "p2", "p3"]
    assert all(stat.S_IMODE(os.stat(tmp_path / n).st_mode) == 0o600 for n in reader.batches())


def test_a_fact_copied_aside_just_before_the_reader_died_is_known_by_where_it_was_read(tmp_path):
    directory = str(tmp_path)
    spool.append(directory, spool.encode("turn", "p0", {}, None, "h"))
    reader = spool.Reader(directory)
    assert reader.lock()
    first = reader.take()
    line, end = next(reader.facts(first))
    reader.set_aside(line, spool.source(line, first, end))  # ... and no ack: the reader died here
    reader.unlock()
    again = spool.Reader(directory)
    assert again.lock()
    copies = again.set_aside_sources()
    origins = {spool.source(line, name, end) for name in again.batches() for line, end in again.facts(name)}
    assert origins == {f"{first}:{end}"} and len(copies[f"{first}:{end}"]) == 1


def test_files_that_are_not_batches_are_left_alone(tmp_path):
    directory = str(tmp_path)
    spool.ensure_dir(directory)
    for stray in ("batch-1.jsonl", "batch-abc.jsonl", "batch-.jsonl", "batch-000000000009-x.jsonl"):
        (tmp_path / stray).write_bytes(b"{}\n")
    spool.append(directory, spool.encode("turn", "p0", {}, None, "h"))
    reader = spool.Reader(directory)
    assert reader.take() == "batch-000000000001.jsonl" and reader.batches() == ["batch-000000000001.jsonl"]


def test_an_overlong_line_is_skipped_whole(tmp_path):
    directory = str(tmp_path)
    with open(tmp_path / spool.ACTIVE, "wb") as fh:
        fh.write(b"x" * (spool.MAX_LINE * 2 + 10) + b"\n")
    spool.append(directory, spool.encode("turn", "after", {}, None, "h"))
    reader = spool.Reader(directory)
    name = reader.take()
    lines = [line for line, _ in reader.facts(name)]
    assert lines[0] is None and json.loads(lines[1])["project"] == "after" and len(lines) == 2


def test_a_spool_folder_others_can_read_is_refused(tmp_path):
    directory = tmp_path / "spool"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    with pytest.raises(spool.SpoolError, match="mode 755"):
        spool.append(str(directory), spool.encode("turn", "p", {}, None, "h"))


def test_hooks_print_nothing_exit_0_and_record_only_agents_in_tmux(tmp_path):
    agent = Agent(tmp_path / "spool", pane="%3")
    for payload in (b"not json", b"[1]", b"", json.dumps({"tool_name": "Agent", "tool_input": 5}).encode()):
        res = agent.run("hook", "PreToolUse", payload=payload)
        assert (res.returncode, res.stdout) == (0, b"")
    agent.stop()
    outside = Agent(tmp_path / "spool", pane=None)
    outside.stop()
    outside.run("hook", "Stop", "--project", "named", payload=outside.payload("Stop"))
    agent.run("hook", "Notification", payload=agent.payload("Notification", message="hi"))
    agent.run("hook", "PreToolUse", payload=agent.payload("PreToolUse", tool_name="Bash", tool_input={}))
    facts = [json.loads(line) for line in (tmp_path / "spool" / spool.ACTIVE).read_bytes().splitlines()]
    assert [(f["kind"], f["project"], f["pane"]) for f in facts] == [
        ("spawn_start", "shop", "%3"), ("turn", "shop", "%3"), ("turn", "named", None)]


def test_long_agent_text_is_cut_to_size(tmp_path):
    agent = Agent(tmp_path / "spool")
    agent.agent_start("toolu_1", description="d" * 100_000, subagent_type="t" * 500)
    fact = json.loads((tmp_path / "spool" / spool.ACTIVE).read_bytes())
    assert len(fact["data"]["description"]) == 1000 and len(fact["data"]["task_type"]) == 100


def test_the_hot_path_loads_no_database_driver_tmux_library_or_argparse(tmp_path):
    probe = ("import sys, io, os\n"
             "sys.stdin = io.TextIOWrapper(io.BytesIO(b'{\"session_id\": \"s\"}'))\n"
             "from reactor.cli import entry\n"
             "for argv in (['statusline'], ['hook', 'Stop']):\n"
             "    entry.main(argv)\n"
             "heavy = ('psycopg', 'libtmux', 'argparse', 'reactor.cli.main', 'tenacity', 'dataclasses', 'typing')\n"
             "print([m for m in heavy if m in sys.modules])\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT), PS_HEALTH_SPOOL=str(tmp_path), TMUX_PANE="%1")
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == "[]"
    res = subprocess.run([sys.executable, "-c", "import sys, reactor; print(sorted(m for m in sys.modules "
                          "if m.startswith('reactor')))"], capture_output=True, text=True, env=env, cwd=ROOT)
    assert res.stdout.strip() == "['reactor']", "importing the package itself loads nothing"


def test_statusline_line_from_the_cache(tmp_path):
    data = StatusInput("s", None, "/src/shop", None, 41.6, 1_000_000)
    entry = {"project": "shop", "pane": "%1", "context_percent": 30.0, "running": 2, "stalled": 1, "open_alerts": 1}
    cache = {"fresh_until": 200.0, "panes": {"%1": entry}, "projects": {"shop": entry}}
    assert line_for(data, "shop", cache, "%1", 100.0) == "ps-health shop · ctx 42% · 2 running · 1 stalled · 1 alert"
    assert line_for(data._replace(used_percentage=None), "x", cache, "%1", 100.0).startswith("ps-health shop · ctx 30%")
    assert line_for(data, "shop", cache, None, 100.0).startswith("ps-health shop · ctx 42% · 2 running")
    assert line_for(data, "shop", cache, "%1", 300.0) == "ps-health shop · ctx 42% · offline", "a stale cache"
    assert line_for(data, "shop", None, "%1", 100.0) == "ps-health shop · ctx 42% · offline", "no cache"
    assert line_for(data, "new", cache, "%2", 100.0) == "ps-health new (not registered) · ctx 42% · 0 running"


def test_the_project_is_the_flag_else_the_claude_project_folder_else_cwd():
    assert spool.project_name("given", {"CLAUDE_PROJECT_DIR": "/src/a"}, "/src/b") == "given"
    assert spool.project_name(None, {"CLAUDE_PROJECT_DIR": "/src/a/"}, "/src/a/sub") == "a"
    assert spool.project_name(None, {}, "/src/b/") == "b"
    assert spool.project_name(None, {}, "/") is None and spool.project_name(None, {}, None) is None


def test_a_poke_without_a_reactor_is_harmless(tmp_path):
    spool.poke(str(tmp_path), "h")  # no socket bound: nothing happens, nothing is raised
    done = threading.Event()
    threading.Thread(target=lambda: (spool.poke(str(tmp_path / "missing"), "h"), done.set())).start()
    assert done.wait(5)
