#!/bin/bash
# deliver_bench.sh - `mxsec deliver` against msmtp: M messages of 2 KB
# delivered over verified TLS to the test bed's Postfix smtpd, one process
# per message as Postfix's pipe(8) runs it, 4 at a time, both in one run.
#
#   tools/bench/deliver_bench.sh [M]      (default 1000; run as root)
#   MXSEC=build-h4/mxsec tools/bench/deliver_bench.sh   (an existing build; default build-release)
#   BLOCKS=1 tools/bench/deliver_bench.sh  (all of mxsec, then all of msmtp; default 10 blocks in turn)
#
# mxsec does its whole job per message: MX, address, TLSA and MTA-STS
# lookups, DANE-EE verification (ee.dane.test), then SMTP. msmtp is given
# the server and checks its certificate against the test bed CA
# (tls_trust_file, tls_host_override): the fair "just send it over TLS"
# alternative. Reports messages/s, CPU (user + system) and peak RSS per
# process, and the ratios;
# checks that every message arrived in Postfix's Maildir.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tools/bench/lib.sh
M=${1:-1000}
bench_build_mxsec
command -v msmtp >/dev/null || { echo "msmtp missing: run tools/setup.sh" >&2; exit 1; }
bench_lock_and_dirs
bench_start_testbed
MAILDIR=$TB_MAILDIR

# A 2 KB message; each copy gets a unique token in the Subject.
body=$(head -c 1500 /dev/zero | tr '\0' 'x' | fold -w 72)
make_msg() {  # token
  printf 'From: bench@client.test\nTo: user@ee.dane.test\nSubject: bench %s\nMessage-ID: <%s@client.test>\n\n%s\n' \
    "$1" "$1" "$body"
}
for ((i = 1; i <= M; i++)); do make_msg "mx$i" > "$WORK/mx$i.eml"; make_msg "ms$i" > "$WORK/ms$i.eml"; done
bench_msmtprc "$WORK/msmtprc"

bench_cgroup mxsec-deliver-bench

# The two commands take turns in BLOCKS blocks of about M/BLOCKS messages
# each, in the order mxsec, msmtp, msmtp, mxsec, mxsec, msmtp, ... (ABBA),
# so that a change in the shared machine's load during the run falls on
# both alike instead of on whichever ran second.
BLOCKS=${BLOCKS:-10}
command_of() {  # prefix: the command line for it, in CMD
  case $1 in
    mx) CMD=("$MXSEC" --config "$TB_CONF" -o "state_dir=$WORK/state" deliver -f bench@client.test -- user@ee.dane.test) ;;
    ms) CMD=(msmtp -C "$WORK/msmtprc" user@ee.dane.test) ;;
  esac
}
declare -A ELAPSED=([mx]=0 [ms]=0) CPU_USEC=([mx]=0 [ms]=0)
for ((b = 0; b < BLOCKS; b++)); do
  from=$((b * M / BLOCKS + 1)); n=$(((b + 1) * M / BLOCKS - b * M / BLOCKS))
  [ "$n" -gt 0 ] || continue
  if ((b % 4 == 0 || b % 4 == 3)); then order=(mx ms); else order=(ms mx); fi
  for p in "${order[@]}"; do
    command_of "$p"
    BENCH_FROM=$from bench_per_process "$n" "$p" "${CMD[@]}"
    ELAPSED[$p]=$(awk -v a="${ELAPSED[$p]}" -v b="$BENCH_ELAPSED" 'BEGIN { printf "%.2f", a + b }')
    if [ -n "$BENCH_CPU_USEC" ] && [ "${CPU_USEC[$p]}" != n/a ]; then
      CPU_USEC[$p]=$((CPU_USEC[$p] + BENCH_CPU_USEC))
    else
      CPU_USEC[$p]=n/a
    fi
  done
done
report() {  # label prefix
  local label=$1 p=$2 cpu peak
  cpu=$(awk -v u="${CPU_USEC[$p]}" -v n="$M" 'BEGIN { if (u == "n/a") print "n/a"; else printf "%.2f", u / 1000 / n }')
  peak=$(cat "$WORK"/rss."$p".* | sort -n | tail -1)
  printf '%-34s %8s s %8.1f msg/s %8s KiB peak RSS %6s ms CPU per process\n' "$label" "${ELAPSED[$p]}" \
    "$(awk -v n="$M" -v t="${ELAPSED[$p]}" 'BEGIN { print n / t }')" "$peak" "$cpu"
  echo "${ELAPSED[$p]}" > "$WORK/time.$p"
  echo "$cpu" > "$WORK/cpu.$p"
  echo "$peak" > "$WORK/peak.$p"
}

echo "deliver benchmark: $M messages of 2 KB to Postfix smtpd over verified TLS, 4 processes at a time, $(nproc) CPUs, $BLOCKS blocks taking turns"
report "mxsec deliver (DANE-EE)" mx
report "msmtp (PKIX, fixed host)" ms

# Everything must have arrived (Postfix delivers to the Maildir asynchronously).
for ((w = 0; w < 60; w++)); do
  n_mx=$(grep -l "Subject: bench mx" "$MAILDIR"/new/* "$MAILDIR"/cur/* 2>/dev/null | wc -l || true)
  n_ms=$(grep -l "Subject: bench ms" "$MAILDIR"/new/* "$MAILDIR"/cur/* 2>/dev/null | wc -l || true)
  [ "$n_mx" -ge "$M" ] && [ "$n_ms" -ge "$M" ] && break
  sleep 1
done
echo "arrived at Postfix: mxsec $n_mx/$M, msmtp $n_ms/$M"
awk -v a="$(cat "$WORK/time.mx")" -v b="$(cat "$WORK/time.ms")" \
  'BEGIN { printf "ratio: mxsec takes %.2fx the time of msmtp per message\n", a / b }'
awk -v a="$(cat "$WORK/cpu.mx")" -v b="$(cat "$WORK/cpu.ms")" -v r="$(cat "$WORK/peak.mx")" -v s="$(cat "$WORK/peak.ms")" \
  'BEGIN { if (b + 0 > 0) printf "ratio: mxsec takes %.2fx the CPU of msmtp per message, ", a / b
           printf "%.2fx its peak RSS\n", r / s }'
[ "$n_mx" -ge "$M" ] && [ "$n_ms" -ge "$M" ]
