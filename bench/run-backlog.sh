#!/usr/bin/env bash
# Backlog memory benchmark (issue 3's last target): a backlog of COUNT pending deliveries
# must not grow `hookgate serve` beyond 300 MiB RSS. One webhook pointing at the receiver
# is created and stopped; COUNT events are ingested in batches; the gateway's VmRSS is
# sampled (every SAMPLE_INTERVAL) during ingest, while the backlog sits pending, and while
# it drains after `start`, until the receiver has counted every event. Prints ingest and
# drain rates, peak RSS per phase, and whether every event arrived.
#
# Knobs (environment): COUNT (1000000), EVENT_BYTES (1024), BATCH (100), CONCURRENCY (16),
# PENDING (10s: sampling with the backlog pending), DRAIN_TIMEOUT (30m), SAMPLE_INTERVAL
# (200ms), MAX_IN_FLIGHT (gateway default), SAMPLES_CSV (a path: keep every RSS sample).
# Gateway settings pass through the environment (RUST_LOG, HOOKGATE_*...).

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

COUNT=${COUNT:-1000000}
EVENT_BYTES=${EVENT_BYTES:-1024}
BATCH=${BATCH:-100}
CONCURRENCY=${CONCURRENCY:-16}
PENDING=${PENDING:-10s}
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-30m}
SAMPLE_INTERVAL=${SAMPLE_INTERVAL:-200ms}
MAX_IN_FLIGHT=${MAX_IN_FLIGHT:-}
SAMPLES_CSV=${SAMPLES_CSV:-}

build_release hookgate-bench hookgate

# pid_of NAME: the process id of a process started with `start`.
pid_of() {
    local i
    for i in "${!NAMES[@]}"; do
        [[ "${NAMES[$i]}" == "$1" ]] && echo "${PIDS[$i]}"
    done
    return 0
}

receiver_port=$(free_port)
RECEIVER="http://127.0.0.1:$receiver_port"
start receiver "$BENCH" receiver --listen "127.0.0.1:$receiver_port"
wait_ready "$RECEIVER"

start_gateway
key=$(create_tenant bench)
extra=()
[[ -z "$MAX_IN_FLIGHT" ]] || extra+=(--max-in-flight "$MAX_IN_FLIGHT")
[[ -z "$SAMPLES_CSV" ]] || extra+=(--samples-csv "$SAMPLES_CSV")
run_driver backlog --url "$GW_URL" --tenant bench --key "$key" --receiver "$RECEIVER" \
    --pid "$(pid_of gateway)" --data-dir "$WORK/gateway-data" \
    --count "$COUNT" --event-bytes "$EVENT_BYTES" --batch "$BATCH" \
    --concurrency "$CONCURRENCY" --pending "$PENDING" --drain-timeout "$DRAIN_TIMEOUT" \
    --sample-interval "$SAMPLE_INTERVAL" "${extra[@]}"
RECEIVER_RSS=$(peak_rss_mib receiver)
stop gateway

echo
echo "Backlog of $(field "$RESULT" events) events (~$EVENT_BYTES B), 1 webhook ($(nproc) cores)"
printf '%-40s %s\n' \
    "ingest" "$(field "$RESULT" ingest_s) s, $(field "$RESULT" ingest_events_per_sec) events/s, errors $(field "$RESULT" ingest_errors)" \
    "webhook lag (/metrics) stopped/started" "$(field "$RESULT" lag_stopped) / $(field "$RESULT" lag_started)" \
    "gateway RSS baseline (peak)" "$(field "$RESULT" rss_baseline_peak_mib) MiB" \
    "gateway RSS peak during ingest" "$(field "$RESULT" rss_ingest_peak_mib) MiB" \
    "gateway RSS peak, backlog pending" "$(field "$RESULT" rss_pending_peak_mib) MiB" \
    "gateway RSS peak while draining" "$(field "$RESULT" rss_drain_peak_mib) MiB" \
    "gateway RSS after the drain" "$(field "$RESULT" rss_after_peak_mib) MiB" \
    "gateway VmHWM (whole run)" "$(field "$RESULT" vm_hwm_mib) MiB" \
    "drain" "$(field "$RESULT" drain_s) s, $(field "$RESULT" deliveries_per_sec) deliveries/s" \
    "delivered" "$(field "$RESULT" delivered) (missing $(field "$RESULT" missing), duplicates $(field "$RESULT" duplicates))" \
    "receiver peak RSS (not the gateway)" "$RECEIVER_RSS MiB"
echo "target (issue 3): a backlog of 1,000,000 pending deliveries keeps the gateway under 300 MiB RSS"
