#!/usr/bin/env bash
# Export benchmark (issue 6): events/s that an s3 webhook exports to a local S3-compatible
# server (moto_server, from PyPI: python3 -m pip install 'moto[server]==5.*').
#
# Two figures, both for ~EVENT_BYTES events:
# - export alone: the webhook is stopped, events are ingested (batches of BATCH), the
#   webhook is started, and the time from start until its cursor has caught up (the lag
#   gauge of /metrics is 0, so every file holding the events is uploaded) gives events/s.
#   Ingest is much slower than export on this machine, so this is the export path's own
#   speed.
# - alongside ingest: the webhook runs while ingest goes as fast as accepted; after ingest
#   stops, how long the export takes to catch up (about one flush interval means it kept up).
# Every exported file is then read back and its lines counted: missing or duplicate
# events are reported.
#
# Knobs (environment): DURATION (10s of ingest per phase), WARMUP (1s), CONCURRENCY (64),
# EVENT_BYTES (1024), BATCH (100), MAX_FILE_BYTES (52428800, the contract's default),
# FLUSH_INTERVAL (PT1S: the contract's PT5M would only delay the last file).
# Needs bash, coreutils, curl, cargo, python3 with moto[server] (which brings boto3).

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-1s}
CONCURRENCY=${CONCURRENCY:-64}
EVENT_BYTES=${EVENT_BYTES:-1024}
BATCH=${BATCH:-100}
MAX_FILE_BYTES=${MAX_FILE_BYTES:-52428800}
FLUSH_INTERVAL=${FLUSH_INTERVAL:-PT1S}
BUCKET=bench-exports
ACCESS_KEY=bench
SECRET_KEY=bench-secret-access-key

python3 -c 'import moto.server, boto3' 2>/dev/null || {
    echo "moto_server is missing: python3 -m pip install 'moto[server]==5.*'" >&2
    exit 1
}

build_release hookgate-bench hookgate

moto_port=$(free_port)
MOTO="http://127.0.0.1:$moto_port"
start moto python3 -m moto.server -H 127.0.0.1 -p "$moto_port"
for _ in $(seq 1 300); do
    curl -fs -o /dev/null "$MOTO/" && break
    sleep 0.1
done
curl -fs -o /dev/null -X PUT "$MOTO/$BUCKET"

start_gateway
TENANT=bench-export
KEY=$(create_tenant "$TENANT")

# api METHOD PATH [BODY]: a tenant API call; fails on a non-2xx answer.
api() {
    curl -fsS -X "$1" -H "Authorization: Bearer $KEY" -H 'content-type: application/json' \
        "$GW_URL/$TENANT/v1$2" ${3:+--data "$3"}
}

# lag WEBHOOK: the webhook's lag gauge (events behind the log head), empty if not yet set
# or if /metrics did not answer (the next poll tries again).
lag() {
    local metrics
    metrics=$(curl -fsS "$GW_URL/metrics") || {
        echo "warning: /metrics did not answer" >&2
        return 0
    }
    sed -n "s/^hookgate_webhook_lag_events{tenant=\"$TENANT\",webhook=\"$1\"} \([0-9]*\)$/\1/p" <<<"$metrics"
}

now_ms() { date +%s%3N; }

# wait_caught_up WEBHOOK: waits until the lag gauge has been above 0 and is 0 again; sets
# MAX_LAG to the highest lag seen (for a webhook started on a backlog: the backlog).
wait_caught_up() {
    local seen_lag=0 value deadline=$(($(now_ms) + 600000))
    MAX_LAG=0
    while (($(now_ms) < deadline)); do
        value=$(lag "$1")
        if [[ -n "$value" ]]; then
            ((value > MAX_LAG)) && MAX_LAG=$value
            ((value > 0)) && seen_lag=1
            ((seen_lag == 1 && value == 0)) && return 0
        fi
        sleep 0.05
    done
    echo "webhook $1 did not catch up in 10 minutes" >&2
    return 1
}

