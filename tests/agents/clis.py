"""Install Claude Code, Codex CLI and Gemini CLI from npm, and start one in a private tmux pane.

Each CLI runs with a private HOME, pre-seeded so it starts straight at its input box, and
talks only to the stand-in (tests/agents/standin.py) on 127.0.0.1.
`python -m tests.agents.clis install` installs (or reuses) the CLIs and prints their versions.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"claude": "@anthropic-ai/claude-code", "codex": "@openai/codex",
            "gemini": "@google/gemini-cli"}
API_KEYS = {"claude": "sk-ant-api03-stand-in-key-0000000000000000000000000000",
            "codex": "sk-stand-in-key", "gemini": "stand-in-key"}
# `ps-health setup NAME` of each CLI.
SETUP = {"claude": "claude-code", "codex": "codex", "gemini": "gemini"}


def agents_dir() -> Path:
    """The npm folder holding the CLIs: $PS_HEALTH_AGENTS_DIR, else .agents in the checkout."""
    return Path(os.environ.get("PS_HEALTH_AGENTS_DIR") or ROOT / ".agents").resolve()


def _modules(folder: Path | None = None) -> Path:
    return (folder or agents_dir()) / "node_modules"


def installed(folder: Path | None = None) -> bool:
    """True when every CLI's package is in the folder."""
    return all((_modules(folder) / pkg / "package.json").exists() for pkg in PACKAGES.values())


def install(folder: Path | None = None) -> Path:
    """npm-install the current releases into folder unless they are there; return the folder."""
    folder = folder or agents_dir()
    if installed(folder):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / "package.json"
    if not manifest.exists():
        manifest.write_text('{"private": true, "description": "agent CLIs for the compatibility tests"}\n')
    # Postinstall scripts are not needed: each native binary arrives as an optional dependency.
    subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--ignore-scripts", "--prefer-online",
                    "--loglevel=error", *(f"{pkg}@latest" for pkg in PACKAGES.values())],
                   cwd=folder, check=True, timeout=600)
    return folder


def version(name: str, folder: Path | None = None) -> str:
    """The installed package's version, from its package.json."""
    data = json.loads((_modules(folder) / PACKAGES[name] / "package.json").read_text())
    return data["version"]


def command(name: str, folder: Path | None = None) -> list[str]:
    """argv that starts the CLI as `npm install` left it."""
    modules = _modules(folder)
    if name == "claude":
        # Without its postinstall, bin/claude.exe is a stub: run the platform package's binary.
        arch = {"x86_64": "x64", "aarch64": "arm64", "arm64": "arm64"}[platform.machine()]
        musl = "-musl" if list(Path("/lib").glob("ld-musl-*")) else ""
        return [str(modules / f"@anthropic-ai/claude-code-linux-{arch}{musl}" / "claude")]
    return [str(modules / ".bin" / name)]


# ---- profiles: how each CLI is configured and what its screen shows -----------------------

@dataclass(frozen=True)
class Profile:
    """What a test needs to know about one CLI: its reset command and screen patterns."""

    name: str
    reset: str
    ready: re.Pattern  # the input box is shown, nothing else in front of it
    busy: re.Pattern  # a reply is streaming / a turn is running
    dialog: re.Pattern  # a permission dialog is open


