#!/usr/bin/env bash
# Plugin languages (issue 20): the same filter and transform in Rust, TypeScript and
# Python (the Python port is the filter only), on a 1 KiB event, through the release
# binary: component size, upload (compile) time, instantiate and call time (median of a
# `hookgate plugin run --repeat` loop, after the first call), and deliveries/s with each
# transform attached as a ratio of the same gateway without plugins (bench/run-delivery.sh,
# 1 webhook, alternating rounds).
#
# Knobs (environment): REPEAT (200), ROUNDS (2), DURATION (10s); SKIP_DELIVERY=1 skips the
# delivery runs.

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

REPEAT=${REPEAT:-200}
ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-10s}
# StarlingMonkey (TypeScript) and CPython (Python) put an interpreter in the component.
export HOOKGATE_PLUGIN_MAX_COMPONENT_BYTES=${HOOKGATE_PLUGIN_MAX_COMPONENT_BYTES:-33554432}

build_release hookgate
echo "== plugins: cargo (Rust), npm (TypeScript), componentize-py (Python)" >&2
(cd "$BENCH_ROOT/plugins" && cargo build --release --target wasm32-wasip2 -p field-filter -p erp-transform) >&2
(cd "$BENCH_ROOT/plugins/ts" && npm ci --no-audit --no-fund --silent && npm run build --silent) >&2
PY_FILTER="$WORK/py_field_filter.wasm"
python3 -c "import sys, componentize_py; sys.argv[0] = 'componentize-py'; componentize_py.script()" \
    -d "$BENCH_ROOT/wit" -w plugin componentize --stub-wasi -p "$BENCH_ROOT/plugins/py-field-filter" app \
    -o "$PY_FILTER" >&2

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
echo "upload: compile time of 'hookgate plugin check' (what an upload costs); instantiate and call:"
echo "medians over the loop (call includes instantiate); peak_mem: the sandbox's measure of the call."

[[ ${SKIP_DELIVERY:-} == 1 ]] && exit 0
for language in rust typescript; do
    case $language in
        rust) wasm="$RUST/erp_transform.wasm" ;;
        typescript) wasm="$TS/ts_erp_transform.wasm" ;;
    esac
    echo
    echo "== deliveries/s with the $language erp-transform attached" >&2
    TARGETS=gateway WEBHOOKS=1 ROUNDS=$ROUNDS DURATION=$DURATION PLUGIN=$language-erp-transform \
        PLUGIN_WASM="$wasm" "$BENCH_ROOT/bench/run-delivery.sh" | sed -n '/^With plugin/,$p' | sed "s/^/$language: /"
done
