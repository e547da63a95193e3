"""`ps-health setup claude-code` merges into a real settings.json, changes nothing twice, removes cleanly."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

from tests.support import run_cli

# A settings.json a user might already have: their own hooks, statusLine and other keys.
THEIRS = {
    "model": "opus",
    "permissions": {"allow": ["Bash(npm test)"]},
    "hooks": {"Stop": [{"hooks": [{"type": "command", "command": "notify-send done"}]}],
              "PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": "~/bin/guard"}]}]},
}
EXE = str(Path(sys.executable).parent / "ps-health")


def setup(home: Path, *args: str, cwd: Path | None = None):
    return run_cli(None, "setup", "claude-code", *args, env={"HOME": str(home)}, cwd=str(cwd) if cwd else None)


def settings(home: Path) -> dict:
    return json.loads((home / ".claude" / "settings.json").read_text())


def ours(data: dict) -> dict[str, list[tuple]]:
    """Event -> (matcher, command) of every hook whose command runs ps-health."""
    found: dict[str, list[tuple]] = {}
    for event, groups in data.get("hooks", {}).items():
        for group in groups:
            for hook in group["hooks"]:
                if "ps-health" in hook["command"]:
                    found.setdefault(event, []).append((group.get("matcher"), hook["command"]))
    return found


def test_setup_merges_the_hooks_and_statusline_keeping_everything_else(tmp_path):
    (tmp_path / ".claude").mkdir()
    (tmp_path / ".claude" / "settings.json").write_text(json.dumps(THEIRS))
    res = setup(tmp_path)
    assert res.returncode == 0, res.stderr
    data = settings(tmp_path)
    assert data["model"] == "opus" and data["permissions"] == THEIRS["permissions"]
    assert data["hooks"]["Stop"][0] == THEIRS["hooks"]["Stop"][0]
    assert data["hooks"]["PreToolUse"][0] == THEIRS["hooks"]["PreToolUse"][0]
    assert ours(data) == {
        "SessionStart": [(None, f"{EXE} hook SessionStart")],
        "UserPromptSubmit": [(None, f"{EXE} hook UserPromptSubmit")],
        "Stop": [(None, f"{EXE} hook Stop")],
        "SubagentStop": [(None, f"{EXE} hook SubagentStop")],
        "PreCompact": [(None, f"{EXE} hook PreCompact")],
        "SessionEnd": [(None, f"{EXE} hook SessionEnd")],
        "PreToolUse": [("Task|Agent", f"{EXE} hook PreToolUse")],
        "PostToolUse": [("Task|Agent", f"{EXE} hook PostToolUse")],
        "PostToolUseFailure": [("Task|Agent", f"{EXE} hook PostToolUseFailure")],
    }
    assert data["statusLine"] == {"type": "command", "command": f"{EXE} statusline"}
    assert f"+            \"command\": \"{EXE} hook SessionStart\"" in res.stdout, "the change is shown as a diff"
    assert res.stdout.startswith("--- ")


def test_setup_twice_changes_nothing_and_remove_restores_the_file(tmp_path):
    path = tmp_path / ".claude" / "settings.json"
    path.parent.mkdir()
    path.write_text(json.dumps(THEIRS))
    assert setup(tmp_path).returncode == 0
    written = path.read_bytes()
    again = setup(tmp_path)
    assert again.returncode == 0 and "nothing to change" in again.stdout and "---" not in again.stdout
    assert path.read_bytes() == written
    res = setup(tmp_path, "--remove")
    assert res.returncode == 0 and "removed ps-health" in res.stdout
    assert settings(tmp_path) == THEIRS
    assert "nothing to change" in setup(tmp_path, "--remove").stdout


def test_setup_with_a_project_and_project_scope_writes_the_project_settings(tmp_path):
    home, repo = tmp_path / "home", tmp_path / "my repo"
    home.mkdir()
    repo.mkdir()
    res = setup(home, "--scope", "project", "--project", "shop's", cwd=repo)
    assert res.returncode == 0, res.stderr
    assert not (home / ".claude").exists()
    data = json.loads((repo / ".claude" / "settings.json").read_text())
    command = data["hooks"]["SessionStart"][0]["hooks"][0]["command"]
    assert shlex.split(command) == [EXE, "hook", "SessionStart", "--project", "shop's"]
    assert shlex.split(data["statusLine"]["command"]) == [EXE, "statusline", "--project", "shop's"]
    # a new project flag replaces the old commands in place
    setup(home, "--scope", "project", "--project", "shop", cwd=repo)
    data = json.loads((repo / ".claude" / "settings.json").read_text())
    assert [c for _, c in ours(data)["SessionStart"]] == [f"{EXE} hook SessionStart --project shop"]


def test_setup_keeps_a_statusline_of_the_users_own_unless_told(tmp_path):
    path = tmp_path / ".claude" / "settings.json"
    path.parent.mkdir()
    mine = {"type": "command", "command": "~/bin/mystatus", "padding": 0}
    path.write_text(json.dumps({"statusLine": mine}))
    res = setup(tmp_path)
    assert res.returncode == 0 and settings(tmp_path)["statusLine"] == mine
    assert "note: kept your statusLine" in res.stdout and "--replace-statusline" in res.stdout
    res = setup(tmp_path, "--replace-statusline")
    assert settings(tmp_path)["statusLine"] == {"type": "command", "command": f"{EXE} statusline"}
    assert "replaced your statusLine" in res.stdout
    setup(tmp_path, "--remove")
    assert "statusLine" not in settings(tmp_path) and "hooks" not in settings(tmp_path)


def test_setup_refuses_a_settings_file_that_is_not_json_and_changes_nothing(tmp_path):
    path = tmp_path / ".claude" / "settings.json"
    path.parent.mkdir()
    broken = '{"model": "opus",, }'
    path.write_text(broken)
    res = setup(tmp_path)
    assert res.returncode == 2
    assert f"{path} is not valid JSON" in res.stderr and "line 1 column 18" in res.stderr
    assert path.read_text() == broken
    path.write_text('{"hooks": []}')
    res = setup(tmp_path)
    assert res.returncode == 2 and '"hooks" must be an object' in res.stderr
    assert path.read_text() == '{"hooks": []}'


def test_dry_run_prints_the_diff_and_writes_nothing(tmp_path):
    res = setup(tmp_path, "--dry-run")
    assert res.returncode == 0 and res.stdout.startswith("--- /dev/null")
    assert "dry run" in res.stdout and not (tmp_path / ".claude").exists()


# ---------------------------------------------------------------- Codex CLI and Gemini CLI

def test_setup_codex_merges_its_hooks_into_hooks_json_says_they_need_trust_once_and_removes_them(tmp_path):
    path = tmp_path / ".codex" / "hooks.json"
    path.parent.mkdir()
    theirs = {"hooks": {"Stop": [{"hooks": [{"type": "command", "command": "notify-send done"}]}]}}
    path.write_text(json.dumps(theirs))
    res = run_cli(None, "setup", "codex", env={"HOME": str(tmp_path)})
    assert res.returncode == 0, res.stderr
    assert "Hooks need review" in res.stdout and "Trust all and continue" in res.stdout
    data = json.loads(path.read_text())
    assert data["hooks"]["Stop"][0] == theirs["hooks"]["Stop"][0]
    assert ours(data) == {event: [(None, f"{EXE} hook {event} --agent codex")]
                          for event in ("SessionStart", "UserPromptSubmit", "Stop", "PreCompact")}
    assert "nothing to change" in run_cli(None, "setup", "codex", env={"HOME": str(tmp_path)}).stdout
    assert not (tmp_path / ".codex" / "config.toml").exists(), "Codex's own config is not touched"
    assert run_cli(None, "setup", "codex", "--remove", env={"HOME": str(tmp_path)}).returncode == 0
    assert json.loads(path.read_text()) == theirs


def test_setup_gemini_merges_its_hooks_into_settings_json_keeping_the_rest(tmp_path):
    path = tmp_path / ".gemini" / "settings.json"
    path.parent.mkdir()
    theirs = {"security": {"auth": {"selectedType": "gemini-api-key"}}, "ui": {"theme": "Default"}}
    path.write_text(json.dumps(theirs))
    res = run_cli(None, "setup", "gemini", "--project", "shop", env={"HOME": str(tmp_path)})
    assert res.returncode == 0, res.stderr
    data = json.loads(path.read_text())
    assert {k: v for k, v in data.items() if k != "hooks"} == theirs and "statusLine" not in data
    assert ours(data) == {event: [("*", f"{EXE} hook {event} --agent gemini --project shop")]
                          for event in ("SessionStart", "SessionEnd", "BeforeAgent", "AfterAgent", "PreCompress")}
    assert run_cli(None, "setup", "gemini", "--remove", env={"HOME": str(tmp_path)}).returncode == 0
    assert json.loads(path.read_text()) == theirs
