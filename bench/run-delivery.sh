#!/usr/bin/env bash
# Delivery benchmark (issue 3): the same driver against the forwarder ceiling (a bare
# axum handler that forwards each event with reqwest and stores nothing) and against
# `hookgate serve`, with 1 and 10 webhooks on one receiver that answers 200 at once.
# For each: peak deliveries/s (ingest as fast as accepted), then ingest-to-delivery latency
# at 50% of that peak and at a steady 500 events/s.
#
# Knobs (environment): DURATION (10s), WARMUP (2s), CONCURRENCY (64), EVENT_BYTES (1024),
# WEBHOOKS ("1 10"), STEADY_RATE (500), PEAK_DRAIN (20s: how long to wait for the backlog
# of a peak run), DRAIN (30s), TARGETS ("forwarder gateway"; "forwarder" alone skips
# building the gateway). Gateway settings pass through the environment (RUST_LOG...).
# PLUGIN (e.g. erp-transform; PLUGIN_CONFIG) also measures the gateway with that plugin
# attached; ROUNDS (3) repeats the peak runs with and without it, alternating which goes
# first, and reports each round's ratio and the median (the machine's noise moves a single
# ratio by +-15%). PLUGIN_WASM (a component file, e.g. plugins/ts/dist/ts_erp_transform.wasm,
# with PLUGIN naming it) attaches that file instead of building PLUGIN from plugins/.

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONCURRENCY=${CONCURRENCY:-64}
EVENT_BYTES=${EVENT_BYTES:-1024}
WEBHOOKS=${WEBHOOKS:-1 10}
STEADY_RATE=${STEADY_RATE:-500}
PEAK_DRAIN=${PEAK_DRAIN:-20s}
DRAIN=${DRAIN:-30s}
TARGETS=${TARGETS:-forwarder gateway}
PLUGIN=${PLUGIN:-}
if [[ $PLUGIN == *erp-transform ]]; then
    PLUGIN_CONFIG=${PLUGIN_CONFIG:-'{"event_types": {"{event_type}": "ERP_ORDER_NEW"}, "include_payload": true}'}
fi
PLUGIN_CONFIG=${PLUGIN_CONFIG:-null}
ROUNDS=${ROUNDS:-3}

packages=(hookgate-bench)
[[ " $TARGETS " == *" gateway "* ]] && packages+=(hookgate)
build_release "${packages[@]}"
PLUGIN_WASM=${PLUGIN_WASM:-}
if [[ -z $PLUGIN_WASM && -n $PLUGIN && " $TARGETS " == *" gateway "* ]]; then
    echo "== cargo build --release --target wasm32-wasip2 -p $PLUGIN (plugins/)" >&2
    (cd "$BENCH_ROOT/plugins" && cargo build --release --target wasm32-wasip2 -p "$PLUGIN")
    PLUGIN_WASM="$BENCH_ROOT/plugins/target/wasm32-wasip2/release/${PLUGIN//-/_}.wasm"
    [[ -f $PLUGIN_WASM ]] || { echo "no component at $PLUGIN_WASM" >&2; exit 1; }
fi

declare -A PEAK SUSTAINED PEAK_EVENTS HALF_RATE HALF_P50 HALF_P99 STEADY_P50 STEADY_P99 MISSING
# Per webhook count: "peak% sustained%" of each round, with/without the plugin.
declare -A ROUND_RATIOS

# percent_num A B: A as a percentage of B, one decimal, no sign.
percent_num() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b > 0 ? 100 * a / b : 0) }'; }

receiver_port=$(free_port)
RECEIVER="http://127.0.0.1:$receiver_port"
start receiver "$BENCH" receiver --listen "127.0.0.1:$receiver_port"
wait_ready "$RECEIVER"

