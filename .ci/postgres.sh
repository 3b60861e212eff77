#!/usr/bin/env bash
# Start a throwaway PostgreSQL server on loopback for the scale-out tests, as the non-root user
# `postgres`, and print the URL to use. Installs Debian's server first where it is missing.
#   eval "$(bash .ci/postgres.sh)"   # exports THINKER_TEST_POSTGRES
#   bash .ci/postgres.sh --stop
set -euo pipefail
PORT=${PGPORT_TEST:-55432}
DATA=${PGDATA_TEST:-/tmp/thinker-pg}
PASSWORD=${PGPASSWORD_TEST:-thinker-test}

bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$bin" ]; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; } >&2
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
fi
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

if [ "${1:-}" = "--stop" ]; then
  as_postgres "$bin/pg_ctl" -D "$DATA" -m fast stop
  exit
fi

if [ -f "$DATA/postmaster.pid" ]; then as_postgres "$bin/pg_ctl" -D "$DATA" -m fast stop >&2 || true; fi
rm -rf "$DATA"
mkdir -p "$DATA"
[ "$(id -u)" = 0 ] && chown postgres: "$DATA"
as_postgres "$bin/initdb" -D "$DATA" -U postgres --auth=trust >/dev/null
as_postgres "$bin/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w \
  -o "-p $PORT -k /tmp -c listen_addresses=127.0.0.1" start >&2
as_postgres "$bin/psql" -h 127.0.0.1 -p "$PORT" -U postgres -q -v ON_ERROR_STOP=1 <<SQL >&2
CREATE ROLE thinker LOGIN PASSWORD '$PASSWORD';
CREATE DATABASE thinker_test OWNER thinker;
SQL
echo "export THINKER_TEST_POSTGRES=postgresql://thinker:$PASSWORD@127.0.0.1:$PORT/thinker_test"
