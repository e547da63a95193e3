"""`ps-health setup claude-code|codex|gemini`: merge ps-health's hooks (and Claude Code's statusLine) into
the agent CLI's settings: ~/.claude/settings.json, ~/.codex/hooks.json, ~/.gemini/settings.json.

All three keep hooks in the same shape ({"hooks": {EVENT: [{"matcher": …, "hooks": [{"type": "command",
"command": …}]}]}}). Keeps everything else in the file, changes nothing on a second run, and --remove
takes out exactly the entries whose command is `ps-health hook …` or `ps-health statusline …`.
"""

from __future__ import annotations

import copy
import difflib
import json
import os
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from reactor.agent.hooks import AGENT_EVENTS
from reactor.errors import BadInput, PsHealthError


@dataclass(frozen=True)
class Agent:
    """An agent CLI setup knows: its hook name (--agent), its settings folder and file, and whether it
    runs ps-health's statusline."""

    name: str
    title: str
    folder: str
    file: str
    statusline: bool


AGENTS = {"claude-code": Agent("claude", "Claude Code", ".claude", "settings.json", True),
          "codex": Agent("codex", "Codex CLI", ".codex", "hooks.json", False),
          "gemini": Agent("gemini", "Gemini CLI", ".gemini", "settings.json", False)}
CLAUDE = AGENTS["claude-code"]


@dataclass
class Plan:
    """The settings before and after, and what the person should know about the change."""

    path: Path
    before: dict | None
    after: dict
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.after != ({} if self.before is None else self.before)

    def text(self) -> str:
        return json.dumps(self.after, indent=2, ensure_ascii=False) + "\n"

    def diff(self, old_text: str) -> str:
        return "".join(difflib.unified_diff(old_text.splitlines(keepends=True), self.text().splitlines(keepends=True),
                                            fromfile=str(self.path) if self.before is not None else "/dev/null",
                                            tofile=str(self.path)))


def settings_path(scope: str, home: Path, cwd: Path, agent: Agent = CLAUDE) -> Path:
    """~/.claude/settings.json for the user, ./.claude/settings.json for the project in cwd (or the agent's)."""
    return (home if scope == "user" else cwd) / agent.folder / agent.file


def executable() -> str:
    """The absolute path of this ps-health command (the one beside this Python, as a venv installs it)."""
    beside = Path(sys.executable).parent / "ps-health"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("ps-health")
    if found:
        return os.path.abspath(found)
    raise PsHealthError("cannot find the ps-health command to put into settings.json: install ps-health "
                        "(pip install .) so that `ps-health` is on PATH")


def is_ours(command) -> bool:
    """Whether a settings command runs `ps-health hook …` or `ps-health statusline …`."""
    try:
        words = shlex.split(command) if isinstance(command, str) else []
    except ValueError:
        return False
    return len(words) >= 2 and os.path.basename(words[0]) == "ps-health" and words[1] in ("hook", "statusline")


def commands(exe: str, project: str | None, agent: Agent = CLAUDE) -> tuple[dict[str, str], str]:
    """The hook command of each event and the statusline command."""
    tail = f" --project {shlex.quote(project)}" if project else ""
    named = "" if agent is CLAUDE else f" --agent {agent.name}"
    quoted = shlex.quote(exe)
    return ({event: f"{quoted} hook {event}{named}{tail}" for event in AGENT_EVENTS[agent.name]},
            f"{quoted} statusline{tail}")


def load(path: Path) -> tuple[dict | None, str]:
    """(settings, text) of the file; (None, '') when it does not exist; BadInput when it is not a JSON object."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None, ""
    except OSError as exc:
        raise PsHealthError(f"cannot read {path}: {exc.strerror}") from None
    if not text.strip():
        return {}, text
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise BadInput(f"{path} is not valid JSON ({exc}); nothing was changed. Fix or move the file, then "
                       "run setup again.") from None
    if not isinstance(data, dict):
        raise BadInput(f"{path} must hold a JSON object, got {type(data).__name__}; nothing was changed")
    return data, text


def plan(path: Path, before: dict | None, exe: str, project: str | None, remove: bool = False,
         replace_statusline: bool = False, agent: Agent = CLAUDE) -> Plan:
    """What the settings become with ps-health's hooks and statusLine added (or removed)."""
    after = copy.deepcopy(before or {})
    result = Plan(path, before, after)
    hook_commands, status_command = commands(exe, project, agent)
    events = AGENT_EVENTS[agent.name]
    hooks = after.get("hooks", {})
    if not isinstance(hooks, dict):
        raise BadInput(f"{path}: \"hooks\" must be an object, got {json.dumps(hooks)[:60]}; nothing was changed")
    for event in sorted(set(hooks) | set(events)):
        want = None if remove or event not in events else (events[event], hook_commands[event])
        _merge_event(path, hooks, event, want)
    if hooks:
        after["hooks"] = hooks
    else:
        after.pop("hooks", None)
    if agent.statusline:
        _merge_statusline(result, status_command, remove, replace_statusline)
    return result


def _merge_event(path: Path, hooks: dict, event: str, want: tuple[str | None, str] | None) -> None:
    """Keep the one group that already runs the wanted command, else drop ours and append a fresh one."""
    groups = hooks.get(event, [])
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        raise BadInput(f"{path}: hooks.{event} must be a list of objects; nothing was changed")
    if want is not None and [(g.get("matcher"), h.get("command")) for g in groups for h in _hooks_of(g)
                             if is_ours(h.get("command"))] == [want]:
        return
    kept = []
    for group in groups:
        entries = _hooks_of(group)
        mine = [h for h in entries if is_ours(h.get("command"))]
        if not mine:
            kept.append(group)
        elif len(mine) < len(entries):
            kept.append({**group, "hooks": [h for h in entries if not is_ours(h.get("command"))]})
    if want is not None:
        matcher, command = want
        kept.append({**({"matcher": matcher} if matcher else {}),
                     "hooks": [{"type": "command", "command": command}]})
    if kept:
        hooks[event] = kept
    else:
        hooks.pop(event, None)


def _hooks_of(group: dict) -> list[dict]:
    entries = group.get("hooks")
    return [h for h in entries if isinstance(h, dict)] if isinstance(entries, list) else []


def _merge_statusline(result: Plan, command: str, remove: bool, replace: bool) -> None:
    after = result.after
    current = after.get("statusLine")
    theirs = current is not None and not (isinstance(current, dict) and is_ours(current.get("command")))
    if remove:
        if current is not None and not theirs:
            after.pop("statusLine")
        return
    if theirs and not replace:
        result.notes.append(
            f"kept your statusLine ({json.dumps(current)[:80]}): ps-health then reads the context from the "
            "transcript alone, against a 200,000-token window, so a 1M-context model reads fuller than it is. "
            "Run again with --replace-statusline to use ps-health's, or let yours run `ps-health statusline`.")
        return
    if theirs:
        result.notes.append(f"replaced your statusLine ({json.dumps(current)[:80]})")
    after["statusLine"] = {**(current if isinstance(current, dict) and not theirs else {}),
                           "type": "command", "command": command}


def write(result: Plan) -> None:
    """Replace the settings file in one step, keeping its mode."""
    path = result.path
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    tmp = path.with_name(f".{path.name}.ps-health.tmp")
    tmp.write_text(result.text())
    os.chmod(tmp, mode)
    os.replace(tmp, path)
