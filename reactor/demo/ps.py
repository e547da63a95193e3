"""The demo's stand-in project supervisor: shows each prompt it receives and answers it."""

from __future__ import annotations

import re
import subprocess
import sys

RESPOND = re.compile(r"ps-health respond (\d+)")
CONTEXT = re.compile(r"ps-health context --project (\S+) --percent")
ANSWER = "demo PS: saw it; the spawn is a demo that only sleeps, leaving it be"


def _ps_health(*args: str) -> str:
    res = subprocess.run([sys.executable, "-m", "reactor.cli", *args], capture_output=True, text=True)
    return (res.stdout + res.stderr).strip() or f"exit {res.returncode}"


def handle(line: str) -> list[str]:
    """Run what a prompt asks for: a context report when asked, then every answer command."""
    done = []
    for project in CONTEXT.findall(line):
        done.append(_ps_health("context", "--project", project, "--percent", "40"))
    for check_id in RESPOND.findall(line):
        done.append(f"$ ps-health respond {check_id} \"{ANSWER}\"")
        done.append(_ps_health("respond", check_id, ANSWER))
    return done


def main() -> int:
    project = sys.argv[1] if len(sys.argv) > 1 else "ps-health-demo"
    print(f"demo PS of project {project}: waiting for ps-health prompts (Ctrl-C ends it)", flush=True)
    while True:
        try:
            line = input("> ")  # a prompt, as an agent CLI's input box has: the reactor types after it
        except (EOFError, KeyboardInterrupt):
            return 0
        if not line.strip():
            continue
        print(f"\n>>> received {len(line)} characters", flush=True)
        replies = handle(line)
        for reply in replies or ["(no `ps-health respond` command in it; ignoring)"]:
            print(f"    {reply}", flush=True)
        print("", flush=True)


if __name__ == "__main__":
    sys.exit(main())
