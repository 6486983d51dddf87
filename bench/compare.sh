#!/usr/bin/env bash
# Before/after comparison of one benchmark: runs SCRIPT (e.g. bench/run-delivery.sh) from two
# checkouts, alternating which goes first in each round, so both see the same machine.
# Timings on a shared 2-core machine drift by ±15% between minutes; compare the rounds'
# figures side by side, not one run against a figure measured another day.
#
# Usage: bench/compare.sh BEFORE_DIR AFTER_DIR SCRIPT [ROUNDS (2)]
#   BEFORE_DIR, AFTER_DIR: checkouts (e.g. `git worktree add /tmp/before <commit>`).
#   BEFORE_TARGET, AFTER_TARGET: their CARGO_TARGET_DIR (default: each one's target/).
# The script's knobs (WEBHOOKS, PLUGIN, DURATION...) pass through the environment.
# Output: each run's summary lines (RESULT and table rows), labelled before/after.

set -euo pipefail
before_dir=$(cd "$1" && pwd)
after_dir=$(cd "$2" && pwd)
script=$3
rounds=${4:-2}

run() {
    local label=$1 dir=$2 target=$3 log
    log=$(mktemp)
    echo "== $label: $dir ($script)" >&2
    if ! (cd "$dir" && CARGO_TARGET_DIR=${target:-$dir/target} "$dir/$script" >"$log" 2>"$log.err"); then
        echo "$label: $script failed; the end of its output:" >&2
        tail -n 20 "$log.err" >&2
        exit 1
    fi
    sed "s/^/$label  /" "$log"
    rm -f "$log" "$log.err"
}

for round in $(seq 1 "$rounds"); do
    echo "# round $round"
    if ((round % 2)); then
        run before "$before_dir" "${BEFORE_TARGET:-}"
        run after "$after_dir" "${AFTER_TARGET:-}"
    else
        run after "$after_dir" "${AFTER_TARGET:-}"
        run before "$before_dir" "${BEFORE_TARGET:-}"
    fi
done
