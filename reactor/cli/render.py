"""Text rendering for the CLI: tables, context bars, ages. Formats what SQL decided."""

from __future__ import annotations

import copy
import logging
import math
import numbers
from collections.abc import Mapping
from datetime import datetime

FULL, EMPTY = "█", "░"


def safe(value: object) -> str:
    """Text as a terminal may show it: every character it would act on or hide (controls such as ESC,
    bidi and zero-width formatting, line separators) is written as an escape like \\x1b or \\u202e."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


class _Shown:
    """A log argument as safe() shows it: str and repr with every non-printable character escaped."""

    __slots__ = ("value",)

    def __init__(self, value: object):
        self.value = value

    def __str__(self) -> str:
        return safe(self.value)

    def __repr__(self) -> str:
        return safe(repr(self.value))


def _shown(value: object) -> object:
    # Numbers stay numbers (%d, %.1f) and cannot hold a line break.
    return value if value is None or isinstance(value, numbers.Number) else _Shown(value)


class SafeFormatter(logging.Formatter):
    """One line per record for what came from outside: the record's arguments (a file name, an agent's
    folder, an error naming either) are shown through safe(), so a newline in them is written \\n and
    cannot start a forged line; then every line of the record (the message's own lines, a traceback)
    goes through safe() too, so nothing logged can drive the terminal."""

    def format(self, record: logging.LogRecord) -> str:
        if record.args or not isinstance(record.msg, str):
            record = copy.copy(record)  # other handlers see the record as it was logged
            if not isinstance(record.msg, str):
                record.msg = _Shown(record.msg)  # an object logged as the message is a value too
            if isinstance(record.args, Mapping):
                record.args = {key: _shown(value) for key, value in record.args.items()}
            elif record.args:
                record.args = tuple(_shown(value) for value in record.args)
        return "\n".join(safe(line) for line in super().format(record).split("\n"))


def bar(percent: float | None, width: int = 10) -> str:
    """'███████░░░ 72%' for a percentage, '-' when unknown."""
    if percent is None:
        return "-"
    value = max(0.0, min(100.0, float(percent)))
    filled = min(width, int(value * width / 100 + 0.5))
    return f"{FULL * filled}{EMPTY * (width - filled)} {math.floor(value + 0.5)}%"


def span(seconds: float) -> str:
    """A compact duration: 42s, 3m, 1h05m, 2d03h."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 24:
        return f"{hours}h{minutes % 60:02d}m"
    return f"{hours // 24}d{hours % 24:02d}h"


def ago(when: datetime | None, now: datetime) -> str:
    """'3m ago' (or 'in 3m' for a future time), '-' when there is no time."""
    if when is None:
        return "-"
    delta = (now - when).total_seconds()
    return f"{span(delta)} ago" if delta >= 0 else f"in {span(-delta)}"


def clock(when: datetime | None) -> str:
    return "-" if when is None else when.strftime("%Y-%m-%d %H:%M:%S")


def table(headers: list[str], rows: list[list[str]]) -> str:
    """Left-aligned columns separated by two spaces; the last column is not padded."""
    if not rows:
        return ""
    cells = [[safe(c) for c in r] for r in [headers, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for r in cells:
        padded = [c.ljust(widths[i]) if i < len(r) - 1 else c for i, c in enumerate(r)]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)


def shorten(text: str | None, width: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


def system_line(system: dict, now: datetime) -> str:
    """The monitor's own health: last sweep, reactors running, pg_cron and who sweeps (as SQL words it)."""
    age = system.get("sweep_age_seconds")
    sweep = "never" if age is None else f"{span(float(age))} ago"
    reactors = system.get("reactors") or []
    hosts: dict[str, int] = {}
    for r in reactors:
        hosts[r["host"]] = hosts.get(r["host"], 0) + 1
    seen = ", ".join(safe(host) + (f" ×{n}" if n > 1 else "") for host, n in hosts.items())
    cron = "pg_cron: " + ("present" if system.get("pg_cron") else "absent")
    return (f"system: last sweep {sweep} · reactors running: {len(reactors)}{' (' + seen + ')' if seen else ''}"
            f" · {cron}, {system.get('sweep_note')}")


def _session(row: dict, now: datetime) -> str:
    state = row["session_state"]
    if state == "ended":
        return f"ended {ago(row['ended_at'], now)}"
    return state if state == "none" else f"{state} ({row['session_type']})"


def _alerts(row: dict) -> str:
    return f"{row['open_alerts']} {row['worst_status']}" if row["open_alerts"] else "0"


def _prompt(row: dict, now: datetime) -> str:
    if row["last_prompt_id"] is None:
        return "-"
    return f"#{row['last_prompt_id']} {row['last_prompt_state']} {ago(row['last_prompt_at'], now)}"


def status_table(projects: list[dict], now: datetime) -> str:
    """One line per project, in the columns of `ps-health status`."""
    headers = ["PROJECT", "SESSION", "PANE", "CONTEXT", "ACTIVE", "RUN", "STALL", "ALERTS", "LAST PROMPT",
               "MUTED"]
    rows = []
    for r in projects:
        pane = f"{r['host'] or '?'}:{r['tmux_target']}" if r["tmux_target"] else "-"
        muted = f"until {r['muted_until']:%H:%M}" if r["muted_until"] else "-"
        rows.append([r["project"], _session(r, now), pane, bar(r["context_percent"]),
                     ago(r["last_activity"], now), r["running"], r["stalled"], _alerts(r), _prompt(r, now), muted])
    return table(headers, rows) or "no projects yet: a PS registers with `ps-health session register PROJECT`"


def status_report(system: dict, projects: list[dict], now: datetime) -> str:
    return f"ps-health status at {clock(now)}\n{system_line(system, now)}\n\n{status_table(projects, now)}"


def checks_table(rows: list[dict], now: datetime) -> str:
    headers = ["ID", "WHEN", "PROJECT", "TYPE", "SUBJECT", "STATUS", "ACTION", "RESPONSE"]
    body = [[r["id"], ago(r["check_time"], now), r["project"], r["check_type"], r.get("subject") or "-",
             r["status"], shorten(r["action_taken"], 48), shorten(r.get("ps_response"), 40) or "-"]
            for r in rows]
    return table(headers, body) or "no checks match"


def prompts_table(rows: list[dict], now: datetime) -> str:
    headers = ["ID", "CREATED", "PROJECT", "SEVERITY", "STATE", "WHY", "TRIES", "TARGET", "TEXT"]
    body = [[r["id"], ago(r["created_at"], now), r["project"], r["severity"], r["state"],
             shorten(r["reason"], 60) or "-", r["attempts"],
             f"{r['host']}:{r['target']}" if r["target"] else "-", shorten(r["text"], 70)] for r in rows]
    return table(headers, body) or "no prompts match"


def settings_table(rows: list[dict]) -> str:
    """Each setting with its range; stored values that are not allowed (and so ignored) listed below."""
    headers = ["KEY", "VALUE", "FROM", "ALLOWED", "DESCRIPTION"]
    body = table(headers, [[r["key"], r["value"], r["source"], r["allowed"], r["description"]] for r in rows])
    problems = [f"! {r['key']}: {r['problem']}" for r in rows if r.get("problem")]
    return "\n".join([body, *(["", *problems] if problems else [])])
