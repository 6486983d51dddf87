#!/usr/bin/env bash
# Plugin languages (issue 20): the same filter and transform in Rust, TypeScript and
# Python, on a 1 KiB event, through the release
# binary: component size, upload (compile) time, instantiate and call time (median of a
# `hookgate plugin run --repeat` loop, after the first call), and deliveries/s with each
# transform attached as a ratio of the same gateway without plugins (1 webhook): at peak,
# and the highest fixed rate each keeps up with.
#
# Knobs (environment): REPEAT (200), DURATION (10s), RATES (the ladder); SKIP_DELIVERY=1
# skips the delivery runs.

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

REPEAT=${REPEAT:-200}
DURATION=${DURATION:-10s}
# StarlingMonkey (TypeScript) and CPython (Python) put an interpreter in the component.
export HOOKGATE_PLUGIN_MAX_COMPONENT_BYTES=${HOOKGATE_PLUGIN_MAX_COMPONENT_BYTES:-33554432}

build_release hookgate hookgate-bench
echo "== plugins: cargo (Rust), npm (TypeScript), componentize-py (Python)" >&2
(cd "$BENCH_ROOT/plugins" && cargo build --release --target wasm32-wasip2 -p field-filter -p erp-transform) >&2
(cd "$BENCH_ROOT/plugins/ts" && npm ci --no-audit --no-fund --silent && npm run build --silent) >&2
componentize_py() { # plugin-dir output
    python3 -c "import sys, componentize_py; sys.argv[0] = 'componentize-py'; componentize_py.script()" \
        -d "$BENCH_ROOT/wit" -w plugin componentize --stub-wasi -p "$BENCH_ROOT/plugins/$1" app -o "$2" >&2
}
PY_FILTER="$WORK/py_field_filter.wasm"
PY_TRANSFORM="$WORK/py_erp_transform.wasm"
componentize_py py-field-filter "$PY_FILTER"
componentize_py py-erp-transform "$PY_TRANSFORM"

RUST="$BENCH_ROOT/plugins/target/wasm32-wasip2/release"
TS="$BENCH_ROOT/plugins/ts/dist"
# A 1 KiB order event; the filter keeps it (total 250 >= 100).
EVENT="$WORK/event.json"
python3 - "$EVENT" <<'PY'
import json, sys
lines = [{"sku": f"SKU-{i:03}", "quantity": i % 5 + 1, "unit_price": 9.5 + i} for i in range(12)]
event = {"event_type": "order.created", "id": "so-1001",
         "payload": {"order_id": "SO-1001", "customer": {"id": "C-77"}, "currency": "EUR",
                     "total": 250.0, "lines": lines}}
text = json.dumps(event)
event["payload"]["note"] = "x" * max(0, 1024 - len(text) - 12)
json.dump(event, open(sys.argv[1], "w"))
PY
FILTER_CONFIG="$WORK/filter.json"
echo '[{"path": "/payload/total", "op": "gte", "value": 100}]' > "$FILTER_CONFIG"

row() { # language hook file [config]
    local language=$1 hook=$2 file=$3 config=${4:-}
    local compile run
    compile=$("$GATEWAY" plugin check "$file" | sed -n 's/.*compiled in \([0-9]*\) ms/\1/p')
    run=$("$GATEWAY" plugin run "$file" --hook "$hook" --event "$EVENT" --repeat "$REPEAT" ${config:+--config "$config"})
    python3 - "$language" "$hook" "$(stat -c %s "$file")" "$compile" "$run" <<'PY'
import json, sys
language, hook, size, compile_ms, run = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], json.loads(sys.argv[5])
calls = run["calls"]
print(f"{language:<11} {hook:<10} {size / 1048576:>8.2f} MiB {compile_ms:>8} ms {calls['median_instantiate_us']:>9} us "
      f"{calls['median_elapsed_us']:>9} us {run['peak_memory_bytes'] / 1048576:>8.1f} MiB  {'ok' if run['error'] is None else run['error']['code']}")
PY
}

