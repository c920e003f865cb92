#!/usr/bin/env bash
# As root, PostgreSQL must run as an unprivileged user: make sure one exists.
set -euo pipefail
[[ "$(id -u)" == 0 ]] || exit 0
u="${TENANTRY_PG_USER:-postgres}"
if ! id "$u" >/dev/null 2>&1; then
  echo "creating system user '$u' to run PostgreSQL (running as root)" >&2
  useradd --system --home-dir /var/lib/postgresql --shell /bin/bash "$u"
fi
