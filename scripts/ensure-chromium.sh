#!/usr/bin/env bash
# Makes sure a headless-capable Chromium is present for the dashboard's
# browser tests (platform/dashboard_test.go). Prints its path. On
# Debian/Ubuntu as root it installs the distribution's `chromium` package
# when it is missing; elsewhere it says exactly what to install.
set -euo pipefail

find_bin() {
  if [[ -n "${CHROMIUM:-}" && -x "$CHROMIUM" ]]; then echo "$CHROMIUM"; return 0; fi
  local n
  for n in chromium chromium-browser google-chrome; do
    if command -v "$n" >/dev/null 2>&1; then command -v "$n"; return 0; fi
  done
  return 1
}

if bin=$(find_bin); then echo "$bin"; exit 0; fi

if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
  echo "Chromium not found; installing Debian package 'chromium'..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq chromium >&2
  if bin=$(find_bin); then echo "$bin"; exit 0; fi
fi

cat >&2 <<'MSG'
Chromium (for the dashboard's browser tests) was not found on $PATH as
chromium, chromium-browser or google-chrome. Install it, then run this again:
  Debian:         sudo apt-get install chromium
  Ubuntu:         sudo apt-get install chromium-browser (or: sudo snap install chromium)
  Fedora/RHEL:    sudo dnf install chromium
  macOS:          brew install --cask chromium
or set CHROMIUM to the browser's executable.
MSG
exit 1
