#!/usr/bin/env bash
# Start a throwaway PostgreSQL server on loopback for the scale-out tests, as the non-root user
# `postgres`, with PgBouncer in front of it (transaction pooling, as docker/compose.yaml runs it), and
# print the URLs to use. Installs Debian's server and pooler first where they are missing.
#   eval "$(bash .ci/postgres.sh)"   # exports THINKER_TEST_POSTGRES and THINKER_TEST_PGBOUNCER
#   bash .ci/postgres.sh --stop
set -euo pipefail
PORT=${PGPORT_TEST:-55432}
DATA=${PGDATA_TEST:-/tmp/thinker-pg}
PASSWORD=${PGPASSWORD_TEST:-thinker-test}
POOLER_PORT=${PGBOUNCER_PORT_TEST:-56432}

bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$bin" ] || ! command -v pgbouncer > /dev/null; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql pgbouncer; } >&2
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
fi
systemctl disable --now pgbouncer > /dev/null 2>&1 || true  # Debian's own instance, if its package started one
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

stop_pooler() { [ -f "$DATA-pgbouncer/pgbouncer.pid" ] && kill "$(cat "$DATA-pgbouncer/pgbouncer.pid")" 2>/dev/null || true
  rm -rf "$DATA-pgbouncer"; }
if [ "${1:-}" = "--stop" ]; then
  stop_pooler
  as_postgres "$bin/pg_ctl" -D "$DATA" -m fast stop
  exit
fi
stop_pooler

if [ -f "$DATA/postmaster.pid" ]; then as_postgres "$bin/pg_ctl" -D "$DATA" -m fast stop >&2 || true; fi
rm -rf "$DATA"
mkdir -p "$DATA"
[ "$(id -u)" = 0 ] && chown postgres: "$DATA"
as_postgres "$bin/initdb" -D "$DATA" -U postgres --auth=trust >/dev/null
as_postgres "$bin/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w \
  -o "-p $PORT -k /tmp -c listen_addresses=127.0.0.1" start >&2
as_postgres "$bin/psql" -h 127.0.0.1 -p "$PORT" -U postgres -q -v ON_ERROR_STOP=1 <<SQL >&2
CREATE ROLE thinker LOGIN CREATEDB PASSWORD '$PASSWORD';  -- CREATEDB: the load benchmark's fresh databases
CREATE DATABASE thinker_test OWNER thinker;
SQL

# PgBouncer on loopback (transaction pooling, as docker/compose.yaml runs it), as the user postgres.
mkdir -p "$DATA-pgbouncer" && { [ "$(id -u)" != 0 ] || chown postgres: "$DATA-pgbouncer"; }
as_postgres env DB_HOST=127.0.0.1 DB_PORT="$PORT" DB_USER=thinker DB_PASSWORD="$PASSWORD" AUTH_TYPE=trust \
  LISTEN_ADDR=127.0.0.1 LISTEN_PORT="$POOLER_PORT" CONFIG_DIR="$DATA-pgbouncer" POOL_SIZE="${PGBOUNCER_POOL_SIZE_TEST:-40}" \
  bash -s -- -d -q < "$(dirname "$0")/../docker/pgbouncer.sh" >&2  # read here: the checkout may be closed to postgres
echo "export THINKER_TEST_POSTGRES=postgresql://thinker:$PASSWORD@127.0.0.1:$PORT/thinker_test"
echo "export THINKER_TEST_PGBOUNCER=postgresql://thinker:$PASSWORD@127.0.0.1:$POOLER_PORT/thinker_test"
