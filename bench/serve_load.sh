#!/usr/bin/env bash
# The serving load test (make serve-load): starts `dit serve` with the shipped Fashion-MNIST model on a free
# loopback port, runs bench/serve_load.c (8 clients x 10 requests, then the bad-request set), stops the server.
# usage: bench/serve_load.sh [BUILD_DIR] [extra serve_load flags]
set -euo pipefail
build=${1:-build}
shift || true
log=$(mktemp)
"$build/dit" serve -m models/dit-fmnist.safetensors --port 0 >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -f "$log"' EXIT
port=
for _ in $(seq 100); do
    port=$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$log" | grep -o '[0-9]*$' || true)
    [[ -n $port ]] && break
    sleep 0.1
done
[[ -n $port ]] || { echo "serve_load: the server did not start:"; cat "$log"; exit 1; }
echo "dit serve pid $pid on port $port; $(nproc) cores; load: $(cut -d' ' -f1-3 /proc/loadavg)"
status=0
"$build/serve_load" --port "$port" --pid "$pid" "$@" || status=$?
kill -TERM $pid
wait $pid || true
echo
echo "server log: $(grep -c ' /v1/images/generations ' "$log") generation requests logged; last lines:"
tail -3 "$log"
exit $status
