#!/bin/bash
# survey_bench.sh - speed and memory of `mxsec survey` on the loopback test
# bed, side by side with what a user would script instead: Postfix's
# posttls-finger (MX, DANE TLSA, STARTTLS and the handshake with each MX)
# plus postfix-mta-sts-resolver's mta-sts-query (MTA-STS), per domain.
#
#   tools/bench/survey_bench.sh [N] [PEER_N]   (defaults 1000 and 200; run as root)
#   MXSEC=build/mxsec tools/bench/survey_bench.sh   (an existing build; default build-release)
#
# Starts a test bed with N DANE domains (bK.dane.test) and N MTA-STS
# domains (bK.sts.test), then measures, in one run:
#   1. mxsec survey --no-probe over the 2N domains (empty MTA-STS cache);
#   2. mxsec survey --probe over the 2N domains (empty cache again): one
#      EHLO/STARTTLS/handshake/QUIT session per MX host;
#   3. the peer over the first PEER_N domains of each kind (2 PEER_N; the
#      peer is slower, and the rate is what is compared): per domain
#      `posttls-finger -c -l dane` then `mta-sts-query`, as many domains at
#      once as mxsec's default --concurrency (16).
# Each run is checked: mxsec's shares (every DANE domain usable and, with
# --probe, matching; every MTA-STS domain enforce; every MX host offering
# STARTTLS), the peer's "TLS connection established" lines.
# posttls-finger and mta-sts-query use the system resolver (and
# mta-sts-query the system trust store), so the peer runs in a private
# mount namespace whose /etc/resolv.conf names the test bed's unbound, with
# SSL_CERT_FILE pointing at the test bed's CA (posttls-finger: -F, and
# MAIL_CONFIG naming a minimal main.cf with smtp_dns_support_level = dnssec).
set -euo pipefail
cd "$(dirname "$0")/../.."
. tools/bench/lib.sh
N=${1:-1000}
PEER_N=${2:-200}
[ "$PEER_N" -le "$N" ] || PEER_N=$N
CONCURRENCY=16
bench_build_mxsec
for tool in posttls-finger mta-sts-query; do
  command -v $tool >/dev/null || { echo "$tool missing: run tools/setup.sh" >&2; exit 1; }
done
bench_lock_and_dirs
bench_start_testbed "$N"
CONF=$TB/mxsec.conf
for ((i = 1; i <= N; i++)); do echo "b$i.dane.test"; echo "b$i.sts.test"; done > "$WORK/all.list"
for ((i = 1; i <= PEER_N; i++)); do echo "b$i.dane.test"; echo "b$i.sts.test"; done > "$WORK/peer.list"
echo "nameserver 127.0.53.2" > "$WORK/resolv.conf"
# posttls-finger reads main.cf: a minimal one, DNSSEC lookups on (for DANE).
mkdir -p "$WORK/postfix"
printf 'compatibility_level = 3.6\nsmtp_dns_support_level = dnssec\n' > "$WORK/postfix/main.cf"

secs() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
rate() { awk -v n="$1" -v t="$2" 'BEGIN { printf "%.1f", n / t }'; }
share() {  # summary.json key -> "count/of"
  python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["shares"][sys.argv[2]]; print("%d/%d" % (s["count"], s["of"]))' "$1" "$2"
}
expect_share() {  # summary.json key want
  local got
  got=$(share "$1" "$2")
  [ "$got" = "$3" ] || { echo "survey: share $2 is $got, expected $3" >&2; exit 1; }
}

survey() {  # label probe-flag state_dir -> prints a line, sets RATE_<flag>
  local t0 t1 el
  t0=$(secs)
  /usr/bin/time -f "%M" -o "$WORK/rss" "$MXSEC" --config "$CONF" -o "state_dir=$3" survey "$2" \
    --concurrency "$CONCURRENCY" --json --out "$WORK/out$2.jsonl" "$WORK/all.list" > "$WORK/summary$2.json"
  t1=$(secs)
  el=$(elapsed "$t0" "$t1")
  local s=$WORK/summary$2.json
  expect_share "$s" dane_usable "$N/$((2 * N))"
  expect_share "$s" mta_sts_enforce "$N/$((2 * N))"
  if [ "$2" = --probe ]; then
    expect_share "$s" dane_match "$N/$N"
    expect_share "$s" starttls_hosts "$((2 * N))/$((2 * N))"
  fi
  printf '%-52s %8s s %8s domains/s %8s KiB peak RSS\n' "$1" "$el" "$(rate $((2 * N)) "$el")" "$(cat "$WORK/rss")"
  LAST_RATE=$(rate $((2 * N)) "$el")
}

peer() {
  local t0 t1 el established
  t0=$(secs)
  MAIL_CONFIG=$WORK/postfix SSL_CERT_FILE=$TB/pki/ca.pem unshare -m sh -c '
    mount --bind "$1/resolv.conf" /etc/resolv.conf &&
    xargs -P "$2" -I{} sh -c "posttls-finger -c -l dane -F \"\$1\" {} 2>&1; mta-sts-query {} 2>&1 || true" sh "$3" \
      < "$1/peer.list"' sh "$WORK" "$CONCURRENCY" "$TB/pki/ca.pem" > "$WORK/peer.out"
  t1=$(secs)
  el=$(elapsed "$t0" "$t1")
  established=$(grep -c "TLS connection established" "$WORK/peer.out" || true)
  [ "$established" = $((2 * PEER_N)) ] ||
    { echo "peer: $established TLS connections of $((2 * PEER_N)):" >&2; head -20 "$WORK/peer.out" >&2; exit 1; }
  printf '%-52s %8s s %8s domains/s\n' "posttls-finger + mta-sts-query, $((2 * PEER_N)) domains" "$el" \
    "$(rate $((2 * PEER_N)) "$el")"
  echo "   (of which DANE-verified: $(grep -c "Verified TLS connection established" "$WORK/peer.out" || true))"
  LAST_RATE=$(rate $((2 * PEER_N)) "$el")
}

echo "mxsec survey benchmark: $N DANE + $N MTA-STS test-bed domains, $(nproc) CPUs, $(date -u +%F)," \
     "concurrency $CONCURRENCY"
survey "mxsec survey --no-probe, $((2 * N)) domains, cold" --no-probe "$WORK/state-noprobe"
NOPROBE=$LAST_RATE
survey "mxsec survey --probe, $((2 * N)) domains, cold" --probe "$WORK/state-probe"
PROBE=$LAST_RATE
peer
PEER=$LAST_RATE
awk -v a="$PROBE" -v b="$NOPROBE" -v p="$PEER" 'BEGIN {
  printf "ratio: mxsec survey --probe %.1fx the peer'"'"'s domains/s; --no-probe %.1fx\n", a / p, b / p }'
