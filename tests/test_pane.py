"""Reading a pane: the foreground program from /proc, accepted agent programs, the agent's input line."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from reactor.tmux.pane import (
    EMPTY,
    FOREIGN,
    OURS,
    STALE,
    UNSEEN,
    Profile,
    accepted,
    classify,
    describe,
    foreground,
    program_names,
)
from reactor.tmux.typist import draft_below
from tests.support import wait_for
from tests.tmux_server import RECORDER

DEFAULT = ("claude", "codex", "gemini", "aider", "opencode")
MARKER = re.compile(r"\[ps-health #[0-9]+\]")
GENERIC = Profile.parse("*", {"input_pattern": r"^\s*[│┃|]?\s*[\w.-]*[>❯›»](\s|$)", "clear_keys": ["C-u"]})


@pytest.mark.parametrize("argv, program", [
    (["claude"], "claude"),
    (["/home/me/.local/bin/claude", "--resume"], "claude"),
    (["node", "/usr/local/bin/gemini"], "gemini"),                      # Gemini CLI shows as node
    (["node", "--no-warnings", "/usr/lib/node_modules/@openai/codex/bin/codex.js"], "codex"),
    (["/usr/bin/python3", "/home/me/.local/bin/aider", "--model", "x"], "aider"),  # Aider shows as python
    (["python3.11", "-m", "aider"], "aider"),
    (["bun", "run", "/opt/opencode/bin/opencode"], "opencode"),
    (["-bash"], None),
    (["bash"], None),
    (["less", "claude.log"], None),                                      # a pager showing a file named claude
    (["vim", "gemini"], None),
    (["python3", "-c", "import claude"], None),
    (["node", "-e", "require('gemini')"], None),
    (["python3", "/tmp/claude-helper.py"], None),
])
def test_agent_programs_are_recognised_by_name_or_by_the_script_an_interpreter_runs(argv, program):
    assert accepted(argv, DEFAULT) == program


def test_an_entry_with_a_slash_matches_part_of_the_program_path():
    argv = ["node", "/root/.npm/_npx/1/node_modules/@google/gemini-cli/dist/index.js"]
    assert accepted(argv, DEFAULT) is None
    assert accepted(argv, ("@google/gemini-cli",)) == "@google/gemini-cli"


def test_the_audit_names_a_process_without_its_arguments():
    assert describe(["/bin/bash", "-c", "curl -H 'Authorization: secret'"]) == "bash"
    assert describe(["/usr/bin/python3", "/srv/tool.py", "--token", "secret"]) == "python3 tool.py"
    assert program_names(["python3", "-m", "pkg.tool"])[1] == "pkg.tool"
    assert accepted(["python3", "-m", "pkg.tool"], ("tool",)) == "tool"


def foreground_argv(pane_pid: int) -> list[str] | None:
    """The command line foreground() reads for the pane's foreground process group leader."""
    found = foreground(pane_pid)
    return found[1] if found else None


def test_the_foreground_program_is_read_from_proc(tmux_server):
    pane = tmux_server.recorder()
    assert foreground_argv(pane.pid) == [sys.executable, str(RECORDER), str(pane.record)]
    target, shell = tmux_server.run("new-session", "-d", "-P", "-F", "#{pane_id} #{pane_pid}",
                                    "bash", "--norc", "--noprofile").split()
    wait_for(lambda: foreground_argv(int(shell)) == ["bash", "--norc", "--noprofile"], what="bash at its prompt")
    tmux_server.run("send-keys", "-t", target, "sleep 30", "Enter")
    # the shell's child runs in the foreground now: that is the pane's program
    assert wait_for(lambda: foreground_argv(int(shell)) == ["sleep", "30"], what="sleep in the foreground")
    assert foreground_argv(2 ** 22 + 12345) is None  # no such process


def test_a_foreground_program_with_a_command_line_longer_than_one_read_is_read_whole(tmux_server):
    # an agent started with its task on the command line (`claude -p "<a long prompt>"`): 100 kB of argv
    # (made in the pane: a tmux command cannot carry it)
    argv = [sys.executable, "-c", "import time; time.sleep(30)", "x" * 100_000]
    start = f"import os, sys; os.execv(sys.executable, {argv[:3]!r} + ['x' * 100_000])"
    pid = tmux_server.run("new-session", "-d", "-P", "-F", "#{pane_pid}", sys.executable, "-c", start)
    assert wait_for(lambda: foreground_argv(int(pid)) == argv, what="the pane's long command line")