# measure NAME TARGET N URL [DRIVER ARGS...]: peak, half-peak and steady runs for one
# setup; NAME keys the results (forwarder, gateway, plugin).
measure() {
    local name=$1 target=$2 webhooks=$3 url=$4
    shift 4
    local common=(delivery --target "$target" --url "$url" --receiver "$RECEIVER"
        --webhooks "$webhooks" --concurrency "$CONCURRENCY" --event-bytes "$EVENT_BYTES"
        --duration "$DURATION" --warmup "$WARMUP" "$@")
    local key="$name,$webhooks" missing=0
    target=$name

    run_driver "${common[@]}" --max --drain-timeout "$PEAK_DRAIN" --label "$target-${webhooks}wh-peak"
    PEAK[$key]=$(field "$RESULT" deliveries_per_sec)
    SUSTAINED[$key]=$(field "$RESULT" sustained_deliveries_per_sec)
    PEAK_EVENTS[$key]=$(field "$RESULT" events_per_sec)
    # Half of the peak, as events/s: each event makes $webhooks deliveries.
    HALF_RATE[$key]=$(awk -v d="${PEAK[$key]}" -v n="$webhooks" 'BEGIN { r = d / n / 2; printf "%.0f", (r < 1 ? 1 : r) }')

    run_driver "${common[@]}" --rate "${HALF_RATE[$key]}" --drain-timeout "$DRAIN" --label "$target-${webhooks}wh-half"
    HALF_P50[$key]=$(field "$RESULT" p50_ms)
    HALF_P99[$key]=$(field "$RESULT" p99_ms)
    missing=$((missing + $(field "$RESULT" missing)))

    run_driver "${common[@]}" --rate "$STEADY_RATE" --drain-timeout "$DRAIN" --label "$target-${webhooks}wh-steady"
    STEADY_P50[$key]=$(field "$RESULT" p50_ms)
    STEADY_P99[$key]=$(field "$RESULT" p99_ms)
    missing=$((missing + $(field "$RESULT" missing)))
    MISSING[$key]=$missing
}

# One server under load at a time; the receiver stays up throughout.
if [[ " $TARGETS " == *" forwarder "* ]]; then
    for webhooks in $WEBHOOKS; do
        port=$(free_port)
        start forwarder "$BENCH" forwarder --listen "127.0.0.1:$port" \
            --to "$RECEIVER/hook/forwarder" --fanout "$webhooks"
        wait_ready "http://127.0.0.1:$port"
        measure forwarder forwarder "$webhooks" "http://127.0.0.1:$port"
        stop forwarder
    done
fi
if [[ " $TARGETS " == *" gateway "* ]]; then
    start_gateway
    for webhooks in $WEBHOOKS; do
        # A fresh tenant per setup; the driver deletes its webhooks when it is done.
        tenant="bench-${webhooks}wh"
        key=$(create_tenant "$tenant")
        measure gateway gateway "$webhooks" "$GW_URL" --tenant "$tenant" --key "$key"
        if [[ -n $PLUGIN_WASM ]]; then
            tenant="bench-${webhooks}wh-plugin"
            key=$(create_tenant "$tenant")
            measure plugin gateway "$webhooks" "$GW_URL" --tenant "$tenant" --key "$key" \
                --plugin "$PLUGIN_WASM" --plugin-config "$PLUGIN_CONFIG"
            ROUND_RATIOS[$webhooks]="$(percent_num "${PEAK[plugin,$webhooks]}" "${PEAK[gateway,$webhooks]}") $(percent_num "${SUSTAINED[plugin,$webhooks]}" "${SUSTAINED[gateway,$webhooks]}")"
            for ((round = 2; round <= ROUNDS; round++)); do
                order=(gateway plugin)
                ((round % 2 == 0)) && order=(plugin gateway)
                declare -A round_peak=() round_sustained=()
                for name in "${order[@]}"; do
                    tenant="bench-${webhooks}wh-$name-r$round"
                    key=$(create_tenant "$tenant")
                    args=()
                    [[ $name == plugin ]] && args=(--plugin "$PLUGIN_WASM" --plugin-config "$PLUGIN_CONFIG")
                    run_driver delivery --target gateway --url "$GW_URL" --receiver "$RECEIVER" \
                        --webhooks "$webhooks" --concurrency "$CONCURRENCY" --event-bytes "$EVENT_BYTES" \
                        --duration "$DURATION" --warmup "$WARMUP" --tenant "$tenant" --key "$key" \
                        "${args[@]}" --max --drain-timeout "$PEAK_DRAIN" --label "$name-${webhooks}wh-peak-r$round"
                    round_peak[$name]=$(field "$RESULT" deliveries_per_sec)
                    round_sustained[$name]=$(field "$RESULT" sustained_deliveries_per_sec)
                done
                ROUND_RATIOS[$webhooks]+=" $(percent_num "${round_peak[plugin]}" "${round_peak[gateway]}") $(percent_num "${round_sustained[plugin]}" "${round_sustained[gateway]}")"
            done
        fi
    done
    GATEWAY_RSS=$(peak_rss_mib gateway)
    stop gateway
