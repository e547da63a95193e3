"""The `ps-health` command: parses arguments, calls the SQL API, prints. Decides nothing."""

from __future__ import annotations

import argparse
import logging
import os
import sys

import psycopg

# Each module adds its subcommands; importing here keeps `ps-health --help` complete.
from reactor import __version__, config
from reactor.cli import agent as cmd_agent
from reactor.cli import cron as cmd_cron
from reactor.cli import database as cmd_db
from reactor.cli import doctor
from reactor.cli import ops as cmd_ops
from reactor.cli import reactor as cmd_reactor
from reactor.cli import setup as cmd_setup
from reactor.cli.render import SafeFormatter, safe
from reactor.errors import BadInput, PsHealthError, from_psycopg

COMMAND_MODULES = [cmd_agent, cmd_ops, doctor, cmd_reactor, cmd_cron, cmd_db, cmd_setup]


def _check_encoding(args: argparse.Namespace) -> None:
    """Refuse an argument that is not valid UTF-8 (Python keeps its bytes as lone surrogates)."""
    for name, value in vars(args).items():
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                shown = value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
                raise BadInput(f'{name.replace("_", "-")}: not valid UTF-8: "{shown}"') from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ps-health",
        description="Keep AI coding-agent project supervisors healthy: records sessions and spawns in "
                    "PostgreSQL, decides there what is wrong, and prompts the supervisor through tmux.",
        epilog="Database: PS_HEALTH_DSN (libpq conninfo) or the PG* variables; without them the embedded "
               "cluster under PS_HEALTH_HOME (default ./.ps-health) is used when it runs.")
    parser.add_argument("--version", action="version", version=f"ps-health {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 1 failure, 2 bad usage or input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(SafeFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, handlers=[handler])
    try:
        _check_encoding(args)
        cfg = config.load()
        return args.func(args, cfg) or 0
    except PsHealthError as exc:
        return _failed(exc)
    except psycopg.Error as exc:  # a call not mapped on its way: said the same way, never as a traceback
        return _failed(from_psycopg(exc))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # output piped into `head` and the like: stop quietly
        sys.stderr = open(os.devnull, "w")
        return 0


def _failed(exc: PsHealthError) -> int:
    where = f" [{exc.sqlstate}]" if exc.sqlstate else ""
    print(f"ps-health: {safe(exc)}{where}" + (f"\n  hint: {safe(exc.hint)}" if exc.hint else ""), file=sys.stderr)
    return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
