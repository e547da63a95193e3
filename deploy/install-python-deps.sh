#!/usr/bin/env bash
# Create the virtualenv and install ps-health with its test extras, one line per package as pip
# collects it (pip's own output, shortened), so the minute it takes is never silent.
# Usage: install-python-deps.sh VENV PYTHON
set -euo pipefail

venv=$1
python=$2
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install --progress-bar off -e '.[test]' 2>&1 | awk '
  /^Collecting /                    { print "collecting " $2; fflush(); next }
  /^Installing collected packages:/ { n = split(substr($0, 32), p, ","); print "installing " n " packages"; fflush(); next }
  /^Successfully installed/         { print; fflush(); next }
  /^ERROR/                          { print; fflush() }'
