#!/usr/bin/env bash
# Ingest benchmark (issue 2): the same closed-loop driver against the ceiling server (a
# bare axum handler answering 202) and against `hookgate serve` (durable ingest), for
# single events and batches, then a table with the ratio gateway/ceiling.
#
# Knobs (environment): DURATION (10s), WARMUP (2s), CONCURRENCY (64), EVENT_BYTES (1024),
# BATCH (100), TARGETS ("ceiling gateway"; "ceiling" alone skips building the gateway).
# Extra gateway settings pass through the environment (RUST_LOG, HOOKGATE_LOG_FORMAT...).

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONCURRENCY=${CONCURRENCY:-64}
EVENT_BYTES=${EVENT_BYTES:-1024}
BATCH=${BATCH:-100}
TARGETS=${TARGETS:-ceiling gateway}

packages=(hookgate-bench)
[[ " $TARGETS " == *" gateway "* ]] && packages+=(hookgate)
build_release "${packages[@]}"

declare -A EVENTS P50 P99 ERRORS

# measure SERVER URL KEY: single and batch ingest against one server.
measure() {
    local server=$1 url=$2 key=$3 mode
    for mode in single "batch-$BATCH"; do
        local batch_args=()
        [[ $mode == single ]] || batch_args=(--batch "$BATCH")
        run_driver ingest --url "$url" --tenant bench --key "$key" \
            --concurrency "$CONCURRENCY" --duration "$DURATION" --warmup "$WARMUP" \
            --event-bytes "$EVENT_BYTES" --label "$server-$mode" "${batch_args[@]}"
        EVENTS[$server,$mode]=$(field "$RESULT" events_per_sec)
        P50[$server,$mode]=$(field "$RESULT" p50_ms)
        P99[$server,$mode]=$(field "$RESULT" p99_ms)
        ERRORS[$server,$mode]=$(field "$RESULT" errors)
    done
}

# One server at a time, so neither competes with the other for the two cores.
if [[ " $TARGETS " == *" ceiling "* ]]; then
    port=$(free_port)
    start ceiling "$BENCH" ceiling-server --listen "127.0.0.1:$port"
    wait_ready "http://127.0.0.1:$port"
    measure ceiling "http://127.0.0.1:$port" unused
    stop ceiling
fi
if [[ " $TARGETS " == *" gateway "* ]]; then
    start_gateway
    key=$(create_tenant bench)
    measure gateway "$GW_URL" "$key"
    GATEWAY_RSS=$(peak_rss_mib gateway)
    stop gateway
fi

echo
echo "Ingest, $CONCURRENCY connections, ~$EVENT_BYTES B events, $DURATION per run ($(nproc) cores)"
printf '%-12s %-8s %12s %10s %10s %8s %14s\n' mode server events/s p50_ms p99_ms errors vs_ceiling
for mode in single "batch-$BATCH"; do
    for server in ceiling gateway; do
        [[ -n "${EVENTS[$server,$mode]:-}" ]] || continue
        ratio=-
        [[ $server == ceiling ]] || ratio=$(percent "${EVENTS[$server,$mode]}" "${EVENTS[ceiling,$mode]:-0}")
        printf '%-12s %-8s %12s %10s %10s %8s %14s\n' "$mode" "$server" \
            "${EVENTS[$server,$mode]}" "${P50[$server,$mode]}" "${P99[$server,$mode]}" \
            "${ERRORS[$server,$mode]}" "$ratio"
    done
done
[[ -z "${GATEWAY_RSS:-}" ]] || echo "gateway peak RSS over all its runs: $GATEWAY_RSS MiB"
echo "targets (issue 2): single-event gateway >= 25% of ceiling; batch gateway >= 100000 events/s"
