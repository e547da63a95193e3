"""Argument types and small helpers shared by the agent and operator subcommands."""

from __future__ import annotations

import argparse
import json
import os
import re
import textwrap
from datetime import date, datetime, timedelta
from decimal import Decimal

from reactor import db

_DURATION = re.compile(r"(\d{1,15})\s*([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
DURATION_HELP = "a duration such as 90s, 30m, 2h, 1d or 1h30m"
MAX_DURATION_DAYS = 36500  # a century: further than any mute or look-back means anything


def parse_duration(text: str) -> timedelta:
    """'1h30m' -> timedelta; raise ValueError on anything else, and on zero (a duration is positive)."""
    compact = (text or "").strip().lower()
    pos, seconds = 0, 0
    for match in _DURATION.finditer(compact):
        if match.start() != pos:
            break
        seconds += int(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not compact or pos != len(compact):
        raise ValueError(f"bad duration {text!r}: use {DURATION_HELP}")
    if seconds <= 0:
        raise ValueError(f"must be a positive duration, got {text!r}")
    if seconds > MAX_DURATION_DAYS * _UNITS["d"]:
        raise ValueError(f"duration {text!r} is too long: at most {MAX_DURATION_DAYS}d")
    return timedelta(seconds=seconds)


def duration(text: str) -> timedelta:
    """argparse type: argparse names the flag in front of this message."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def seconds(text: str) -> float:
    """argparse type for a refresh interval: a number of seconds above 0, at most a day."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    if not 0 < value <= 86400:
        raise argparse.ArgumentTypeError(f"must be above 0 and at most 86400 seconds, got {text}")
    return value


def percent(text: str) -> float:
    """argparse type for --percent: a number from 0 to 100."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 100, got {text!r}") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be between 0 and 100, got {text}")
    return value


# The largest number a PostgreSQL integer holds (ids, counts, exit codes, pids).
INT_MAX = 2_147_483_647


def whole_number(text: str) -> int:
    """argparse type for an id or an exit code: a whole number a PostgreSQL integer holds."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if not -INT_MAX - 1 <= value <= INT_MAX:
        raise argparse.ArgumentTypeError(f"must be between {-INT_MAX - 1} and {INT_MAX}, got {text}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type for token counts and limits."""
    value = whole_number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value


def host_label(text: str) -> str:
    """argparse type for --host: a label, never empty (an empty one would quietly mean the default)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"must not be empty, got {text!r}; leave --host out for the default "
                                         "(PS_HEALTH_HOST, else the hostname)")
    return text


def absolute_path(text: str) -> str:
    """argparse type for a file the reactor or another process looks at: made absolute from the current folder
    (the reactor runs elsewhere, and a relative path would name another file there)."""
    if not text or "\x00" in text:
        raise argparse.ArgumentTypeError(f"must be a file path, got {text!r}")
    return os.path.abspath(text)


def positive_int(text: str) -> int:
    value = non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be at least 1, got 0")
    return value


def command(sub, name: str, summary: str, description: str, examples: list[str] | None = None,
            func=None) -> argparse.ArgumentParser:
    """A subcommand with a description and an `examples:` epilog kept as written."""
    epilog = None
    if examples:
        epilog = "examples:\n" + "\n".join(f"  {line}" for line in examples)
    parser = sub.add_parser(name, help=summary, description=textwrap.fill(description, 88), epilog=epilog,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    if func is not None:
        parser.set_defaults(func=func)
    return parser


def _json_default(value):
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return str(value)


def print_json(data) -> None:
    """Rows and objects as JSON (times in ISO 8601, numbers as numbers); JSON escapes every control."""
    print(json.dumps(data, default=_json_default, indent=2))


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def connect(cfg, timeout: int = 5):
    """An autocommit connection for one CLI call: each API call is its own transaction."""
    return db.connect(cfg.require_dsn(), autocommit=True, connect_timeout=timeout)


def call(cfg, name: str, params: dict) -> list[dict]:
    """Open a connection, run one named query of sql/queries/cli.sql, close; return the rows."""
    with connect(cfg) as conn:
        return db.fetch(conn, "cli", name, params)


def call_one(cfg, name: str, params: dict) -> dict:
    rows = call(cfg, name, params)
    return rows[0] if rows else {}
