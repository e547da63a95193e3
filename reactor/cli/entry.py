"""The `ps-health` console script. `statusline` and `hook` run after every agent message, so they are
answered here without argparse or the full CLI (no psycopg, no libtmux); everything else, `--help`
included, goes to reactor.cli."""

from __future__ import annotations

import os
import sys

HOT = ("statusline", "hook")


def hot_args(argv: list[str]) -> tuple[str | None, str | None, list[str], str | None] | None:
    """(event, project, ignored, agent) for `statusline [--project P]` / `hook EVENT [--project P] [--agent A]`;
    None: not hot."""
    if not argv or argv[0] not in HOT or any(a in ("-h", "--help") for a in argv[1:]):
        return None
    rest, event, ignored = argv[1:], None, []
    given: dict[str, str | None] = {"--project": None, "--agent": None}
    if argv[0] == "hook" and rest and not rest[0].startswith("-"):
        event, rest = rest[0], rest[1:]
    while rest:
        arg, rest = rest[0], rest[1:]
        name, eq, value = arg.partition("=")
        if name in given and (eq or rest) and (argv[0] == "hook" or name == "--project"):
            if not eq:
                value, rest = rest[0], rest[1:]
            given[name] = value
        else:
            ignored.append(arg)
    return event, given["--project"] or None, ignored, given["--agent"] or None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    hot = hot_args(argv)
    if hot is None:
        from reactor.cli.main import main as cli_main

        return cli_main(argv)
    event, project, ignored, agent = hot
    if ignored:  # a hand-edited command line: say so, but never fail the agent over it
        print(f"ps-health {argv[0]}: ignoring {' '.join(ignored)}", file=sys.stderr)
    try:
        raw = sys.stdin.buffer.read()
    except (OSError, ValueError):
        raw = b""
    if argv[0] == "hook":
        from reactor.agent import hooks

        return hooks.run(event or "", project, raw, os.environ, agent)
    from reactor.agent import statusline

    print(statusline.run(project, raw, os.environ))
    return 0


if __name__ == "__main__":
    sys.exit(main())
