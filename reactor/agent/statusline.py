"""Parse Claude Code's statusline JSON and render the ps-health status line.

Runs after every agent message: it imports nothing Python has not loaded at start-up but json.
"""
from __future__ import annotations

import json
import math
import time
from collections import namedtuple

from reactor.agent import spool

MAX_WIDTH = 80
PREFIX = "ps-health"
SEP = " · "

# The fields of Claude Code's statusline payload that ps-health uses.
StatusInput = namedtuple("StatusInput", "session_id transcript_path cwd model used_percentage window_size")


def _get(obj: dict, path: str):
    """Look up a dotted path; missing keys or null give None, a non-object on the way is an error."""
    cur = obj
    parts = path.split(".")
    for i, key in enumerate(parts):
        if cur is None:
            return None
        if not isinstance(cur, dict):
            raise ValueError(f"{'.'.join(parts[:i])} must be an object, got {json.dumps(cur)}")
        cur = cur.get(key)
    return cur


def _opt_str(obj: dict, path: str) -> str | None:
    val = _get(obj, path)
    if val is not None and not isinstance(val, str):
        raise ValueError(f"{path} must be a string, got {json.dumps(val)}")
    return val or None


def _is_number(val) -> bool:
    # bool is an int subclass but `true` is never a meaningful percentage or size
    return isinstance(val, (int, float)) and not isinstance(val, bool) and math.isfinite(val)


def parse(raw: str | bytes) -> StatusInput:
    """Parse the statusline JSON; raise ValueError with a clear message on bad input."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"statusline input is not valid UTF-8: {exc}") from None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"statusline input is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"statusline input must be a JSON object, got {type(data).__name__}")
    session_id = _opt_str(data, "session_id")
    if not session_id:
        raise ValueError("session_id is required and must be a non-empty string")
    model = _get(data, "model")
    model_name = model if isinstance(model, str) else _opt_str(data, "model.display_name")
    pct = _get(data, "context_window.used_percentage")  # null before the first API call
    if pct is not None and not (_is_number(pct) and 0 <= pct <= 100):
        raise ValueError(f"context_window.used_percentage must be a number 0-100, got {json.dumps(pct)}")
    size = _get(data, "context_window.context_window_size")
    if size is not None and not (_is_number(size) and size > 0 and float(size).is_integer()):
        raise ValueError(
            f"context_window.context_window_size must be a positive integer, got {json.dumps(size)}"
        )
    return StatusInput(
        session_id=session_id,
        transcript_path=_opt_str(data, "transcript_path"),
        cwd=_opt_str(data, "cwd") or _opt_str(data, "workspace.current_dir"),
        model=model_name or None,
        used_percentage=None if pct is None else float(pct),
        window_size=None if size is None else int(size),
    )


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def render(
    ctx_percent: float | None, running: int, stalled: int, open_alerts: int, project: str | None
) -> str:
    """One plain-text line, at most MAX_WIDTH chars; the project name is truncated to fit."""
    parts = [f"{running} running"]
    if stalled:
        parts.append(f"{stalled} stalled")
    if open_alerts:
        parts.append(_plural(open_alerts, "alert"))
    return _line(ctx_percent, parts, project)


def render_offline(ctx_percent: float | None, project: str | None) -> str:
    """The line when no reactor has written current figures: the agent's own context, and 'offline'."""
    return _line(ctx_percent, ["offline"], project)


def _line(ctx_percent: float | None, parts: list[str], project: str | None) -> str:
    ctx = "ctx ?" if ctx_percent is None else f"ctx {math.floor(ctx_percent + 0.5)}%"
    tail = SEP + SEP.join([ctx, *parts])
    # Control characters in a directory name would corrupt the terminal line.
    name = "".join(ch for ch in (project or "") if ch.isprintable())
    room = MAX_WIDTH - len(PREFIX) - 1 - len(tail)
    if not name or room < 2:
        return (PREFIX + tail)[:MAX_WIDTH]
    if len(name) > room:
        name = name[: room - 1] + "…"
    return f"{PREFIX} {name}{tail}"


def fallback(reason: str) -> str:
    """Short single-line placeholder when status is unavailable; reason is reduced to one line."""
    lines = (reason or "").strip().splitlines()
    detail = lines[0].strip()[:40] if lines else ""
    if detail.startswith("Traceback"):  # a formatted traceback says nothing useful in 40 chars
        detail = ""
    return f"{PREFIX}: unavailable ({detail})" if detail else f"{PREFIX}: unavailable"


def line_for(data: StatusInput, project: str | None, status: dict | None, pane: str | None, now: float) -> str:
    """The line from the reactor's status cache: the pane's session, else the project's."""
    if not status or not isinstance(status.get("fresh_until"), (int, float)) or status["fresh_until"] < now:
        return render_offline(data.used_percentage, project)
    entry = (status.get("panes") or {}).get(pane) if pane else None
    entry = entry or (status.get("projects") or {}).get(project)
    if not isinstance(entry, dict):
        return render(data.used_percentage, 0, 0, 0, f"{project or '?'} (not registered)")
    ctx = data.used_percentage if data.used_percentage is not None else entry.get("context_percent")
    return render(ctx, entry.get("running") or 0, entry.get("stalled") or 0, entry.get("open_alerts") or 0,
                  entry.get("project"))


def run(project_flag: str | None, raw: bytes, environ) -> str:
    """Record the context fact in the host spool and return the line to print; never raises."""
    try:
        data = parse(raw)
    except ValueError:
        return fallback("bad statusline input")
    try:
        project = spool.project_name(project_flag, environ, data.cwd)
        spool.emit(environ, "context", project, {
            "session_id": spool.clip(data.session_id, 255), "transcript_path": spool.clip(data.transcript_path),
            "percent": data.used_percentage,
            "window_size": data.window_size}, named=bool(project_flag))
        status = spool.read_status(spool.default_dir(environ), spool.host_label(environ))
        return line_for(data, project, status, environ.get("TMUX_PANE") or None, time.time())
    except Exception as exc:  # an unusable spool folder, or a bug: the agent's screen gets one line anyway
        return fallback(str(exc))
