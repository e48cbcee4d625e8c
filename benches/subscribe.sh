#!/usr/bin/env bash
# Opt-in throughput: wrk POSTs /subscribe (a new address each time) against a release build
# on SQLite and, when PG_URL answers, on PostgreSQL. Each request stores a profile, a
# consent record and the confirmation's delivery; the worker of the same process writes the
# confirmation email to the outbox folder (the script waits for the queue to drain and
# counts them). BIN=path compares another build (nothing is built then). MAIL=smtp sends the
# confirmations to Postfix's smtp-sink instead (what production does; the outbox folder makes
# the run partly a benchmark of the file system's directory locks) and counts what it took.
#   bash benches/subscribe.sh            (DURATION=10s CONNECTIONS=32 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
PG_URL=${PG_URL:-postgres://postgres:postgres@127.0.0.1:5432/postgres}
PORT=${PORT:-18080}
BIN=${BIN:-}
MAIL=${MAIL:-outbox}
SINK_PORT=${SINK_PORT:-12525}
if [ -z "$BIN" ]; then cargo build --release -q; BIN=./target/release/rapport; fi
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

run() { # run LABEL DATABASE_URL
  local mail=(RAPPORT_OUTBOX_DIR="$work/outbox-$1") sink=
  if [ "$MAIL" = smtp ]; then
    /usr/sbin/smtp-sink -u nobody -c "127.0.0.1:$SINK_PORT" 1024 >"$work/sink-$1" 2>&1 &
    sink=$!
    mail=(RAPPORT_SMTP_URL="smtp://127.0.0.1:$SINK_PORT" RAPPORT_SMTP_POOL=8)
  fi
  env RAPPORT_SUBSCRIBE_LIMIT=off "${mail[@]}" RAPPORT_LOG=warn \
    "$BIN" --database-url "$2" serve --bind "127.0.0.1:$PORT" &
  local pid=$!
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
  echo "== $1 ($MAIL): wrk -t2 -c$CONNECTIONS -d$DURATION --latency (POST /subscribe)"
  wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency -s benches/subscribe.lua "http://127.0.0.1:$PORT" \
    | grep -E "Requests/sec|Latency|99%|Non-2xx|requests in"
  # The queue drains: wait until no email was taken for a second.
  local n=-1 m
  for _ in $(seq 1 60); do
    if [ -n "$sink" ]; then m=$(tr '\r' '\n' <"$work/sink-$1" | sed -n 's/.*mesg=\([0-9]*\).*/\1/p' | tail -1); m=${m:-0}
    else m=$(ls "$work/outbox-$1" | wc -l); fi
    [ "$m" = "$n" ] && break; n=$m; sleep 1
  done
  echo "   confirmation emails taken: $m"
  # serve's CPU (user + system, start-up included) per sign-up and its email.
  local ticks hz
  ticks=$(awk '{print $14 + $15}' "/proc/$pid/stat"); hz=$(getconf CLK_TCK)
  [ "$m" -gt 0 ] && echo "   serve CPU per sign-up: $(( ticks * 1000000 / hz / m )) µs"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  if [ -n "$sink" ]; then kill "$sink"; wait "$sink" 2>/dev/null || true; fi
}

run sqlite "sqlite://$work/bench.db"
if psql "$PG_URL" -qAtc "SELECT 1" >/dev/null 2>&1; then
  db="rapport_bench_$$"
  psql "$PG_URL" -qc "CREATE DATABASE $db"
  run postgres "${PG_URL%/*}/$db"
  psql "$PG_URL" -qc "DROP DATABASE $db WITH (FORCE)"
fi
