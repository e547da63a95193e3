#!/usr/bin/env bash
# Install the system packages ps-health needs when they are missing: apt-get when root,
# otherwise print the exact command and fail.
set -euo pipefail

need=()
ls /usr/lib/postgresql/15/bin/pg_ctl >/dev/null 2>&1 || need+=(postgresql-15)
ls /usr/lib/postgresql/15/lib/pg_cron.so >/dev/null 2>&1 || need+=(postgresql-15-cron)
ls /usr/share/postgresql/15/extension/pgtap.control >/dev/null 2>&1 || need+=(postgresql-15-pgtap)
command -v pg_prove >/dev/null 2>&1 || need+=(libtap-parser-sourcehandler-pgtap-perl)
command -v tmux >/dev/null 2>&1 || need+=(tmux)

if [ ${#need[@]} -eq 0 ]; then
  echo "all present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "ps-health needs system packages that are missing. Install them with:" >&2
  echo "  sudo apt-get update && sudo apt-get install -y ${need[*]}" >&2
  exit 1
fi
echo "installing system packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
echo "apt-get update"
apt-get update -qq
echo "apt-get install ${need[*]}"
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "installed"
