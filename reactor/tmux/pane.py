"""What is in a pane: which program runs in its foreground, and what its agent's input line holds."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass

# Container runners an agent starts its sandbox with, handing it the terminal (Gemini CLI's --sandbox runs
# `docker run -it`): as a child of an accepted agent they are the agent itself, as seen from outside.
_SANDBOX_RUNNERS = ("docker", "podman")
# Programs that run a script: the agent is the script (Gemini CLI shows as node, Aider as python).
_INTERPRETER = re.compile(r"(node|nodejs|bun|deno|python[0-9.]*|pypy[0-9.]*)")
_SCRIPT_SUFFIX = re.compile(r"\.(js|mjs|cjs|ts|py)$")
# Whitespace and box-drawing characters: a TUI input box wraps and frames long input.
_LAYOUT = re.compile(r"[\s\u2500-\u259f]+")
# Profiles parsed (Profile.of), by name and the identity of their data; emptied when it holds this many.
_PARSED: dict[tuple[str, int], tuple[dict, "Profile"]] = {}
_PARSED_LIMIT = 64

# What an input line holds, as far as the reactor is concerned.
EMPTY = "empty"          # nothing typed: the reactor may type
OURS = "ours"            # exactly this prompt, typed before and not submitted: press Enter
STALE = "stale"          # starts with a prompt's marker: reactor text never submitted: clear it
FOREIGN = "foreign"      # text the reactor did not type (the user is typing): touch nothing
UNSEEN = "unseen"        # no input line recognised on screen


def squash(text: str) -> str:
    """Drop layout characters the pane adds where the text had none (wraps, padding, frames)."""
    return _LAYOUT.sub("", text)


def foreground(pane_pid: int) -> tuple[int, list[str]] | None:
    """The pane's foreground process group leader and its command line, from /proc; None if unknown."""
    try:
        stat = _read_proc(f"/proc/{pane_pid}/stat")
        # comm may hold spaces and parentheses; after the last ')': state ppid pgrp session tty_nr tpgid
        tpgid = int(stat[stat.rfind(b")") + 1:].split()[5])
        if tpgid <= 0:
            return None
        args = _argv(_read_proc(f"/proc/{tpgid}/cmdline"))
    except (OSError, ValueError, IndexError):
        return None
    return (tpgid, args) if args else None


def terminal_child(leader: int, is_agent: Callable[[list[str]], bool], depth: int = 3) -> list[str] | None:
    """The command line of a process the foreground leader started that reads the leader's terminal (its stdin
    is the same tty) and is not itself the agent (`is_agent`): a pager, an editor or a shell opened by the
    agent, which would take typed keys as its own. An agent's launcher (Codex CLI's node script, Gemini CLI
    restarting itself) leads with the agent as such a child: its children are looked at in turn, `depth`
    levels down; a container runner (docker, podman) is the agent's sandbox. Only the standard input is
    looked at (the tty by its name, or /dev/tty): a program that opens /dev/tty itself with its standard
    input elsewhere (a password prompt) is not found. None when there is none, or it cannot be told (no
    /proc children lists)."""
    try:
        tty = os.readlink(f"/proc/{leader}/fd/0")
    except OSError:
        return None
    level = [leader]
    for _ in range(depth):
        agents = []
        for pid in level:
            for child in _children(pid):
                try:
                    if os.readlink(f"/proc/{child}/fd/0") not in (tty, "/dev/tty"):  # (its controlling terminal)
                        continue
                except PermissionError:
                    pass  # another user's (sudo asking for a password): it may read the terminal, so it counts
                except OSError:
                    continue  # gone meanwhile
                try:
                    argv = _argv(_read_proc(f"/proc/{child}/cmdline")) or [f"process {child}"]
                except OSError:
                    argv = [f"process {child}"]
                if any(name in _SANDBOX_RUNNERS for name in program_names(argv)[0]):
                    continue  # the agent's own sandbox (Gemini CLI's --sandbox): keys reach the agent inside
                if not is_agent(argv):
                    return argv
                agents.append(child)
        if not agents:
            return None
        level = agents
    return None


