"""Tests for reactor.agent.statusline."""
from __future__ import annotations

import json

import pytest

from reactor.agent.statusline import StatusInput, fallback, parse, render

FULL = {
    "session_id": "abc-123",
    "transcript_path": "/home/u/.claude/projects/x/abc-123.jsonl",
    "cwd": "/home/u/src/myproj",
    "workspace": {"current_dir": "/home/u/src/other", "project_dir": "/home/u/src/myproj"},
    "model": {"id": "claude-opus", "display_name": "Opus"},
    "context_window": {"used_percentage": 72.4, "context_window_size": 200000},
}


def test_parse_valid() -> None:
    s = parse(json.dumps(FULL))
    assert s == StatusInput(
        session_id="abc-123",
        transcript_path="/home/u/.claude/projects/x/abc-123.jsonl",
        cwd="/home/u/src/myproj",
        model="Opus",
        used_percentage=72.4,
        window_size=200000,
    )
    assert parse(json.dumps(FULL).encode()) == s


def test_parse_workspace_dir_fallback_and_missing_context_window() -> None:
    data = {k: v for k, v in FULL.items() if k not in ("cwd", "context_window")}
    s = parse(json.dumps(data))
    assert s.cwd == "/home/u/src/other"
    assert s.used_percentage is None and s.window_size is None


def test_parse_null_percentage_and_int_values() -> None:
    data = {**FULL, "context_window": {"used_percentage": None, "context_window_size": 1000000}}
    assert parse(json.dumps(data)).used_percentage is None
    data = {**FULL, "context_window": {"used_percentage": 0, "context_window_size": 200000.0}}
    s = parse(json.dumps(data))
    assert s.used_percentage == 0.0 and s.window_size == 200000 and isinstance(s.window_size, int)


def test_parse_minimal() -> None:
    s = parse('{"session_id": "s"}')
    assert s == StatusInput("s", None, None, None, None, None)


@pytest.mark.parametrize("raw", ["", "{", "not json", b"\xff\xfe"])
def test_parse_malformed(raw) -> None:
    with pytest.raises(ValueError, match="statusline input"):
        parse(raw)


def test_parse_non_object() -> None:
    with pytest.raises(ValueError, match="must be a JSON object"):
        parse("[1, 2]")


@pytest.mark.parametrize(
    "ctx, message",
    [
        ({"used_percentage": "abc"}, 'context_window.used_percentage must be a number 0-100, got "abc"'),
        ({"used_percentage": 150}, "used_percentage must be a number 0-100, got 150"),
        ({"used_percentage": -1}, "used_percentage must be a number 0-100"),
        ({"used_percentage": True}, "used_percentage must be a number 0-100, got true"),
        ({"context_window_size": "big"}, "context_window_size must be a positive integer"),
        ({"context_window_size": 1.5}, "context_window_size must be a positive integer"),
    ],
)
def test_parse_bad_context_window(ctx, message) -> None:
    with pytest.raises(ValueError) as err:
        parse(json.dumps({**FULL, "context_window": ctx}))
    assert message in str(err.value)


@pytest.mark.parametrize(
    "patch, message",
    [
        ({"session_id": None}, "session_id is required"),
        ({"session_id": 5}, "session_id must be a string, got 5"),
        ({"context_window": 7}, "context_window must be an object, got 7"),
        ({"model": {"display_name": 3}}, "model.display_name must be a string"),
        ({"cwd": ["x"]}, "cwd must be a string"),
    ],
)
def test_parse_wrong_types(patch, message) -> None:
    with pytest.raises(ValueError) as err:
        parse(json.dumps({**FULL, **patch}))
    assert message in str(err.value)


def test_render_full() -> None:
    expected = "ps-health myproj · ctx 72% · 3 running · 1 stalled · 1 alert"
    assert render(72.4, 3, 1, 1, "myproj") == expected


def test_render_plural_and_rounding() -> None:
    assert render(72.5, 0, 2, 4, "p") == "ps-health p · ctx 73% · 0 running · 2 stalled · 4 alerts"


def test_render_omits_zero_counts_but_not_running() -> None:
    assert render(5, 0, 0, 0, "p") == "ps-health p · ctx 5% · 0 running"


def test_render_unknown_ctx_and_no_project() -> None:
    assert render(None, 2, 0, 0, None) == "ps-health · ctx ? · 2 running"
    assert render(None, 2, 0, 0, "") == "ps-health · ctx ? · 2 running"


def test_render_no_ansi() -> None:
    assert "\x1b" not in render(99, 1, 1, 1, "proj\x1b[31m")


@pytest.mark.parametrize("project", ["x" * 200, "a-very-long-project-name-" * 5])
def test_render_length_bound(project: str) -> None:
    line = render(100, 12345, 678, 90, project)
    assert len(line) <= 80
    assert line.startswith("ps-health ")
    assert "…" in line
    assert line.endswith("· ctx 100% · 12345 running · 678 stalled · 90 alerts")


def test_render_huge_counts_still_bounded() -> None:
    assert len(render(1, 10**40, 10**40, 10**40, "p")) <= 80


def test_fallback() -> None:
    assert fallback("") == "ps-health: unavailable"
    assert fallback("db down") == "ps-health: unavailable (db down)"
    tb = 'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: x'
    assert fallback(tb) == "ps-health: unavailable"
    line = fallback("connection refused " * 20 + "\nsecond line")
    assert "\n" not in line and len(line) <= 80
