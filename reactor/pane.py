"""What is in a pane: which program runs in its foreground, and what its agent's input line holds."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

# Programs that run a script: the agent is the script (Gemini CLI shows as node, Aider as python).
_INTERPRETER = re.compile(r"(node|nodejs|bun|deno|python[0-9.]*|pypy[0-9.]*)")
_SCRIPT_SUFFIX = re.compile(r"\.(js|mjs|cjs|ts|py)$")
# Whitespace and box-drawing characters: a TUI input box wraps and frames long input.
_LAYOUT = re.compile(r"[\s\u2500-\u259f]+")

# What an input line holds, as far as the reactor is concerned.
EMPTY = "empty"          # nothing typed: the reactor may type
OURS = "ours"            # exactly this prompt, typed before and not submitted: press Enter
STALE = "stale"          # starts with a prompt's marker: reactor text never submitted: clear it
FOREIGN = "foreign"      # text the reactor did not type (the user is typing): touch nothing
UNSEEN = "unseen"        # no input line recognised on screen


def squash(text: str) -> str:
    """Drop layout characters the pane adds where the text had none (wraps, padding, frames)."""
    return _LAYOUT.sub("", text)


def foreground_argv(pane_pid: int) -> list[str] | None:
    """The command line of the pane's foreground process group leader, from /proc; None if unknown."""
    try:
        with open(f"/proc/{pane_pid}/stat", "rb") as fh:
            stat = fh.read()
        # comm may hold spaces and parentheses; after the last ')': state ppid pgrp session tty_nr tpgid
        tpgid = int(stat[stat.rfind(b")") + 1:].split()[5])
        if tpgid <= 0:
            return None
        with open(f"/proc/{tpgid}/cmdline", "rb") as fh:
            raw = fh.read()
    except (OSError, ValueError, IndexError):
        return None
    args = [arg.decode("utf-8", "replace") for arg in raw.split(b"\0")]
    while args and not args[-1]:
        args.pop()
    return args or None


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


def accepted(argv: list[str], programs: tuple[str, ...]) -> str | None:
    """The entry of `programs` the process matches: a name, or with a '/' a part of its path; else None."""
    names, script = program_names(argv)
    paths = [argv[0]] + ([script] if script else [])
    for entry in programs:
        if ("/" in entry and any(entry in path for path in paths)) or entry in names:
            return entry
    return None


def describe(argv: list[str]) -> str:
    """A short name for a process, for the audit (names only: its arguments may hold secrets)."""
    names, script = program_names(argv)
    return f"{names[0]} {names[1]}" if script else names[0]


@dataclass(frozen=True)
class Profile:
    """How an agent's input line looks: where it starts, what counts as empty, which keys clear it."""

    name: str
    input_pattern: re.Pattern
    ignore_pattern: re.Pattern | None
    clear_keys: tuple[str, ...]

    @classmethod
    def parse(cls, name: str, data: dict) -> Profile:
        """From the agent_profiles JSON of the claim; ValueError names the field that is wrong."""
        try:
            start = re.compile(data["input_pattern"])
        except (KeyError, TypeError, re.error) as exc:
            raise ValueError(f"agent profile {name!r}: bad input_pattern: {exc}") from None
        try:
            ignore = re.compile(data["ignore_pattern"]) if data.get("ignore_pattern") else None
        except (TypeError, re.error) as exc:
            raise ValueError(f"agent profile {name!r}: bad ignore_pattern: {exc}") from None
        keys = data.get("clear_keys") or []
        if not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys):
            raise ValueError(f"agent profile {name!r}: clear_keys must be a list of key names")
        return cls(name, start, ignore, tuple(keys))

    def input_line(self, screen: str) -> str | None:
        """What the input line holds: the rest of the last screen line the prompt starts; None if none."""
        for line in reversed(screen.splitlines()):
            match = self.input_pattern.search(line)
            if match:
                text = line[match.end():].strip()
                if self.ignore_pattern is not None and self.ignore_pattern.fullmatch(text):
                    return ""  # the agent's placeholder in an empty input box
                return text
        return None


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