def _children(pid: int) -> list[str]:
    """The pids of a process's children, from every thread's children list."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    found = []
    for task in tasks:
        try:
            found += _read_proc(f"/proc/{pid}/task/{task}/children").decode().split()
        except OSError:
            continue
    return found


def _argv(raw: bytes) -> list[str]:
    args = [arg.decode("utf-8", "replace") for arg in raw.split(b"\0")]
    while args and not args[-1]:
        args.pop()
    return args


def _read_proc(path: str) -> bytes:
    """A whole /proc file, read without Python's file objects (it is on the way of every keystroke)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        data = b""
        while chunk := os.read(fd, 65536):
            data += chunk
        return data
    finally:
        os.close(fd)


def _script(interpreter: str, args: list[str]) -> str | None:
    """The script (or python -m module) an interpreter runs; None for inline code or none at all."""
    rest = iter(args)
    for arg in rest:
        if arg in ("-c", "-e", "--eval", "-p", "--print"):
            return None
        if arg == "-m" and interpreter.startswith(("python", "pypy")):
            return next(rest, None)
        if arg.startswith("-") or (arg in ("run", "x") and interpreter in ("bun", "deno")):
            continue
        return arg
    return None


def program_names(argv: list[str]) -> tuple[list[str], str | None]:
    """Names a program is known by (argv[0]'s basename; for an interpreter also its script's), and the script."""
    first = os.path.basename(argv[0]).lstrip("-") or argv[0]
    names = [first]
    script = _script(first, argv[1:]) if _INTERPRETER.fullmatch(first) else None
    if script:
        base = os.path.basename(script)
        names += [base, _SCRIPT_SUFFIX.sub("", base)]
        if "/" not in script and "." in script:  # python -m package.module
            names.append(script.rsplit(".", 1)[1])
    return names, script


def accepted(argv: list[str], programs: tuple[str, ...], profiles: dict | None = None) -> str | None:
    """The entry of `programs` the process matches: a name, with a '/' a part of its path, or its profile's
    command_pattern on the program's or script's path; else None."""
    names, script = program_names(argv)
    paths = [argv[0]] + ([script] if script else [])
    for entry in programs:
        if ("/" in entry and any(entry in path for path in paths)) or entry in names:
            return entry
    for entry in programs:
        data = (profiles or {}).get(entry)
        pattern = data.get("command_pattern") if isinstance(data, dict) else None
        if isinstance(pattern, str) and pattern:
            try:
                if any(re.search(pattern, path) for path in paths):
                    return entry
            except re.error:
                continue  # a broken pattern recognises nothing; the profile itself is refused when used
    return None


def describe(argv: list[str]) -> str:
    """A short name for a process, for the audit (names only: its arguments may hold secrets)."""
    names, script = program_names(argv)
    return f"{names[0]} {names[1]}" if script else names[0]


