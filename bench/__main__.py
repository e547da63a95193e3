"""`make bench`: run every bench/bench_*.py (or the ones named on the command line)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path


def main(names: list[str]) -> int:
    modules = sorted(p.stem for p in Path(__file__).parent.glob("bench_*.py"))
    for name in names or modules:
        name = name if name.startswith("bench_") else f"bench_{name}"
        print(f"\n=== {name}", flush=True)
        importlib.import_module(f"bench.{name}").main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
