#!/usr/bin/env bash
# 10,000 webhooks on a cluster (issue 17): one gateway node (NODES=2: two) on a 3-server
# NATS JetStream cluster on loopback; 400 tenants × 25 webhooks are created through the
# API, one event is posted per tenant, and the run ends when every webhook has its
# delivery. Prints the phases' times and JetStream's stream and consumer counts (the
# backend uses a fixed set of assets, never one per webhook).
#
# Knobs (environment): TENANTS (400), PER_TENANT (25), NODES (1), TIMEOUT (600s).

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TENANTS=${TENANTS:-400}
PER_TENANT=${PER_TENANT:-25}
NODES=${NODES:-1}
TIMEOUT=${TIMEOUT:-600s}

find_nats_server
build_release hookgate-bench hookgate

receiver_port=$(free_port)
RECEIVER="http://127.0.0.1:$receiver_port"
start receiver "$BENCH" receiver --listen "127.0.0.1:$receiver_port"
wait_ready "$RECEIVER"
start_nats_cluster
for ((node = 1; node <= NODES; node++)); do
    start_node "$node"
    if [[ $node == 1 ]]; then GW_URL=$NODE_URL; fi
done
sleep 6 # the nodes split the shards
run_driver many-webhooks --url "$GW_URL" --admin-token "$ADMIN_TOKEN" --receiver "$RECEIVER" \
    --tenants "$TENANTS" --per-tenant "$PER_TENANT" --timeout "$TIMEOUT" --nats-monitor "$NATS_MONITOR"
for ((node = 1; node <= NODES; node++)); do
    echo "node$node peak RSS: $(peak_rss_mib "node$node") MiB"
done