# Patterns read off the screens of Claude Code 2.1.197 and 2.1.332, Codex CLI 0.171.0, Gemini CLI 0.61.0.
PROFILES = {
    "claude": Profile(
        "claude", "/clear",
        # The input line is "❯" + NO-BREAK SPACE + text, between two rules.
        ready=re.compile(r"^─{20,}\n❯(?:\s.*)?\n(?:  .*\n)*─{20,}$", re.M),
        # "✶ Thundering… (4s · ↓ 16 tokens)"; older builds add "esc to interrupt".
        busy=re.compile(r"…\s*\((?:\d+[hm] )*\d+s\b|esc to interrupt"),
        # Permission dialogs list numbered options ("❯ 1. Yes") or end in "· Esc to cancel"
        # (auto mode's "can't check actions" notice has no options).
        dialog=re.compile(r"^\s*❯ \d+\. |\bEsc to cancel$", re.M)),
    "codex": Profile(
        "codex", "/new",
        # The composer "› text" (wrapped lines indented), a blank line, then the footer "  model · ...".
        ready=re.compile(r"^› .*\n(?:  .*\n)*\n  \S.* · ", re.M),
        # "• Working (5s • esc to interrupt)" shows only until the first token streams;
        # the footer's run-state item ("· Working ·") shows all along when configured.
        busy=re.compile(r"esc to interrupt\)| · Working\b|tab to queue message"),
        # Approval requests, and start-up menus such as "Hooks need review": a numbered list
        # whose selected item carries the composer's own "›".
        dialog=re.compile(r"^› \d+\. .*\n  \d+\. |Press enter to confirm or esc to cancel", re.M)),
    "gemini": Profile(
        "gemini", "/clear",
        # The input box is the last frame on the screen: " > text" above a ▀ border and the footer.
        ready=re.compile(r"^ > .*\n(?:   .*\n)*▀{20,}(?:\n.*){0,3}\Z", re.M),
        busy=re.compile(r"\(esc to cancel, (?:\d+[hm] )*\d+s\)"),
        dialog=re.compile(r"^│ Allow execution of |^│ ● \d+\. ", re.M)),
}


def _seed_claude(home: Path, project: Path, url: str, extra: dict) -> dict:
    key = API_KEYS["claude"]
    # hasSeenAutoDefaultNudge: 2.1.332 otherwise opens "Make auto mode your default permission mode?" at start.
    (home / ".claude.json").write_text(json.dumps({
        "hasCompletedOnboarding": True, "lastOnboardingVersion": version("claude"), "theme": "dark",
        "customApiKeyResponses": {"approved": [key[-20:]], "rejected": []}, "hasSeenAutoDefaultNudge": True,
        "projects": {str(project): {"hasTrustDialogAccepted": True}}}))
    (home / ".claude").mkdir()
    # The classic numbered permission dialog: 2.1.332's default auto mode shows a notice through a gateway.
    (home / ".claude" / "settings.json").write_text(json.dumps({"permissions": {"defaultMode": "default"},
                                                                **extra}))
    return {"ANTHROPIC_BASE_URL": url, "ANTHROPIC_API_KEY": key, "DISABLE_AUTOUPDATER": "1",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}


def _seed_codex(home: Path, project: Path, url: str, extra: dict) -> dict:
    (home / ".codex").mkdir()
    lines = [
        'model = "gpt-5.1-codex"',
        'model_provider = "standin"',
        "check_for_update_on_startup = false",
        *(f"{key} = {json.dumps(value)}" for key, value in extra.get("top", {}).items()),
        "",
        "[features]",
        # Without this the TUI starts a background app-server that outlives the pane.
        "daemon_auto_start = false",
        "",
        "[model_providers.standin]",
        'name = "Stand-in"',
        f'base_url = "{url}/v1"',
        'env_key = "STANDIN_API_KEY"',
        'wire_api = "responses"',
        "",
        f"[projects.{json.dumps(str(project))}]",
        'trust_level = "trusted"',
        "",
        "[tui]",
        "screen_reader_detection_done = true",
        extra.get("toml", ""),
    ]
    (home / ".codex" / "config.toml").write_text("\n".join(lines) + "\n")
    return {"STANDIN_API_KEY": API_KEYS["codex"]}


def _seed_gemini(home: Path, project: Path, url: str, extra: dict) -> dict:
    (home / ".gemini").mkdir()
    settings = {"security": {"auth": {"selectedType": "gemini-api-key"}},
                "ui": {"theme": "Default"},
                "privacy": {"usageStatisticsEnabled": False},
                "general": {"enableAutoUpdate": False, "enableAutoUpdateNotification": False},
                **extra}
    (home / ".gemini" / "settings.json").write_text(json.dumps(settings, indent=1))
    (home / ".gemini" / "trustedFolders.json").write_text(json.dumps({str(project): "TRUST_FOLDER"}))
    return {"GEMINI_API_KEY": API_KEYS["gemini"], "GOOGLE_GEMINI_BASE_URL": url, "COLORTERM": "truecolor"}


