#!/usr/bin/env bash
# The append statement alone under pgbench, against variants of the `events` table, each in a
# database of its own, the variants taking turns in short slices (the machine's speed drifts from
# minute to minute, so only slices close in time compare). BENCHMARKS.md, "tenth", has results.
#
#   bench/pgbench-append.sh [EVENTS_PER_COMMAND] [TURNS] [SECONDS_PER_SLICE]    (10 10 5)
#
# Variants: `migrated` (the migrations as they are), `position-index` (plus an index on
# `position` alone, the table before migration 16), `no-trigger` (without the statement trigger
# `events_appender_first`), and `ceiling` (the same rows into a table with only a bigserial key).
# The statement is the store's APPEND_AT_SQL (a new stream: what `monkeyci-bench`'s append
# sends), prepared, 16 clients. Prints one line per slice (events/cmd, turn, variant,
# commands/s), then each variant's mean and its share of the ceiling. Needs `pgbench` and
# `psql`; PGHOST/PGPORT/PGUSER as for psql (default 127.0.0.1, 5432, postgres). Drops its
# databases (monkeyci_pgbench_*) at the end.
set -euo pipefail

events=${1:-10}
turns=${2:-10}
seconds=${3:-5}
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
export PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning"
migrations=$(cd "$(dirname "$0")/../migrations" && pwd)
work=$(mktemp -d)
variants=(migrated position-index no-trigger ceiling)

cleanup() {
    for v in "${variants[@]}"; do
        psql -qX -d postgres -c "DROP DATABASE IF EXISTS \"monkeyci_pgbench_${v//-/_}\"" >/dev/null 2>&1 || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

for v in "${variants[@]}"; do
    db=monkeyci_pgbench_${v//-/_}
    psql -qX -d postgres -c "DROP DATABASE IF EXISTS \"$db\"" -c "CREATE DATABASE \"$db\"" >/dev/null
    for f in "$migrations"/*.sql; do
        psql -qX -v ON_ERROR_STOP=1 -d "$db" -f "$f" >/dev/null 2>&1 || { echo "migrating $db: $f failed" >&2; exit 1; }
    done
    case $v in
        position-index) psql -qX -d "$db" -c "CREATE INDEX events_position ON events (position)" ;;
        no-trigger) psql -qX -d "$db" -c "DROP TRIGGER events_appender_first ON events" ;;
        ceiling) psql -qX -d "$db" -c "CREATE TABLE ceiling (id bigserial PRIMARY KEY, stream_id text, \
            stream_version bigint, event_type text, schema_version integer, data jsonb, metadata jsonb)" ;;
    esac
done

# Rows shaped like a build's events (no colon followed by a letter: pgbench would take it for a
# variable).
data='{"build_id": "3f1e2d4c-5b6a-4789-8abc-def012345678", "org": "acme", "repo": "widgets", "commit": "0123456789abcdef0123456789abcdef01234567", "branch": "main", "trigger": {"kind": "push", "by": "someone@example.com"}, "jobs": ["build", "test", "deploy"]}'
meta='{"command": "TriggerBuild", "correlation_id": "9b2c1d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e", "actor": "token-abcdef", "recorded_by": "monkeyci"}'
stream="('build-' || :r::text || '-' || :client_id::text)"
types=() datas=() metas=() ones=() values=()
for i in $(seq 1 "$events"); do
    types+=("'Event$i'") datas+=("'$data'") metas+=("'$meta'") ones+=(1)
    values+=("($stream, $i, 'Event$i', 1, '$data'::jsonb, '$meta'::jsonb)")
done
join() { local IFS=,; echo "$*"; }
cat >"$work/append.sql" <<EOF
\\set r random(1, 1000000000000)
INSERT INTO events (stream_id, stream_version, event_type, schema_version, data, metadata) SELECT $stream, 0::bigint + e.ord, e.event_type, e.schema_version, e.data, e.metadata FROM UNNEST(ARRAY[$(join "${types[@]}")]::text[], ARRAY[$(join "${ones[@]}")]::int4[], ARRAY[$(join "${datas[@]}")]::jsonb[], ARRAY[$(join "${metas[@]}")]::jsonb[]) WITH ORDINALITY AS e(event_type, schema_version, data, metadata, ord) RETURNING transaction_id::text::bigint AS tx, position;
EOF
cat >"$work/ceiling.sql" <<EOF
\\set r random(1, 1000000000000)
INSERT INTO ceiling (stream_id, stream_version, event_type, schema_version, data, metadata) VALUES $(join "${values[@]}");
EOF

slice() {
    local v=$1 script=append.sql
    [ "$v" = ceiling ] && script=ceiling.sql
    pgbench -n -M prepared -c 16 -j 2 -T "$seconds" -f "$work/$script" "monkeyci_pgbench_${v//-/_}" 2>&1 |
        awk '/^tps/ { printf "%.0f\n", $3 } /error|aborted/ { print "pgbench: " $0 > "/dev/stderr" }'
}

n=${#variants[@]}
for turn in $(seq 1 "$turns"); do
    for i in $(seq 0 $((n - 1))); do
        v=${variants[$(((i + turn) % n))]}
        echo "$events $turn $v $(slice "$v")"
    done
done | tee "$work/slices"

awk -v n="$turns" '
    { sum[$3] += $4 }
    END {
        for (v in sum) if (v != "ceiling") printf "%s: %.0f commands/s, %.1f %% of the ceiling (%.0f)\n", v, sum[v] / n, 100 * sum[v] / sum["ceiling"], sum["ceiling"] / n
    }' "$work/slices" | sort
