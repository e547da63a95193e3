"""The part of docs/ps-instructions.md that belongs in an agent's instructions, for one project."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from reactor.db.queries import DOCS_DIR
from reactor.errors import BadInput

SOURCE = DOCS_DIR / "ps-instructions.md"
BEGIN, END = "<!-- ps-health instructions: begin -->", "<!-- ps-health instructions: end -->"
EXAMPLE = "myproj"  # the project name the source's examples use
_PLAIN = re.compile(r"[\w.@%+=:,/-]+")  # needs no quoting in a shell command


def for_project(project: str, source: Path = SOURCE) -> str:
    """The section between the markers, with the example project's name replaced by project."""
    if not project or len(project) > 255 or any(ord(c) < 32 or ord(c) == 127 for c in project):
        raise BadInput(f"--project must be a name of 1 to 255 printable characters, got {project!r}")
    text = source.read_text()
    section = text[text.index(BEGIN) + len(BEGIN):text.index(END)].strip("\n") + "\n"
    quoted = project if _PLAIN.fullmatch(project) else shlex.quote(project)
    lines = []
    for line in section.splitlines(keepends=True):
        # commands need the name quoted for a shell; example prompts show it as the database writes it
        name = project if line.startswith("[ps-health") else quoted
        lines.append(re.sub(rf"\b{EXAMPLE}\b", lambda _, name=name: name, line))
    return "".join(lines)