@pytest.mark.parametrize("screen, line", [
    ("welcome\n> ", ""),
    ("> old line\nanswer\n> new text", "new text"),
    ("╭────────╮\n│ > hello │\n╰────────╯\n  ? for shortcuts", "hello │"),
    ("ask> what now", "what now"),
    ("❯ ", ""),
    ("bash-5.2$ ls", None),
    ("Do you want to proceed?\n 1. Yes\n 2. No", None),
])
def test_the_generic_profile_finds_the_input_line_after_the_last_prompt(screen, line):
    assert GENERIC.input_line(screen) == line


def test_a_placeholder_in_an_empty_input_box_counts_as_empty():
    profile = Profile.parse("gemini", {"input_pattern": r"^\s*│?\s*> ", "ignore_pattern": r"Type your message.*",
                                       "clear_keys": ["C-u"]})
    assert profile.input_line("│ > Type your message or @path/to/file") == ""
    assert profile.input_line("│ > Type") == "Type"


@pytest.mark.parametrize("data, field", [
    ({"input_pattern": "(", "clear_keys": []}, "input_pattern"),
    ({"clear_keys": []}, "input_pattern"),
    ({"input_pattern": "^> ", "ignore_pattern": "[", "clear_keys": []}, "ignore_pattern"),
    ({"input_pattern": "^> ", "clear_keys": "C-u"}, "clear_keys"),
    ({"input_pattern": "^> ", "dialog_pattern": "(?P<x", "clear_keys": []}, "dialog_pattern"),
    ({"input_pattern": "^> ", "paste_above": "800", "clear_keys": []}, "paste_above"),
    ({"input_pattern": "^> ", "reset_command": ["/clear"], "clear_keys": []}, "reset_command"),
])
def test_a_broken_profile_is_refused_naming_the_field(data, field):
    with pytest.raises(ValueError, match=field):
        Profile.parse("x", data)
    for _ in range(2):  # as read before every keystroke: refused each time, never kept
        with pytest.raises(ValueError, match=field):
            Profile.of("x", data)


def test_a_profile_is_read_anew_when_its_data_is_new():
    """The reactor keeps one agent_profiles object per version: a profile read from it is kept, one changed (a new
    version, new objects) is read again, and a name never takes another name's profile."""
    first = {"input_pattern": "^> ", "clear_keys": ["C-u"]}
    kept = Profile.of("aider", first)
    assert Profile.of("aider", first) is kept
    assert kept.input_line("> fix it") == "fix it"
    changed = Profile.of("aider", {"input_pattern": "^aider> ", "clear_keys": []})
    assert changed is not kept and changed.input_line("aider> fix it") == "fix it" and changed.clear_keys == ()
    assert Profile.of("*", first).name == "*"


def test_what_the_input_line_holds_decides_what_the_reactor_may_do():
    text = "[ps-health #12] alpha: spawn t1 failed"
    assert classify(None, text, MARKER) == UNSEEN
    assert classify("", text, MARKER) == EMPTY
    assert classify("[ps-health #12] alpha: spawn t1 failed", text, MARKER) == OURS
    assert classify("[ps-health #12] alpha: sp", text, MARKER) == STALE       # typed in part, never submitted
    assert classify("[ps-health #9] beta: context", text, MARKER) == STALE    # another prompt, never submitted
    assert classify("let me think [ps-health #12]", text, MARKER) == FOREIGN   # the user's text comes first
    assert classify("half a thought", text, MARKER) == FOREIGN
    assert classify("/clear", "/clear", MARKER) == OURS                        # a reset command carries no marker


# ---------------------------------------------------------------- the shipped profiles

