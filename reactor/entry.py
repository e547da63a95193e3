"""The `ps-health` console script. `statusline` and `hook` run after every agent message, so they are
answered here without argparse or the full CLI (no psycopg, no libtmux); everything else, `--help`
included, goes to reactor.cli."""

from __future__ import annotations

import os
import sys

HOT = ("statusline", "hook")


def hot_args(argv: list[str]) -> tuple[str | None, str | None, list[str]] | None:
    """(event, project, ignored) for `statusline [--project P]` / `hook EVENT [--project P]`; None: not hot."""
    if not argv or argv[0] not in HOT or any(a in ("-h", "--help") for a in argv[1:]):
        return None
    rest, event, project, ignored = argv[1:], None, None, []
    if argv[0] == "hook" and rest and not rest[0].startswith("-"):
        event, rest = rest[0], rest[1:]
    while rest:
        arg, rest = rest[0], rest[1:]
        if arg == "--project" and rest:
            project, rest = rest[0], rest[1:]
        elif arg.startswith("--project="):
            project = arg.partition("=")[2]
        else:
            ignored.append(arg)
    return event, project or None, ignored


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    hot = hot_args(argv)
    if hot is None:
        from reactor.cli import main as cli_main

        return cli_main(argv)
    event, project, ignored = hot
    if ignored:  # a hand-edited command line: say so, but never fail the agent over it
        print(f"ps-health {argv[0]}: ignoring {' '.join(ignored)}", file=sys.stderr)
    try:
        raw = sys.stdin.buffer.read()
    except (OSError, ValueError):
        raw = b""
    if argv[0] == "hook":
        from reactor import hooks

        return hooks.run(event or "", project, raw, os.environ)
    from reactor import statusline

    print(statusline.run(project, raw, os.environ))
    return 0


if __name__ == "__main__":
    sys.exit(main())