echo
echo "Plugins on a 1 KiB event ($(stat -c %s "$EVENT") B), release build, $REPEAT calls each (2 cores)"
echo "language    hook            size     upload  instantiate      call    peak_mem  result"
row rust filter "$RUST/field_filter.wasm" "$FILTER_CONFIG"
row typescript filter "$TS/ts_field_filter.wasm" "$FILTER_CONFIG"
row python filter "$PY_FILTER" "$FILTER_CONFIG"
row rust transform "$RUST/erp_transform.wasm"
row typescript transform "$TS/ts_erp_transform.wasm"
row python transform "$PY_TRANSFORM"
echo "upload: compile time of 'hookgate plugin check' (what an upload costs); instantiate and call:"
echo "medians over the loop (call includes instantiate); peak_mem: the sandbox's measure of the call."

[[ ${SKIP_DELIVERY:-} == 1 ]] && exit 0

# Deliveries with each transform attached, 1 webhook, against the same gateway without
# plugins: the peak (ingest as fast as accepted; deliveries/s while ingesting), and the
# highest fixed rate the webhook keeps up with (every event delivered within the drain
# wait, p99 ingest-to-delivery under 1 s), from a ladder of rates.
receiver_port=$(free_port)
RECEIVER="http://127.0.0.1:$receiver_port"
start receiver "$BENCH" receiver --listen "127.0.0.1:$receiver_port"
wait_ready "$RECEIVER"
start_gateway
drive() { # label [plugin-file] -- driver args...
    local label=$1 wasm=$2 tenant key args=()
    shift 2
    tenant="langs-$label"
    key=$(create_tenant "$tenant")
    [[ -n $wasm ]] && args=(--plugin "$wasm" --plugin-config "$TRANSFORM_CONFIG")
    run_driver delivery --target gateway --url "$GW_URL" --receiver "$RECEIVER" --webhooks 1 \
        --concurrency 64 --event-bytes 1024 --duration "$DURATION" --warmup 2s \
        --tenant "$tenant" --key "$key" "${args[@]}" --label "$label" "$@"
}
TRANSFORM_CONFIG='{"event_types": {"{event_type}": "ERP_ORDER_NEW"}, "include_payload": true}'
RATES=${RATES:-250 500 750 1000 1500 2000 3000 4000 6000 8000 12000}
keeps_up() { # label [plugin-file]: the highest rate of RATES kept up with
    local label=$1 wasm=$2 rate best=0
    for rate in $RATES; do
        drive "$label-$rate" "$wasm" --rate "$rate" --drain-timeout 10s
        if [[ $(field "$RESULT" missing) != 0 ]] || awk -v p="$(field "$RESULT" p99_ms)" 'BEGIN { exit !(p >= 1000) }'; then
            break
        fi
        best=$rate
    done
    echo "$best"
}
declare -A PEAK_OF KEEPS_UP
drive none-peak "" --max --drain-timeout 60s
PEAK_OF[none]=$(field "$RESULT" deliveries_per_sec)
SUSTAINED_NONE=$(field "$RESULT" sustained_deliveries_per_sec)
KEEPS_UP[none]=$(keeps_up none "")
for language in rust typescript python; do
    case $language in
        rust) wasm="$RUST/erp_transform.wasm" ;;
        typescript) wasm="$TS/ts_erp_transform.wasm" ;;
        python) wasm="$PY_TRANSFORM" ;;
    esac
    drive "$language-peak" "$wasm" --max --drain-timeout 5s
    PEAK_OF[$language]=$(field "$RESULT" deliveries_per_sec)
    KEEPS_UP[$language]=$(keeps_up "$language" "$wasm")
done
stop gateway

echo
echo "Deliveries with the erp-transform attached, 1 webhook, 1 KiB events, $DURATION runs ($(nproc) cores)"
echo "without plugins: peak ${PEAK_OF[none]} del/s while ingesting, sustained $SUSTAINED_NONE del/s"
printf '%-11s %12s %9s %16s %9s\n' transform peak_del/s "vs none" keeps_up_ev/s "vs none"
for language in none rust typescript python; do
    printf '%-11s %12s %9s %16s %9s\n' "$language" "${PEAK_OF[$language]}" \
        "$(percent "${PEAK_OF[$language]}" "${PEAK_OF[none]}")" "${KEEPS_UP[$language]}" \
        "$(percent "${KEEPS_UP[$language]}" "${KEEPS_UP[none]}")"
done
echo "peak: deliveries/s while ingesting as fast as accepted; keeps_up: the highest rate of"
echo "($RATES) with every event delivered and p99 ingest-to-delivery under 1 s."
