#!/usr/bin/env bash
# Install the system packages the suite needs when they are absent (Debian/Ubuntu, apt-get).
# Usage: scripts/ensure-system-packages.sh postgres|chromium
set -euo pipefail

need_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "need root to run: $*" >&2; exit 1; fi
}

apt_install() {
  need_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive need_root apt-get install -y -qq "$@" >/dev/null
}

case "${1:-}" in
  postgres)
    if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null; then
      exit 0
    fi
    echo "installing PostgreSQL (apt-get install -y postgresql)" >&2
    apt_install postgresql
    ;;
  chromium)
    if command -v chromium >/dev/null || [ -x /usr/bin/chromium ]; then exit 0; fi
    echo "installing Chromium for the browser tests (apt-get install -y chromium)" >&2
    apt_install chromium
    ;;
  *) echo "usage: $0 postgres|chromium" >&2; exit 2 ;;
esac
