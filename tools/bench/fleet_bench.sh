#!/bin/bash
# fleet_bench.sh - what the PostgreSQL state backend costs, side by side with
# the embedded SQLite one, in one run on the loopback test bed (its
# PostgreSQL on 127.0.58.1; state_backend and the schema as mxsec.conf(5)
# and `mxsec db init` make them):
#
#   tools/bench/fleet_bench.sh [N] [M] [SECONDS]   (defaults 1000 300 10; run as root)
#   MXSEC=build-x/mxsec tools/bench/fleet_bench.sh  (an existing build; default build-release)
#
# 1. `mxsec serve` over N MTA-STS enforce domains (bK.sts.test) whose
#    policies are already in the store (fetched by another "host" through
#    `mxsec policy`), its own memory empty: the time until every domain is
#    answered "OK secure" (each first answer reads the store: the local
#    SQLite file, or PostgreSQL with no fetch of its own), then warm
#    lookups/s, p50 and p99 for SECONDS (100 persistent clients,
#    socketmap_load.py), and peak RSS. SQLite first, then PostgreSQL.
# 2. `mxsec deliver`, M messages of 2 KB to ee.dane.test (DANE-EE, the test
#    bed's Postfix), one process per message, 4 at a time: CPU per process
#    (a cgroup of their own), wall time and peak RSS, with each backend (the
#    PostgreSQL one also forwards its attempt rows at the end of each
#    process), and every message must arrive.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tools/bench/lib.sh
N=${1:-1000}
M=${2:-300}
SECONDS_EACH=${3:-10}
bench_build_mxsec
bench_lock_and_dirs
export TB_PG=1
bench_start_testbed "$N"
MAILDIR=$TB_MAILDIR
ADDR=127.0.57.2 PORT=18461

PG=(-o "state_backend=$TB_PG_URI" -o "state_backend_passfile=$TB_PG_PASSFILE")
"$MXSEC" --config "$TB_CONF" "${PG[@]}" db init > /dev/null
for ((i = 1; i <= N; i++)); do echo "b$i.sts.test"; done > "$WORK/domains"

# Host A fetches every policy: into its SQLite file, and into PostgreSQL.
mapfile -t DOMAINS < "$WORK/domains"
for ((i = 0; i < N; i += 200)); do
  "$MXSEC" --config "$TB_CONF" -o "state_dir=$WORK/a-sqlite" policy "${DOMAINS[@]:i:200}" > /dev/null
  "$MXSEC" --config "$TB_CONF" -o "state_dir=$WORK/a-pg" -o state_host_name=hosta "${PG[@]}" \
    policy "${DOMAINS[@]:i:200}" > /dev/null
done
rows=$(PGPASSFILE=$TB_PG_PASSFILE "$TB_PG_BIN/psql" -X -w -At -d "$TB_PG_URI" -c "SELECT count(*) FROM sts_policy")
[ "$rows" -ge "$N" ] || { echo "PostgreSQL holds $rows policies, expected $N" >&2; exit 1; }

SERVE_PID=''
stop_serve() { [ -n "$SERVE_PID" ] && kill "$SERVE_PID" 2>/dev/null && wait "$SERVE_PID" 2>/dev/null; SERVE_PID=''; }
bench_on_exit stop_serve
wait_port() {
  local i
  for ((i = 0; i < 100; i++)); do (exec 3<>"/dev/tcp/$ADDR/$PORT") 2>/dev/null && return 0; sleep 0.1; done
  echo "mxsec serve does not listen on $ADDR:$PORT" >&2; exit 1
}
load() { /usr/bin/python3 tools/bench/socketmap_load.py --server "inet:$ADDR:$PORT" --domains "$WORK/domains" "$@"; }

serve_run() {  # label state_dir [options...]
  local label=$1 dir=$2; shift 2
  "$MXSEC" --config "$TB_CONF" -o "state_dir=$dir" "$@" serve --listen "inet:$ADDR:$PORT" 2>"$WORK/serve.$label.log" &
  SERVE_PID=$!
  wait_port
  local t0 t1
  t0=$(date +%s.%N)
  load --clients 100 --expect "OK secure" --warm --seconds 300 > "$WORK/first.$label.json" ||
    { echo "$label: not every domain answered: $(cat "$WORK/first.$label.json")" >&2; exit 1; }
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }' > "$WORK/first.$label"
  load --clients 100 --expect "OK secure match=" --seconds "$SECONDS_EACH" > "$WORK/warm.$label.json"
  awk '/^VmHWM/ {print $2}' "/proc/$SERVE_PID/status" > "$WORK/rss.$label"
  stop_serve
}
# Host B: a state directory of its own, empty (PostgreSQL) or host A's SQLite file (the embedded case).
cp -a "$WORK/a-sqlite" "$WORK/b-sqlite"
serve_run sqlite "$WORK/b-sqlite"
fetches_before=$(grep -c "GET /.well-known/mta-sts.txt" "$TB"/nginx/access.log 2>/dev/null || echo 0)
serve_run pg "$WORK/b-pg" -o state_host_name=hostb "${PG[@]}"
fetches_after=$(grep -c "GET /.well-known/mta-sts.txt" "$TB"/nginx/access.log 2>/dev/null || echo 0)