SEEDS = {"claude": _seed_claude, "codex": _seed_codex, "gemini": _seed_gemini}


# ---- a CLI running in a pane ---------------------------------------------------------------

@dataclass
class Agent:
    """One CLI in its own tmux session: the pane target, its HOME and project folder."""

    profile: Profile
    server: object  # tests.tmux_server.TmuxServer
    target: str
    pid: int
    home: Path
    project: Path
    env: dict = field(repr=False, default_factory=dict)

    def screen(self) -> str:
        """The visible screen, trailing blank lines dropped."""
        return self.server.run("capture-pane", "-p", "-t", self.target).rstrip("\n")

    def wait(self, predicate, timeout: float = 30, what: str = "screen") -> str:
        """Poll the screen until predicate(screen) is true; return that screen or fail showing it."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.screen()
            if predicate(text):
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.profile.name}: timed out after {timeout} s waiting for "
                                     f"{what}; screen:\n{text}")
            time.sleep(0.1)

    def wait_ready(self, timeout: float = 60) -> str:
        """Wait until the input box shows and nothing is running or asking."""
        p = self.profile
        return self.wait(lambda s: p.ready.search(s) and not p.busy.search(s) and not p.dialog.search(s),
                         timeout, "its input box")

    def keys(self, *keys: str) -> None:
        self.server.run("send-keys", "-t", self.target, *keys)

    def type(self, text: str) -> None:
        self.server.run("send-keys", "-t", self.target, "-l", "--", text)

    def stop(self, timeout: float = 10) -> None:
        """End the CLI and everything it started (Gemini's relaunched child survives a closed pane)."""
        pids = _tree(self.pid)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
                time.sleep(0.05)
            if not any(_alive(pid) for pid in pids):
                return

    def foreground(self) -> tuple[str, list[str]]:
        """(#{pane_current_command}, argv of the pane's foreground process group leader)."""
        current = self.server.run("display-message", "-p", "-t", self.target, "#{pane_current_command}")
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        tpgid = int(stat.rsplit(")", 1)[1].split()[5])
        argv = Path(f"/proc/{tpgid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        return current, [a.decode() for a in argv]


def _tree(root: int) -> list[int]:
    """root and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def launch(name: str, server, url: str, tmp: Path, *, settings: dict | None = None, env: dict | None = None,
           prepare=None, width: int = 120, height: int = 40) -> Agent:
    """Start the CLI `name` in a new session of server, pointed at the stand-in at url.

    The CLI sees only the variables set here (and env), plus TMUX_PANE as a pane's program does;
    prepare(home) runs once its HOME is seeded, before it starts."""
    extra = env
    home, project = tmp / f"{name}-home", tmp / f"{name}-project"
    home.mkdir()
    project.mkdir()
    env = {"HOME": str(home), "PATH": f"{Path(shutil.which('node') or '/usr/bin/node').parent}:/usr/bin:/bin",
           "TERM": "xterm-256color", "LANG": "C.UTF-8", "USER": os.environ.get("USER", "root"),
           "NO_BROWSER": "1"}
    env.update(SEEDS[name](home, project, url, settings or {}))
    env.update(extra or {})
    if prepare is not None:
        prepare(home)
    line = server.run("new-session", "-d", "-s", f"{name}", "-x", str(width), "-y", str(height),
                      "-c", str(project), "-P", "-F", "#{pane_id} #{pane_pid}",
                      "/bin/sh", "-c", 'exec env -i TMUX_PANE="$TMUX_PANE" "$@"', "sh",
                      *(f"{k}={v}" for k, v in env.items()), *command(name))
    target, pid = line.split()
    return Agent(PROFILES[name], server, target, int(pid), home, project, env)


def main(argv: list[str]) -> int:
    if argv[:1] != ["install"]:
        print("usage: python -m tests.agents.clis install", file=sys.stderr)
        return 2
    folder = install()
    for name in PACKAGES:
        print(f"{name}: {PACKAGES[name]} {version(name, folder)} in {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