SCREENS = Path(__file__).parent / "fixtures" / "agent_screens"
ANY = object()  # the input line of a screen with a dialog does not matter
# Screens of Claude Code 2.1.332, Codex CLI 0.171.0 and Gemini CLI 0.61.0 in a 120x40 pane:
# (file, input box shown, turn running, dialog open, what the input line holds).
READINGS = [
    ("claude-idle", True, False, False, ""),
    ("claude-typed", True, False, False, "please say hello MARKER-1234"),
    ("claude-busy-waiting", True, True, False, ""),
    ("claude-busy-streaming", True, True, False, ""),
    ("claude-dialog-auto-mode", False, False, True, ANY),
    ("claude-dialog-permission", False, False, True, ANY),
    ("claude-reset-typed", True, False, False, "/clear"),  # its slash menu is no dialog: Enter must go through
    ("claude-collapsed", True, False, False, "[Pasted text #1]"),
    ("codex-idle", True, False, False, ""),  # the dim placeholder
    ("codex-typed", True, False, False, "please say hello MARKER-1234"),
    ("codex-busy-waiting", True, True, False, ""),
    ("codex-busy-streaming", True, True, False, ""),  # with run-state in [tui] status_line
    ("codex-dialog-approval", True, False, True, ANY),  # the dialog wins
    ("codex-dialog-hooks", True, False, True, ANY),
    ("codex-reset-typed", True, False, False, "/new"),
    ("codex-collapsed", True, False, False, "[Pasted Content 1001 chars]"),
    ("gemini-idle", True, False, False, ""),
    ("gemini-typed", True, False, False, "please say hello MARKER-1234"),
    ("gemini-busy-waiting", True, True, False, ""),
    ("gemini-busy-streaming", True, True, False, ""),
    ("gemini-dialog", False, False, True, ANY),
    ("gemini-reset-typed", True, False, False, "/clear"),
    ("gemini-reset-typed-no-truecolor", True, False, False, "/clear"),  # without COLORTERM: no ▄▀ frame
]


def test_the_shipped_profiles_read_the_real_clis_screens(conn):
    profiles = conn.execute("SELECT ps_health._agent_profiles() AS p").fetchone()["p"]
    wrong = []
    for name, ready, busy, dialog, line in READINGS:
        program = name.split("-")[0]
        profile = Profile.parse(program, profiles[program])
        screen = (SCREENS / f"{name}.txt").read_text()
        seen = (not profile.box_hidden(screen), profile.is_busy(screen), profile.dialog_open(screen),
                line if line is ANY else profile.input_line(screen))
        if seen != (ready, busy, dialog, line):
            wrong.append(f"{name}: read as {seen}, expected {(ready, busy, dialog, line)}")
    assert not wrong, "\n".join(wrong)
    collapsed = Profile.parse("claude", profiles["claude"])
    assert collapsed.collapsed("[Pasted text #2]") and not collapsed.collapsed("[Pasted text #2] and more")
    assert Profile.parse("codex", profiles["codex"]).pastes("é" * 451)  # bytes count: 902 > 900
    assert not Profile.parse("*", profiles["*"]).pastes("x" * 5000)  # the generic profile types, as before


def test_a_profile_recognises_its_cli_by_its_package_path(conn):
    profiles = json.loads(conn.execute("SELECT ps_health._agent_profiles()::text AS p").fetchone()["p"])
    npx = ["node", "/root/.npm/_npx/1/node_modules/@google/gemini-cli/dist/index.js"]
    assert accepted(npx, DEFAULT) is None  # by name alone: index.js is no agent
    assert accepted(npx, DEFAULT, profiles) == "gemini"
    native = ["/usr/lib/node_modules/@openai/codex/vendor/x86_64-unknown-linux-musl/codex/codex-x86_64"]
    assert accepted(native, DEFAULT, profiles) == "codex"
    assert accepted(["less", "/usr/lib/node_modules/@openai/codex/README.md"], DEFAULT, profiles) is None
    assert accepted(npx, ("claude",), profiles) is None  # only the programs the setting accepts


def test_a_draft_under_an_empty_first_line_is_seen_in_the_real_clis_boxes(conn):
    # A draft that starts with a line break leaves the input line empty and shows on the rows under it: typed
    # beside it, the prompt went out with the user's draft in one message (Claude Code and Gemini CLI).
    profiles = conn.execute("SELECT ps_health._agent_profiles() AS p").fetchone()["p"]
    seen = {}
    for path in sorted(SCREENS.glob("*.txt")):
        program = path.name.split("-")[0]
        profile = Profile.parse(program, profiles[program])
        seen[path.stem] = draft_below(profile, path.read_text())
    drafts = {name for name, below in seen.items() if below}
    assert drafts == {"claude-draft-below-empty-line", "gemini-draft-below-empty-line"}, seen
    for name in drafts:
        program = name.split("-")[0]
        assert Profile.parse(program, profiles[program]).input_line((SCREENS / f"{name}.txt").read_text()) == ""
