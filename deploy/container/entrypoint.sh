#!/bin/sh
# The image's entry point. One image serves every role; the first argument picks it (default: $SERVICE):
#   ingest | jobs | serving | writeback | monitor   a service on 0.0.0.0:$PORT (/healthz, /readyz, /metrics)
#   migrate [SERVICE...]                            every service's Alembic migrations, once, then exit
#   topics                                          create every topic and its .dlq twin (idempotent), then exit
#   workspace | mcp | sinks                         a local stand-in on 0.0.0.0:$PORT (compose profile "standins")
#   anything else                                   run as a command (python -m apev_runtime dlq list ...)
set -eu
role="${1:-${SERVICE:-ingest}}"
[ "$#" -gt 0 ] && shift
port="${PORT:-8080}"
case "$role" in
  ingest|jobs|serving|writeback|monitor)
    prefix=$(printf '%s' "$role" | tr '[:lower:]' '[:upper:]')
    # A service reads <SERVICE>_HTTP_HOST/_HTTP_PORT/_DATA_DIR; the container's defaults, unless already set.
    eval "export ${prefix}_HTTP_HOST=\"\${${prefix}_HTTP_HOST:-0.0.0.0}\""
    eval "export ${prefix}_HTTP_PORT=\"\${${prefix}_HTTP_PORT:-$port}\""
    eval "export ${prefix}_DATA_DIR=\"\${${prefix}_DATA_DIR:-/app/data}\""
    eval "export ${prefix}_LOG_FORMAT=\"\${${prefix}_LOG_FORMAT:-json}\""
    exec python -m "apev_$role" "$@" ;;
  migrate) exec python -m apev_stack migrate "$@" ;;
  topics) exec python -m apev_stack kafka topics "$@" ;;
  workspace) exec python -m apev_workspace --host 0.0.0.0 --port "$port" --data-dir /app/data/workspace "$@" ;;
  mcp) exec python -m apev_mcpsim --host 0.0.0.0 --port "$port" "$@" ;;
  sinks) exec python -m apev_sinks --host 0.0.0.0 --port "$port" "$@" ;;
  *) exec "$role" "$@" ;;
esac
