"""The hot path's figures: `ps-health statusline` and one hook call against starting Python at all.

Claude Code runs the statusline after every message and a hook at every event, so each call should
cost little more than the interpreter's own start. Medians of many runs, interleaved so a busy moment
of the machine hits every command alike. No database: the hot path never talks to one.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS = int(os.environ.get("PS_HEALTH_BENCH_HOTPATH_RUNS", "200"))
ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

# What Claude Code 2.1 passes, as captured from the real binary (paths shortened).
STATUSLINE = {
    "session_id": "39c128b0-86a6-44e3-a937-dc73de3da3a9",
    "transcript_path": "/home/me/.claude/projects/-home-me-shop/39c128b0-86a6-44e3-a937-dc73de3da3a9.jsonl",
    "cwd": "/home/me/shop", "prompt_id": "ba9fb18f-242d-4ed0-8fab-bcce05078f6f", "effort": {"level": "high"},
    "model": {"id": "claude-opus-4-8[1m]", "display_name": "Opus 4.8 (1M context)"},
    "workspace": {"current_dir": "/home/me/shop", "project_dir": "/home/me/shop", "added_dirs": []},
    "version": "2.1.197", "output_style": {"name": "default"},
    "cost": {"total_cost_usd": 1.2, "total_duration_ms": 914753, "total_api_duration_ms": 233033,
             "total_lines_added": 310, "total_lines_removed": 52},
    "context_window": {"total_input_tokens": 312000, "total_output_tokens": 20400, "context_window_size": 1000000,
                       "current_usage": {"input_tokens": 12, "output_tokens": 480, "cache_creation_input_tokens": 1800,
                                         "cache_read_input_tokens": 310188},
                       "used_percentage": 31, "remaining_percentage": 69},
    "exceeds_200k_tokens": True, "fast_mode": False, "thinking": {"enabled": True},
}
PRE_TOOL_USE = {
    "session_id": "39c128b0-86a6-44e3-a937-dc73de3da3a9",
    "transcript_path": STATUSLINE["transcript_path"], "cwd": "/home/me/shop",
    "prompt_id": "f5d1566d-294a-4f3a-b25e-93084fc38ad1", "permission_mode": "default", "effort": {"level": "high"},
    "hook_event_name": "PreToolUse", "tool_name": "Agent",
    "tool_input": {"description": "Research the payment API", "subagent_type": "general-purpose",
                   "prompt": "Find out how the payment provider's refund endpoint works. " * 20},
    "tool_use_id": "toolu_01ABCDEF",
}


def _time(argv: list[str], stdin: bytes, env: dict) -> tuple[float, float]:
    """Wall and CPU seconds of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(argv, input=stdin, env=env, stdout=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="ps-health-bench-") as tmp:
        spool = Path(tmp) / "spool"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PS_HEALTH_")}
        env.update(PS_HEALTH_SPOOL=str(spool), PS_HEALTH_HOST="bench", TMUX_PANE="%0",
                   CLAUDE_PROJECT_DIR="/home/me/shop")
        spool.mkdir(mode=0o700)
        # A status cache as a running reactor leaves it, so the statusline does all its work.
        now = time.time()
        entry = {"project": "shop", "pane": "%0", "context_percent": 31.0, "running": 2, "stalled": 0,
                 "open_alerts": 0}
        (spool / "status-bench.json").write_text(json.dumps(
            {"host": "bench", "written_at": now, "fresh_until": now + 86400, "panes": {"%0": entry},
             "projects": {"shop": entry}}))
        python = str(BIN / "python")
        commands = {
            "python -c pass": ([python, "-c", "pass"], b""),
            "ps-health statusline": ([str(BIN / "ps-health"), "statusline"], json.dumps(STATUSLINE).encode()),
            "ps-health hook PreToolUse": ([str(BIN / "ps-health"), "hook", "PreToolUse"],
                                          json.dumps(PRE_TOOL_USE).encode()),
            "statusline via the full CLI": ([python, "-m", "reactor.cli", "statusline"],
                                            json.dumps(STATUSLINE).encode()),
        }
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
        for argv, stdin in commands.values():  # warm the page cache once
            _time(argv, stdin, env)
        for _ in range(RUNS):
            for name, (argv, stdin) in commands.items():
                times[name].append(_time(argv, stdin, env))
        facts = sum(1 for _ in (spool / "facts.jsonl").open())
    base_wall = statistics.median(w for w, _ in times["python -c pass"])
    base_cpu = statistics.median(c for _, c in times["python -c pass"])
    print(f"hot path: median of {RUNS} runs each, interleaved ({facts} facts appended to the spool)")
    print(f"  {'command':<30} {'wall ms':>8} {'p90 ms':>8} {'CPU ms':>8} {'x python':>9}")
    for name, runs in times.items():
        walls = sorted(w for w, _ in runs)
        wall, cpu = statistics.median(walls), statistics.median(c for _, c in runs)
        p90 = walls[int(0.9 * (len(walls) - 1))]
        print(f"  {name:<30} {wall * 1000:>8.1f} {p90 * 1000:>8.1f} {cpu * 1000:>8.1f} "
              f"{wall / base_wall:>8.2f}x")
    print(f"  (CPU of python -c pass: {base_cpu * 1000:.1f} ms; target: statusline and hook within 2x its wall time)")


if __name__ == "__main__":
    main()
