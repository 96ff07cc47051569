#!/usr/bin/env bash
# Start a throwaway PostgreSQL server on loopback for the sweep tests; print its URL on stdout.
#   export LORAQA_TEST_POSTGRES_URL="$(bash scripts/ci-postgres.sh)"
# Installs Debian's `postgresql` package when the server binaries are missing (needs root/apt).
# The cluster lives under ${LORAQA_PG_DIR:-/tmp/loraqa-ci-postgres}; a second call reuses it.
set -euo pipefail
say() { echo "ci-postgres: $*" >&2; }
fail() { echo "ci-postgres: error: $*" >&2; exit 1; }

root="${LORAQA_PG_DIR:-/tmp/loraqa-ci-postgres}"
bindir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)"
if [ -z "$bindir" ] || [ ! -x "$bindir/postgres" ] || [ ! -x "$bindir/initdb" ]; then
    command -v apt-get >/dev/null || fail "PostgreSQL server binaries are missing and there is no apt-get to install them"
    say "installing Debian's postgresql package"
    apt-get update -qq >&2 || fail "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2 || fail "apt-get install postgresql failed"
    bindir="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
fi
[ -x "$bindir/postgres" ] || fail "no postgres server binary under /usr/lib/postgresql/*/bin"

# The server refuses to run as root: run it as the `postgres` user when we are root.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
id postgres >/dev/null 2>&1 || [ "$(id -u)" != 0 ] || useradd --system --no-create-home postgres

mkdir -p "$root"
[ "$(id -u)" = 0 ] && chown postgres "$root"
data="$root/data"
if [ -f "$root/url" ] && as_pg "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    say "reusing the running server"; cat "$root/url"; exit 0
fi
# Not running: a cluster left by an earlier run (its role and database already made) is replaced,
# so the CREATE statements below always meet a fresh cluster.
rm -rf "$data" "$root/url"
as_pg "$bindir/initdb" -D "$data" -U postgres --auth=trust -E UTF8 >&2 || fail "initdb failed"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
as_pg "$bindir/pg_ctl" -D "$data" -l "$root/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$root" start >&2 \
    || { cat "$root/server.log" >&2 || true; fail "the server did not start (log above)"; }
psql=("$bindir/psql" -h 127.0.0.1 -p "$port" -U postgres -v ON_ERROR_STOP=1 -q)
"${psql[@]}" -d postgres -c "CREATE ROLE loraqa LOGIN" >&2 || fail "cannot create role loraqa"
"${psql[@]}" -d postgres -c "CREATE DATABASE loraqa_sweeps OWNER loraqa" >&2 || fail "cannot create database"
url="postgresql://loraqa@127.0.0.1:$port/loraqa_sweeps"
echo "$url" > "$root/url"
say "server up: $url (stop: pg_ctl -D $data stop)"
echo "$url"
