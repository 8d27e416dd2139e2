#!/usr/bin/env bash
# Make sure a PostgreSQL server answers on 127.0.0.1 for the test suite, installing Debian's package if absent.
# Reuses a server that already runs. Creates the login role the tests use (apev/apev, CREATEDB).
# Prints the admin URL the test suite reads: APEV_TEST_PG_URL=postgresql://apev:apev@127.0.0.1:<port>/postgres
set -euo pipefail

PGPORT="${APEV_PG_PORT:-5432}"
ROLE=apev
PASS=apev

say() { echo "postgres: $*" >&2; }

answering() { pg_isready -q -h 127.0.0.1 -p "$PGPORT" 2>/dev/null; }

as_postgres() {
  if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$*"; else sudo -u postgres sh -c "$*"; fi
}

if [ -n "${APEV_TEST_PG_URL:-}" ]; then
  say "APEV_TEST_PG_URL is set; using it and starting nothing"
  echo "APEV_TEST_PG_URL=$APEV_TEST_PG_URL"
  exit 0
fi

if ! answering; then
  if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    say "server not installed; installing Debian's postgresql (apt-get) ..."
    export DEBIAN_FRONTEND=noninteractive
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq >/dev/null
    $SUDO apt-get install -y -qq postgresql >/dev/null
  fi
  ver=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
  if ! pg_lsclusters -h 2>/dev/null | awk '{print $1" "$2}' | grep -q "^$ver main$"; then
    say "creating cluster $ver/main on port $PGPORT"
    as_postgres "pg_createcluster -p $PGPORT $ver main" >/dev/null
  fi
  say "starting cluster $ver/main"
  # pg_ctlcluster works without systemd (containers, CI); a stale pid file from a killed run is handled by it.
  if [ "$(id -u)" = 0 ]; then pg_ctlcluster "$ver" main start || true; else sudo pg_ctlcluster "$ver" main start || true; fi
  for _ in $(seq 1 60); do answering && break; sleep 0.5; done
  answering || { say "server did not answer on 127.0.0.1:$PGPORT"; pg_lsclusters >&2 || true; exit 1; }
fi

as_postgres "psql -p $PGPORT -qtAc \"SELECT 1 FROM pg_roles WHERE rolname='$ROLE'\"" | grep -q 1 \
  || as_postgres "psql -p $PGPORT -qc \"CREATE ROLE $ROLE LOGIN CREATEDB PASSWORD '$PASS'\"" >/dev/null
say "ready on 127.0.0.1:$PGPORT"
echo "APEV_TEST_PG_URL=postgresql://$ROLE:$PASS@127.0.0.1:$PGPORT/postgres"
