"""Parse Claude Code's statusline JSON and render the ps-health status line."""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import Any

MAX_WIDTH = 80
PREFIX = "ps-health"
SEP = " · "


@dataclass(frozen=True)
class StatusInput:
    """The fields of Claude Code's statusline payload that ps-health uses."""

    session_id: str
    transcript_path: str | None
    cwd: str | None
    model: str | None
    used_percentage: float | None
    window_size: int | None


def _get(obj: dict[str, Any], path: str) -> Any:
    """Look up a dotted path; missing keys or null give None, a non-object on the way is an error."""
    cur: Any = obj
    parts = path.split(".")
    for i, key in enumerate(parts):
        if cur is None:
            return None
        if not isinstance(cur, dict):
            raise ValueError(f"{'.'.join(parts[:i])} must be an object, got {json.dumps(cur)}")
        cur = cur.get(key)
    return cur


def _opt_str(obj: dict[str, Any], path: str) -> str | None:
    val = _get(obj, path)
    if val is not None and not isinstance(val, str):
        raise ValueError(f"{path} must be a string, got {json.dumps(val)}")
    return val or None


def _is_number(val: Any) -> bool:
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


def project_from_cwd(cwd: str) -> str:
    """Basename of cwd, ignoring trailing slashes ("/" stays "/")."""
    return os.path.basename(cwd.rstrip("/" + os.sep)) or cwd


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def render(
    ctx_percent: float | None, running: int, stalled: int, open_alerts: int, project: str | None
) -> str:
    """One plain-text line, at most MAX_WIDTH chars; the project name is truncated to fit."""
    ctx = "ctx ?" if ctx_percent is None else f"ctx {math.floor(ctx_percent + 0.5)}%"
    parts = [ctx, f"{running} running"]
    if stalled:
        parts.append(f"{stalled} stalled")
    if open_alerts:
        parts.append(_plural(open_alerts, "alert"))
    tail = SEP + SEP.join(parts)
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