# count_exported PREFIX: "lines unique_ids files bytes" of the files under PREFIX.
count_exported() {
    python3 - "$MOTO" "$BUCKET" "$1" "$ACCESS_KEY" "$SECRET_KEY" <<'EOF'
import json, sys, boto3
url, bucket, prefix, key, secret = sys.argv[1:]
s3 = boto3.client("s3", endpoint_url=url, aws_access_key_id=key,
                  aws_secret_access_key=secret, region_name="us-east-1")
lines = files = size = 0
ids = set()
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
    for obj in page.get("Contents", []):
        files += 1
        size += obj["Size"]
        body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
        for line in body.splitlines():
            lines += 1
            ids.add(json.loads(line)["id"])
print(lines, len(ids), files, size)
EOF
}

# create_webhook ID: an s3 webhook taking every event type, files under prefix ID.
create_webhook() {
    api POST /webhooks "$(
        cat <<EOF
{"id": "$1", "destination": {"type": "s3", "bucket": "$BUCKET", "key_prefix": "$1",
 "region": "us-east-1", "endpoint": "$MOTO", "path_style": true,
 "access_key_id": "$ACCESS_KEY", "secret_access_key": "$SECRET_KEY",
 "flush_interval": "$FLUSH_INTERVAL", "max_file_bytes": $MAX_FILE_BYTES}}
EOF
    )" >/dev/null
}

ingest() {
    run_driver ingest --url "$GW_URL" --tenant "$TENANT" --key "$KEY" \
        --concurrency "$CONCURRENCY" --duration "$DURATION" --warmup "$WARMUP" \
        --event-bytes "$EVENT_BYTES" --batch "$BATCH" --label "$1"
    INGEST_RATE=$(field "$RESULT" events_per_sec)
}

# Phase 1: export alone.
create_webhook alone
api POST /webhooks/alone/stop >/dev/null
ingest export-backlog
start_ms=$(now_ms)
api POST /webhooks/alone/start >/dev/null
wait_caught_up alone
alone_ms=$(($(now_ms) - start_ms))
alone_backlog=$MAX_LAG
read -r alone_lines alone_ids alone_files alone_bytes <<<"$(count_exported alone)"
alone_rate=$(awk -v n="$alone_ids" -v ms="$alone_ms" 'BEGIN { printf "%.0f", n * 1000 / ms }')
# Time spent in uploads (the attempts' durations), to tell reading from uploading.
alone_upload_ms=$(api GET "/webhooks/alone/messages?include_runs=true&limit=1000" |
    python3 -c 'import json, sys; print(sum(r["duration_ms"] for m in json.load(sys.stdin)["data"] for r in m.get("runs") or []))')
api DELETE /webhooks/alone >/dev/null

# Phase 2: export while ingesting as fast as accepted.
create_webhook live
ingest export-live
live_ingest_rate=$INGEST_RATE
stop_ms=$(now_ms)
wait_caught_up live
drain_ms=$(($(now_ms) - stop_ms))
read -r live_lines live_ids live_files live_bytes <<<"$(count_exported live)"
GATEWAY_RSS=$(peak_rss_mib gateway)

echo
echo "Export to moto_server, ~$EVENT_BYTES B events, max_file_bytes $MAX_FILE_BYTES, flush $FLUSH_INTERVAL ($(nproc) cores)"
printf '%-22s %10s %10s %8s %12s %10s\n' phase events events/s files MiB duplicates
printf '%-22s %10s %10s %8s %12s %10s\n' "export alone" "$alone_ids" "$alone_rate" "$alone_files" \
    "$((alone_bytes / 1048576))" "$((alone_lines - alone_ids))"
printf '%-22s %10s %10s %8s %12s %10s\n' "alongside ingest" "$live_ids" "$live_ingest_rate (ingest)" "$live_files" \
    "$((live_bytes / 1048576))" "$((live_lines - live_ids))"
echo "export alone: from starting the stopped webhook until its cursor caught up, $alone_ms ms;" \
    "backlog $alone_backlog events, $((alone_backlog - alone_ids)) missing; uploads took $alone_upload_ms ms of it"
echo "alongside ingest: caught up $drain_ms ms after ingest stopped (flush interval $FLUSH_INTERVAL)"
echo "gateway peak RSS: $GATEWAY_RSS MiB"
echo "target (issue 6): >= 50,000 events/s exported"
echo "RESULT label=export alone_events=$alone_ids alone_missing=$((alone_backlog - alone_ids)) alone_ms=$alone_ms alone_events_per_sec=$alone_rate live_events=$live_ids live_drain_ms=$drain_ms duplicates=$((alone_lines - alone_ids + live_lines - live_ids))"