# deliver: one process per message, CPU from a cgroup (rusage counts a 10 ms process in whole ticks).
body=$(head -c 1500 /dev/zero | tr '\0' 'x' | fold -w 72)
for p in ds dp; do
  for ((i = 1; i <= M; i++)); do
    printf 'From: bench@client.test\nTo: user@ee.dane.test\nSubject: fleet %s%s\n\n%s\n' "$p" "$i" "$body" > "$WORK/$p$i.eml"
  done
done
bench_cgroup mxsec-fleet-bench
deliver_run() {  # prefix options...
  local prefix=$1; shift
  bench_per_process "$M" "$prefix" "$MXSEC" --config "$TB_CONF" "$@" deliver -f bench@client.test -- user@ee.dane.test
  echo "$BENCH_ELAPSED" > "$WORK/dtime.$prefix"
  echo "$BENCH_CPU" > "$WORK/dcpu.$prefix"
  echo "$BENCH_PEAK_RSS" > "$WORK/drss.$prefix"
}
deliver_run ds -o "state_dir=$WORK/d-sqlite"
deliver_run dp -o "state_dir=$WORK/d-pg" -o state_host_name=hostd "${PG[@]}"
for ((w = 0; w < 60; w++)); do
  n_s=$(grep -l "Subject: fleet ds" "$MAILDIR"/new/* "$MAILDIR"/cur/* 2>/dev/null | wc -l || true)
  n_p=$(grep -l "Subject: fleet dp" "$MAILDIR"/new/* "$MAILDIR"/cur/* 2>/dev/null | wc -l || true)
  [ "$n_s" -ge "$M" ] && [ "$n_p" -ge "$M" ] && break
  sleep 1
done
pg_rows=$(PGPASSFILE=$TB_PG_PASSFILE "$TB_PG_BIN/psql" -X -w -At -d "$TB_PG_URI" \
  -c "SELECT count(*) FROM attempts WHERE host = 'hostd'")

echo "fleet benchmark: $N MTA-STS domains, $M messages, $(nproc) CPUs shared by servers, PostgreSQL and load," \
  "$(date -u +%F)"
/usr/bin/python3 - "$WORK" "$N" "$M" "$fetches_before" "$fetches_after" "$n_s" "$n_p" "$pg_rows" <<'EOF'
import json, sys
w, n, m = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rd = lambda f: open("%s/%s" % (w, f)).read().strip()
print("%-22s %12s %11s %9s %9s %12s" % ("serve, state backend", "first N s", "lookups/s", "p50 ms", "p99 ms",
                                        "peak RSS KiB"))
r = {}
for b in ("sqlite", "pg"):
    j = json.load(open("%s/warm.%s.json" % (w, b)))
    r[b] = (float(rd("first." + b)), j["rps"], j["p50_ms"], j["p99_ms"], int(rd("rss." + b)))
    print("%-22s %12.2f %11d %9.3f %9.3f %12d" % ((b,) + r[b]))
print("MTA-STS fetches by the PostgreSQL serve (host B): %d" % (int(sys.argv[5]) - int(sys.argv[4])))
print("ratio PostgreSQL / SQLite, serve: first answers %.2fx the time, warm lookups/s %.2fx, p99 %.2fx, RSS %.2fx"
      % (r["pg"][0] / r["sqlite"][0], r["pg"][1] / r["sqlite"][1], r["pg"][3] / r["sqlite"][3],
         r["pg"][4] / r["sqlite"][4]))
print("%-22s %9s %9s %16s %14s" % ("deliver, state backend", "wall s", "msg/s", "CPU ms/process", "peak RSS KiB"))
d = {}
for b, p in (("sqlite", "ds"), ("pg", "dp")):
    d[b] = (float(rd("dtime." + p)), m / float(rd("dtime." + p)), rd("dcpu." + p), int(rd("drss." + p)))
    print("%-22s %9.2f %9.1f %16s %14d" % ((b,) + d[b]))
cpu = (float(d["pg"][2]) / float(d["sqlite"][2])) if d["sqlite"][2] != "n/a" else float("nan")
print("ratio PostgreSQL / SQLite, deliver: time %.2fx, CPU %.2fx, RSS %.2fx"
      % (d["pg"][0] / d["sqlite"][0], cpu, d["pg"][3] / d["sqlite"][3]))
print("arrived: sqlite %s/%d, pg %s/%d; attempt rows of the PostgreSQL run in PostgreSQL: %s"
      % (sys.argv[6], m, sys.argv[7], m, sys.argv[8]))
EOF
[ "$n_s" -ge "$M" ] && [ "$n_p" -ge "$M" ] && [ "$fetches_after" = "$fetches_before" ]
