#!/usr/bin/env bash
# One set-up step of `make run`: say what it does, run it with its output indented, say how long
# it took (or that it failed, and after how long). Usage: step.sh "what it does" COMMAND [ARG...]
set -uo pipefail

what=$1
shift
echo "==> $what"
start=$(date +%s%N)
"$@" 2>&1 | sed -u 's/^/    /'
rc=${PIPESTATUS[0]}
took=$(( ($(date +%s%N) - start) / 100000000 ))
took="$((took / 10)).$((took % 10)) s"
if [ "$rc" -eq 0 ]; then
  echo "    done in $took"
else
  echo "    FAILED after $took (exit $rc)"
fi
exit "$rc"