fi

echo
echo "Delivery, $CONCURRENCY connections, ~$EVENT_BYTES B events, $DURATION per run ($(nproc) cores)"
printf '%-10s %5s %10s %14s %9s %16s | %9s %8s %8s | %9s %9s | %7s\n' \
    target hooks peak_del/s sustained_del/s events/s "vs_fwd (sust.)" "half_ev/s" p50_ms p99_ms "${STEADY_RATE}/s_p50" p99_ms missing
for webhooks in $WEBHOOKS; do
    for target in forwarder gateway plugin; do
        key="$target,$webhooks"
        [[ -n "${PEAK[$key]:-}" ]] || continue
        ratio=-
        [[ $target == forwarder || -z "${PEAK[forwarder,$webhooks]:-}" ]] ||
            ratio="$(percent "${PEAK[$key]}" "${PEAK[forwarder,$webhooks]:-0}") ($(percent "${SUSTAINED[$key]}" "${SUSTAINED[forwarder,$webhooks]:-0}"))"
        printf '%-10s %5s %10s %14s %9s %16s | %9s %8s %8s | %9s %9s | %7s\n' \
            "$target" "$webhooks" "${PEAK[$key]}" "${SUSTAINED[$key]}" "${PEAK_EVENTS[$key]}" "$ratio" \
            "${HALF_RATE[$key]}" "${HALF_P50[$key]}" "${HALF_P99[$key]}" \
            "${STEADY_P50[$key]}" "${STEADY_P99[$key]}" "${MISSING[$key]}"
    done
done
echo "peak_del/s: deliveries/s at the receiver while ingesting as fast as accepted; sustained_del/s: deliveries"
echo "from the start of the peak run until its last event was delivered (drain included); latency is ingest-to-delivery;"
echo "missing: deliveries of the half-peak and steady runs that never arrived (peak runs are not drained fully)."
[[ -z "${GATEWAY_RSS:-}" ]] || echo "gateway peak RSS over all its runs: $GATEWAY_RSS MiB"
echo "targets (issue 3): gateway >= 40% of forwarder deliveries/s; p99 < 50 ms at half of peak; p99 < 5 ms at 500 events/s"
if [[ -n $PLUGIN_WASM ]]; then
    echo
    echo "With plugin $PLUGIN ($(stat -c %s "$PLUGIN_WASM") bytes, config $PLUGIN_CONFIG) vs without, same gateway:"
    for webhooks in $WEBHOOKS; do
        [[ -n "${PEAK[plugin,$webhooks]:-}" ]] || continue
        echo "  $webhooks webhook(s): peak ${PEAK[plugin,$webhooks]}/${PEAK[gateway,$webhooks]} deliveries/s = $(percent "${PEAK[plugin,$webhooks]}" "${PEAK[gateway,$webhooks]}"), sustained ${SUSTAINED[plugin,$webhooks]}/${SUSTAINED[gateway,$webhooks]} = $(percent "${SUSTAINED[plugin,$webhooks]}" "${SUSTAINED[gateway,$webhooks]}")"
        read -r -a ratios <<< "${ROUND_RATIOS[$webhooks]}"
        peaks=() sustained=()
        for ((i = 0; i < ${#ratios[@]}; i += 2)); do
            peaks+=("${ratios[i]}")
            sustained+=("${ratios[i + 1]}")
        done
        median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
        echo "  rounds (peak%/sustained%, alternating which runs first): $(for ((i = 0; i < ${#peaks[@]}; i++)); do printf '%s/%s ' "${peaks[i]}" "${sustained[i]}"; done)"
        echo "  median over ${#peaks[@]} rounds: peak $(median "${peaks[@]}")%, sustained $(median "${sustained[@]}")%"
    done
    echo "target (issue 5): with one transform plugin >= 80% of the deliveries/s without"
fi
