#!/bin/bash
# dnssec_bench.sh - cost of `dnssec_validation = local` against resolver
# mode: `mxsec policy` over the test bed's N bulk DANE domains
# (bK.dane.test) and its DNSSEC variant domains, in both modes, cold and
# warm. Prints wall time, DNS queries received by the test bed's unbound
# per domain, and the local/resolver time ratio.
#
#   tools/bench/dnssec_bench.sh [MXSEC] [N]   (default build/mxsec, N = 200; run as root)
#
# cold: unbound's cache flushed for test. and a new mxsec process (its
#       DNSKEY/DS cache empty);
# warm: unbound's cache warm, a new mxsec process: local mode walks the
#       chain of trust again (its cache lives as long as the process);
# warm in-process: the domain list five times in one process; the local
#       validator's cache is warm after the first pass, as in `serve`.
# MTA-STS is switched off: this measures DNS and DNSSEC only.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tools/bench/lib.sh
MXSEC=${1:-build/mxsec}
N=${2:-200}
bench_build_mxsec   # the binary given (MXSEC is set): only checked
bench_lock_and_dirs
bench_start_testbed "$N"
CONF=$TB/mxsec.conf
{
  for ((i = 1; i <= N; i++)); do echo "b$i.dane.test"; done
  echo ee.dane.test nomx.dane.test mxinsecure.dane.test insecure.test bogus.test nosuch.dane.test nsec3.test \
    unsigned.nsec3.test wild.nsec3.test cnins.nsec3.test nosuch.nsec3.test optout.test child.optout.test \
    nosuch.optout.test dsbad.test wrongkey.test unsupalg.test rsasha256.test rsasha512.test ecdsap384.test \
    ed25519.test ed448.test rsamd5.test dsa.test notlsa.dane.test nodata.dane.test notlsa.nsec3.test \
    nodata.nsec3.test b.dn.dane.test b.dnins.dane.test ee.dnsec.insecure.test | tr ' ' '\n'
} > "$WORK/domains"
COUNT=$(wc -l < "$WORK/domains")
for i in 1 2 3 4 5; do cat "$WORK/domains"; done > "$WORK/domains5"

queries() { unbound-control -c "$TB/dns/unbound.conf" stats_noreset | sed -n 's/^total.num.queries=//p'; }
flush() { unbound-control -c "$TB/dns/unbound.conf" flush_zone test >/dev/null; }
RES=(-o mta_sts=no)
LOC=(-o mta_sts=no -o dnssec_validation=local -o "trust_anchor_file=$TB/dns/test-anchor.ds")

# measure LABEL LIST-FILE DOMAINS-IN-LIST OPTIONS... -> prints a line, sets T
measure() {
  local label=$1 list=$2 n=$3; shift 3
  local q0 q1 t0 t1
  q0=$(queries); t0=$(date +%s.%N)
  xargs -a "$list" "$MXSEC" --config "$CONF" "$@" policy --json > "$WORK/out.json"
  t1=$(date +%s.%N); q1=$(queries)
  T=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
  printf "%-34s %7.3f s  %6.1f queries/domain\n" "$label" "$T" "$(awk -v q=$((q1 - q0)) -v n="$n" 'BEGIN { print q / n }')"
}

echo "$COUNT domains ($N bulk DANE domains + DNSSEC variants), mxsec $MXSEC"
flush; measure "resolver cold" "$WORK/domains" "$COUNT" "${RES[@]}"; RC=$T
measure "resolver warm" "$WORK/domains" "$COUNT" "${RES[@]}"; RW=$T
flush; measure "local cold" "$WORK/domains" "$COUNT" "${LOC[@]}"; LC=$T
measure "local warm (new process)" "$WORK/domains" "$COUNT" "${LOC[@]}"; LW=$T
measure "resolver warm in-process (x5)" "$WORK/domains5" $((COUNT * 5)) "${RES[@]}"; RP=$T
measure "local warm in-process (x5)" "$WORK/domains5" $((COUNT * 5)) "${LOC[@]}"; LP=$T
# Passes 2-5 of the in-process run, estimated as (x5 run) - (one-pass
# warm run) per mode: the steady state of a long-running process (serve),
# where the first pass's new signatures have been verified once.
awk -v rc="$RC" -v lc="$LC" -v rw="$RW" -v lw="$LW" -v rp="$RP" -v lp="$LP" 'BEGIN {
  printf "local/resolver wall time: cold %.2fx, warm %.2fx, warm in-process (x5) %.2fx\n", lc / rc, lw / rw, lp / rp
  if (rp > rw) printf "warm in-process, passes 2-5 only (x5 minus one pass): %.3f s / %.3f s = %.2fx\n", lp - lw, rp - rw, (lp - lw) / (rp - rw) }'
