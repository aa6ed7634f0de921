#!/usr/bin/env bash
# Makes sure the system programs the test suite drives for real are present: PostgreSQL server
# binaries, redis-server, Chromium + ChromeDriver (pages), Node.js + npm (third-party MCP servers),
# openssl, Prometheus + promtool (the dashboard and alert tests). As root, installs what is missing
# with apt-get; otherwise says what to install.
set -euo pipefail

missing=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
command -v npm >/dev/null || missing+=(nodejs npm)
command -v openssl >/dev/null || missing+=(openssl)
{ command -v prometheus >/dev/null && command -v promtool >/dev/null; } || missing+=(prometheus)
if [ "${1:-}" = "--bench" ]; then command -v wrk >/dev/null || missing+=(wrk); fi

[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian's postgresql and prometheus packages start their services; the tests run their own
  # (only the binaries are needed), so stop them.
  if command -v service >/dev/null; then
    for unit in postgresql prometheus; do service "$unit" stop >/dev/null 2>&1 || true; done
  fi
else
  echo "missing system packages: ${missing[*]}" >&2
  echo "install them with: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
