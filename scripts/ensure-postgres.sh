#!/usr/bin/env bash
# Makes sure PostgreSQL's server binaries are present. Prints the bin dir.
# On Debian/Ubuntu as root it installs the `postgresql` package when they are
# missing; elsewhere it says exactly what to install.
set -euo pipefail

find_bin() {
  if [[ -n "${TENANTRY_PG_BIN:-}" && -x "$TENANTRY_PG_BIN/pg_ctl" ]]; then echo "$TENANTRY_PG_BIN"; return 0; fi
  if command -v pg_ctl >/dev/null 2>&1 && [[ -x "$(dirname "$(command -v pg_ctl)")/initdb" ]]; then
    dirname "$(command -v pg_ctl)"; return 0
  fi
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4 -n -r); do
    if [[ -x "$d/pg_ctl" && -x "$d/initdb" && -x "$d/postgres" ]]; then echo "$d"; return 0; fi
  done
  return 1
}

if bin=$(find_bin); then echo "$bin"; exit 0; fi

if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
  echo "PostgreSQL server binaries not found; installing Debian package 'postgresql'..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
  if bin=$(find_bin); then echo "$bin"; exit 0; fi
fi

cat >&2 <<'MSG'
PostgreSQL server binaries (initdb, pg_ctl, postgres, pg_basebackup) were not found
on $PATH or in /usr/lib/postgresql/*/bin. Install them, then run this again:
  Debian/Ubuntu:  sudo apt-get install postgresql
  Fedora/RHEL:    sudo dnf install postgresql-server postgresql-contrib
  macOS:          brew install postgresql@15 && brew link postgresql@15
or set TENANTRY_PG_BIN to the directory that holds them.
MSG
exit 1
