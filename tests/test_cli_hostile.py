"""Hostile text and odd arguments through `ps-health`: nothing reaches the terminal raw, nothing ends in a traceback."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys

from reactor.cli.render import SafeFormatter
from tests.support import PANE_ENV, ROOT, ok, refused, run_wrapped, spawn

# What an agent might write to take over the operator's terminal: a title change, a screen clear,
# a clipboard write (OSC 52), a bidi override and a line separator.
HOSTILE = "ok\x1b]0;TITLE\x07\x1b[2J\x1b]52;c;cm0gLXJmIH4=\x07 \u202eevil\u2028next"
RAW = ("\x1b", "\x07", "\u202e", "\u2028")


def _no_raw(text: str) -> bool:
    return not any(ch in text for ch in RAW)


def test_an_answer_with_escape_sequences_is_stored_and_shown_clean(db, conn):
    ok(db, "session", "register", "alpha", env=PANE_ENV)
    ok(db, "spawn", "start", "alpha", "t1", "--type", "build", env=PANE_ENV)
    ok(db, "spawn", "finish", "alpha", "t1", "--exit-code", "1", "--error", "boom", env=PANE_ENV)
    check_id = conn.execute("SELECT max(id) AS id FROM health_checks").fetchone()["id"]

    ok(db, "respond", str(check_id), HOSTILE)

    assert conn.execute("SELECT ps_response FROM health_checks WHERE id = %s", (check_id,)).fetchone()[
        "ps_response"] == "ok evil next"
    out = ok(db, "checks", "--project", "alpha").stdout
    assert "ok evil next" in out and _no_raw(out)


def test_text_already_in_the_database_is_escaped_in_every_table(db, conn):
    # Rows written before the database cleaned text, or by the owner by hand, still cannot drive the terminal.
    conn.execute("INSERT INTO ps_sessions (project, host, tmux_target) VALUES (%s, %s, '%%7')",
                 ("al\x1b[31mpha", "h\u202e1"))
    check = conn.execute("INSERT INTO health_checks (project, check_type, status, action_taken, ps_response) "
                         "VALUES ('alpha', 'spawn', 'critical', %s, %s) RETURNING id", (HOSTILE, HOSTILE)).fetchone()
    conn.execute("INSERT INTO prompts (project, host, target, severity, text, not_before, created_at) "
                 "VALUES ('alpha', 'h1', '%%7', 'critical', %s, now(), now())", (HOSTILE,))
    conn.execute("INSERT INTO reactors VALUES (%s, %s, now())", ("w\x1b]0;x\x07", "h\x1b[2J"))

    for args in (["status"], ["checks"], ["prompts"]):
        out = ok(db, *args).stdout
        assert _no_raw(out), f"{args}: {out!r}"
    assert "\\x1b[31m" in ok(db, "status").stdout
    assert "ok\\x1b]0;TITLE\\x07" in ok(db, "checks").stdout
    assert "\\u202eevil" in ok(db, "prompts").stdout

    # --json is JSON-escaped: the bytes never reach the terminal, the text comes back whole
    for args in (["status", "--json"], ["checks", "--json"], ["prompts", "--json"]):
        assert _no_raw(ok(db, *args).stdout)
    rows = json.loads(ok(db, "checks", "--json").stdout)
    assert [r["ps_response"] for r in rows if r["id"] == check["id"]] == [HOSTILE]


def test_an_error_message_echoing_hostile_input_is_escaped(db):
    res = refused(db, "session", "heartbeat", "x\x1b]0;TITLE\x07")
    assert 'project must not contain control or invisible formatting characters: "x?]0;TITLE?"' in res.stderr
    assert _no_raw(res.stderr)


def test_arguments_that_are_not_utf8_exit_2_naming_the_field(db, conn):
    res = refused(db, "session", "register", b"al\xffpha", env=PANE_ENV)
    assert 'project: not valid UTF-8: "al\\xffpha"' in res.stderr and "Traceback" not in res.stderr
    res = refused(db, "respond", "1", b"ok \xfe")
    assert "text: not valid UTF-8" in res.stderr
    assert conn.execute("SELECT count(*) AS n FROM ps_sessions").fetchone()["n"] == 0


def test_huge_durations_exit_2_naming_the_flag(db):
    for args in (["mute", "alpha", "--for", "99999999999d"], ["checks", "--since", "99999999999d"],
                 ["mute", "alpha", "--for", "9" * 5000 + "d"]):
        res = refused(db, *args)
        assert "Traceback" not in res.stderr
        assert f"argument {args[-2]}:" in res.stderr, res.stderr
    assert "is too long: at most 36500d" in refused(db, "mute", "alpha", "--for", "99999999999d").stderr
    assert "must be at most 86400 seconds" in refused(db, "reactor", "--poll-interval", "1e300").stderr


def test_metrics_port_in_use_is_a_clear_error(db):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PS_HEALTH_", "PG"))}
        env.update(PYTHONPATH=str(ROOT), PS_HEALTH_DSN=db)
        res = subprocess.run([sys.executable, "-m", "reactor", "--host", "host-a", "--metrics-port", str(port)],
                             capture_output=True, text=True, env=env, timeout=60, stdin=subprocess.DEVNULL)
    assert res.returncode == 2
    assert f"--metrics-port {port}: cannot serve metrics on 127.0.0.1:{port}: Address already in use" in res.stderr
    assert "Traceback" not in res.stderr


def test_a_nul_byte_in_the_last_error_line_still_finishes_the_spawn(db, conn):
    ok(db, "session", "register", "alpha", env=PANE_ENV)
    res = run_wrapped(db, "nul-1", "sh", "-c", r"printf 'bad\000byte \033[31mred\n' >&2; exit 4")
    assert res.returncode == 4
    assert "could not record" not in res.stderr
    sp = spawn(conn, "nul-1")
    assert (sp["status"], sp["exit_code"], sp["error_message"]) == ("failed", 4, "badbyte red")


def test_a_logged_value_stays_on_its_record_line_and_the_record_keeps_its_own_lines():
    fmt = SafeFormatter("%(levelname)s %(name)s: %(message)s")

    def line(msg, *args, exc_info=None) -> str:
        return fmt.format(logging.LogRecord("ps", logging.WARNING, __file__, 1, msg, args, exc_info))

    forged = "/f\n2099-01-01 00:00:00,000 ERROR x: FORGED\r\u2028\u202e"
    assert line("file %s of %r: %d in %.1f s", forged, "a\nb", 3, 2.5) == (
        "WARNING ps: file /f\\x0a2099-01-01 00:00:00,000 ERROR x: FORGED\\x0d\\u2028\\u202e of 'a\\nb': 3 in 2.5 s")
    assert line("%(file)s seen", {"file": forged}).count("\n") == 0
    assert line(ValueError(forged)).count("\n") == 0  # an object logged as the message is a value too
    assert line("two\nlines %s", "x") == "WARNING ps: two\nlines x"  # the message's own lines stay
    try:
        raise ValueError("boom")
    except ValueError:
        shown = line("failed %s", forged, exc_info=sys.exc_info())
    assert shown.startswith("WARNING ps: failed /f\\x0a2099") and "\nTraceback (most recent call last):\n" in shown
