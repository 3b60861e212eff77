#!/usr/bin/env bash
# PgBouncer in transaction pooling in front of PostgreSQL: many workers' client connections share a few
# server connections. Configured from the environment, then run in the foreground (or -d: as a daemon):
#
#   DB_HOST DB_PORT [5432]                the PostgreSQL server
#   DB_USER DB_PASSWORD                   the one role the workers log in as (its password goes in the
#                                         auth file: md5/scram are checked against it; trust checks none)
#   LISTEN_ADDR [0.0.0.0] LISTEN_PORT [6432]
#   AUTH_TYPE [scram-sha-256]             trust on loopback-only test servers
#   MAX_CLIENT_CONN [2000]                the workers' connections it accepts
#   POOL_SIZE [40]                        server connections per database and user: what it uses of
#                                         PostgreSQL's max_connections
#   QUERY_WAIT_TIMEOUT [600]              seconds a client may wait for a server connection (PgBouncer's
#                                         default, 120, ended workers at K = 256 on a loaded machine)
#   CONFIG_DIR [/tmp/pgbouncer]           where the configuration, pid and log files are written
#
# Used by docker/compose.yaml (the pgbouncer service) and by .ci/postgres.sh (on loopback, no container).
set -euo pipefail
: "${DB_HOST:?DB_HOST}" "${DB_USER:?DB_USER}" "${DB_PASSWORD:?DB_PASSWORD}"
dir=${CONFIG_DIR:-/tmp/pgbouncer}
mkdir -p "$dir"
cat > "$dir/pgbouncer.ini" <<INI
[databases]
* = host=$DB_HOST port=${DB_PORT:-5432}
[pgbouncer]
listen_addr = ${LISTEN_ADDR:-0.0.0.0}
listen_port = ${LISTEN_PORT:-6432}
unix_socket_dir =
auth_type = ${AUTH_TYPE:-scram-sha-256}
auth_file = $dir/userlist.txt
pool_mode = transaction
max_client_conn = ${MAX_CLIENT_CONN:-2000}
default_pool_size = ${POOL_SIZE:-40}
query_wait_timeout = ${QUERY_WAIT_TIMEOUT:-600}
; psycopg and SQLAlchemy send these at connect; options (a search_path) is not pooled, so not honoured
ignore_startup_parameters = extra_float_digits,options
pidfile = $dir/pgbouncer.pid
logfile = $dir/pgbouncer.log
INI
printf '"%s" "%s"\n' "$DB_USER" "$DB_PASSWORD" > "$dir/userlist.txt"
chmod 600 "$dir/userlist.txt"
exec pgbouncer "$@" "$dir/pgbouncer.ini"