def view(screen: str) -> str:
    """The screen as profiles' patterns see it: each line without trailing spaces, no blank lines at the end."""
    lines = [line.rstrip() for line in screen.split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


def _pattern(name: str, data: dict, field: str, flags: int = 0) -> re.Pattern | None:
    value = data.get(field)
    if value is None:
        return None
    try:
        return re.compile(value, flags)
    except (TypeError, re.error) as exc:
        raise ValueError(f"agent profile {name!r}: bad {field}: {exc}") from None


@dataclass(frozen=True)
class Profile:
    """How an agent's screen looks: its input line (where it starts, what counts as empty, which keys clear
    it), whether its input box is shown, a turn runs or a dialog is open, how long text must be sent, and
    its reset command. The patterns come from SQL (agent_profiles); None means the profile does not say."""

    name: str
    input_pattern: re.Pattern
    ignore_pattern: re.Pattern | None
    clear_keys: tuple[str, ...]
    ready: re.Pattern | None = None
    busy: re.Pattern | None = None
    dialog: re.Pattern | None = None
    paste_above: int | None = None
    placeholder: re.Pattern | None = None
    reset_command: str | None = None

    @classmethod
    def of(cls, name: str, data: dict) -> Profile:
        """parse(name, data), kept for the very same data object: a reactor holds one agent_profiles object per
        version and reads it before every keystroke, and compiling its patterns again each time costs."""
        key = (name, id(data))
        kept = _PARSED.get(key)
        if kept is not None and kept[0] is data:
            return kept[1]
        profile = cls.parse(name, data)
        if len(_PARSED) >= _PARSED_LIMIT:
            _PARSED.clear()
        _PARSED[key] = (data, profile)  # (holding data keeps its id from being reused)
        return profile

    @classmethod
    def parse(cls, name: str, data: dict) -> Profile:
        """From the agent_profiles JSON of the claim; ValueError names the field that is wrong."""
        if not isinstance(data, dict):
            raise ValueError(f"agent profile {name!r} is not an object")
        start = _pattern(name, data, "input_pattern")
        if start is None:
            raise ValueError(f"agent profile {name!r}: bad input_pattern: missing")
        keys = data.get("clear_keys") or []
        if not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys):
            raise ValueError(f"agent profile {name!r}: clear_keys must be a list of key names")
        paste = data.get("paste_above")
        if paste is not None and (not isinstance(paste, int) or isinstance(paste, bool) or paste < 0):
            raise ValueError(f"agent profile {name!r}: paste_above must be a whole number of bytes, got {paste!r}")
        reset = data.get("reset_command")
        if reset is not None and not isinstance(reset, str):
            raise ValueError(f"agent profile {name!r}: reset_command must be text")
        return cls(name, start, _pattern(name, data, "ignore_pattern"), tuple(keys),
                   ready=_pattern(name, data, "ready_pattern", re.M), busy=_pattern(name, data, "busy_pattern", re.M),
                   dialog=_pattern(name, data, "dialog_pattern", re.M), paste_above=paste,
                   placeholder=_pattern(name, data, "placeholder_pattern"), reset_command=reset or None)

    def input_row(self, lines: list[str]) -> int | None:
        """The index of the last of lines the prompt starts (the input line); None if none does."""
        return next((i for i in range(len(lines) - 1, -1, -1) if self.input_pattern.search(lines[i])), None)

    def input_line(self, screen: str) -> str | None:
        """What the input line holds: the rest of the last screen line the prompt starts; None if none."""
        lines = screen.splitlines()
        row = self.input_row(lines)
        if row is None:
            return None
        text = lines[row][self.input_pattern.search(lines[row]).end():].strip()
        if self.ignore_pattern is not None and self.ignore_pattern.fullmatch(text):
            return ""  # the agent's placeholder in an empty input box
        return text

    def dialog_open(self, screen: str) -> bool:
        """A dialog, menu or selection list is open: keys typed now would answer it."""
        return self.dialog is not None and self.dialog.search(view(screen)) is not None

    def box_hidden(self, screen: str) -> bool:
        """The profile knows how the input box looks, and the screen does not show it."""
        return self.ready is not None and self.ready.search(view(screen)) is None

    def is_busy(self, screen: str) -> bool:
        """The agent shows that a turn is running."""
        return self.busy is not None and self.busy.search(view(screen)) is not None

    def collapsed(self, line: str | None) -> bool:
        """The input line shows only the agent's placeholder for a collapsed paste."""
        return bool(line) and self.placeholder is not None and self.placeholder.fullmatch(line) is not None

    def pastes(self, text: str) -> bool:
        """Whether text must be sent as one bracketed paste (typed, the agent would collapse or split it)."""
        return self.paste_above is not None and len(text.encode("utf-8")) > self.paste_above


def classify(line: str | None, text: str, marker: re.Pattern | None) -> str:
    """What the input line holds relative to the prompt `text` about to be typed."""
    if line is None:
        return UNSEEN
    typed = squash(line)
    if not typed:
        return EMPTY
    if typed == squash(text):
        return OURS
    if marker is not None and marker.match(line):
        return STALE
    return FOREIGN
