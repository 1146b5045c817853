#!/bin/bash
# policy_bench.sh - speed and memory of `mxsec policy` on the loopback test
# bed, side by side with postfix-mta-sts-resolver's mta-sts-query (the
# Debian tool an administrator would otherwise use for MTA-STS lookups).
#
#   tools/bench/policy_bench.sh [N]     (default N = 1000; run as root)
#   MXSEC=build-h4/mxsec tools/bench/policy_bench.sh   (an existing build; default build-release)
#
# Starts a test bed with N DANE domains (bK.dane.test) and N MTA-STS domains
# (bK.sts.test), then measures, in one run:
#   1. mxsec, one process for all 2N domains: cold (empty MTA-STS cache, cold
#      resolver cache) and warm (policies cached) - domains/s, peak RSS;
#   2. one process per domain over the N MTA-STS domains, 4 at a time, for
#      mxsec and for mta-sts-query (cold: every policy fetched; warm: mxsec
#      from its cache, mta-sts-query given the known id so it skips the
#      fetch) - domains/s and peak RSS per process.
# mta-sts-query uses the system resolver and trust store, so it runs in a
# private mount namespace whose /etc/resolv.conf names the test bed's
# unbound, with SSL_CERT_FILE pointing at the test bed's CA.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tools/bench/lib.sh
N=${1:-1000}
bench_build_mxsec
command -v mta-sts-query >/dev/null || { echo "mta-sts-query missing: run tools/setup.sh" >&2; exit 1; }
bench_lock_and_dirs
bench_start_testbed "$N"
CONF=$TB/mxsec.conf
for ((i = 1; i <= N; i++)); do echo "b$i.dane.test"; done > "$WORK/dane.list"
for ((i = 1; i <= N; i++)); do echo "b$i.sts.test"; done > "$WORK/sts.list"
cat "$WORK/dane.list" "$WORK/sts.list" > "$WORK/all.list"
echo "nameserver 127.0.53.2" > "$WORK/resolv.conf"

secs() { date +%s.%N; }
rate() { awk -v n="$1" -v t="$2" 'BEGIN { printf "%.0f", n / t }'; }

batch() {  # label state_dir
  local t0 t1 rss
  t0=$(secs)
  /usr/bin/time -f "%M" -o "$WORK/rss" "$MXSEC" --config "$CONF" -o "state_dir=$2" policy --json \
    $(cat "$WORK/all.list") > "$WORK/out.json"
  t1=$(secs)
  rss=$(cat "$WORK/rss")
  local must
  must=$(grep -c '"policy":"must-tls"' "$WORK/out.json" || true)
  [ "$must" = $((2 * N)) ] || { echo "expected $((2 * N)) must-tls answers, got $must" >&2; exit 1; }
  local el
  el=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
  printf '%-44s %8s s %8s domains/s %8s KiB peak RSS\n' "$1" "$el" "$(rate $((2 * N)) "$el")" "$rss"
}

per_process() {  # label command-prefix...   (domain appended; 4 in parallel)
  local label=$1; shift
  local t0 t1
  rm -f "$WORK"/rss.*
  t0=$(secs)
  xargs -P 4 -I{} /usr/bin/time -f "%M" -o "$WORK/rss.{}" "$@" {} > /dev/null 2> "$WORK/err" < "$WORK/sts.list" ||
    { echo "$label failed:" >&2; tail -5 "$WORK/err" >&2; exit 1; }
  t1=$(secs)
  local el rss
  el=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
  rss=$(cat "$WORK"/rss.* | sort -n | tail -1)
  printf '%-44s %8s s %8s domains/s %8s KiB peak RSS\n' "$label" "$el" "$(rate "$N" "$el")" "$rss"
}

echo "mxsec policy benchmark: $N DANE + $N MTA-STS test-bed domains, $(nproc) CPUs, $(date -u +%F)"
echo "-- one mxsec process for all $((2 * N)) domains"
batch "mxsec policy, cold" "$WORK/state-batch"
batch "mxsec policy, warm (policies cached)" "$WORK/state-batch"

echo "-- one process per MTA-STS domain ($N domains, 4 at a time)"
per_process "mxsec policy, cold" "$MXSEC" --config "$CONF" -o "state_dir=$WORK/state-pp" policy --json
per_process "mta-sts-query, cold" unshare -m sh -c \
  "mount --bind $WORK/resolv.conf /etc/resolv.conf && SSL_CERT_FILE=$TB/pki/ca.pem exec mta-sts-query \"\$0\""
per_process "mxsec policy, warm" "$MXSEC" --config "$CONF" -o "state_dir=$WORK/state-pp" policy --json
# mta-sts-query's warm path: the caller passes the known id; it checks the
# TXT record only and skips the fetch (id bK for domain bK.sts.test).
per_process "mta-sts-query, warm (known id)" unshare -m sh -c \
  "mount --bind $WORK/resolv.conf /etc/resolv.conf && d=\"\$0\" && SSL_CERT_FILE=$TB/pki/ca.pem exec mta-sts-query \"\$d\" \"\${d%%.sts.test}\""
