#!/bin/bash
# sendmail_bench.sh - mxsec's sendmail mode against msmtp's sendmail mode:
# M small messages (about 1 KB) submitted one after the other, as cron or a
# web application does, all in one run against the same test bed server.
#
#   tools/bench/sendmail_bench.sh [M]      (default 1000; run as root)
#   MXSEC=build-h4/mxsec tools/bench/sendmail_bench.sh   (an existing build; default build-release)
#
# Measured per variant: wall time from invocation to exit of every
# submission (the caller's wait), per message and in total, and the peak RSS
# of one invocation (/usr/bin/time). Variants:
#   mxsec sendmail -odq   queue only (fsync of message, envelope and directory)
#   mxsec sendmail        default -odb: queue, then a detached child delivers;
#                         also: time until the last message arrived, and the
#                         peak RSS of the background children (cgroup v2
#                         memory.peak of the whole run when available, and the
#                         largest VmHWM of any mxsec process, sampled every 20 ms)
#   mxsec sendmail -odi   queue and deliver in the foreground (DANE-EE, ee.dane.test)
#   msmtp (sendmail mode) delivers in the foreground, no queue, to the same Postfix
#                         listener over TLS, certificate checked against the test bed CA
# The -odq messages are then delivered by one `mxsec queue run` (timed too).
# Every message must arrive in the test bed's Maildir, or the script fails.
set -euo pipefail
export LC_ALL=C
umask 022
cd "$(dirname "$0")/../.."
. tools/bench/lib.sh
M=${1:-1000}
bench_build_mxsec
command -v msmtp >/dev/null || { echo "msmtp missing: run tools/setup.sh" >&2; exit 1; }
bench_lock_and_dirs
CG=""
leave_cgroup() {  # move what is left of the run out of its cgroup, then remove it
  if [ -n "$CG" ] && [ -d "$CG" ]; then
    while read -r p; do echo "$p" > /sys/fs/cgroup/cgroup.procs 2>/dev/null || true; done < "$CG/cgroup.procs"
    rmdir "$CG" 2>/dev/null || true
  fi
}
bench_on_exit leave_cgroup
bench_start_testbed
MAILDIR=$TB_MAILDIR
CONF=$WORK/mxsec.conf
{ cat "$TB_CONF"; echo "queue_dir = $WORK/queue"; echo "state_dir = $WORK/state"; } > "$CONF"
export MXSEC_CONFIG=$CONF

body=$(head -c 700 /dev/zero | tr '\0' 'x' | fold -w 70)
for ((i = 1; i <= M; i++)); do
  for p in q b i s; do
    printf 'From: bench@client.test\nTo: user@ee.dane.test\nSubject: bench %s%d\n\n%s\n' "$p" "$i" "$body" \
      > "$WORK/$p$i.eml"
  done
done

bench_msmtprc "$WORK/msmtprc"

arrived() {  # arrived PREFIX -> number of messages "bench PREFIX<n>" in the Maildir
  grep -l "^Subject: bench $1[0-9]" "$MAILDIR"/new/* "$MAILDIR"/cur/* 2>/dev/null | wc -l || true
}
wait_arrived() {  # wait_arrived PREFIX [seconds]
  local n
  for ((w = 0; w < ${2:-300}; w++)); do
    n=$(arrived "$1")
    [ "$n" -ge "$M" ] && break
    sleep 1
  done
  arrived "$1"
}

declare -A TOTAL RSS
run() {  # run KEY PREFIX command...   (each message file as stdin, one after the other)
  local key=$1 prefix=$2; shift 2
  local t0 t1
  t0=$(date +%s.%N)
  for ((i = 1; i <= M; i++)); do
    /usr/bin/time -f %M -o "$WORK/rss.$key.$i" "$@" < "$WORK/$prefix$i.eml" > /dev/null 2>> "$WORK/err.$key" ||
      { echo "$key: message $i failed: $(tail -3 "$WORK/err.$key")" >&2; exit 1; }
  done
  t1=$(date +%s.%N)
  TOTAL[$key]=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
  RSS[$key]=$(cat "$WORK"/rss."$key".* | sort -n | tail -1)
}

echo "sendmail benchmark: $M messages of about 1 KB, submitted one after the other, $(nproc) CPUs"
echo "mxsec: $MXSEC; queue_dir on $(df --output=fstype "$WORK" | tail -1) ($WORK)"

run odq q "$MXSEC" sendmail -odq -f bench@client.test user@ee.dane.test
t0=$(date +%s.%N)
"$MXSEC" queue run 2> "$WORK/run.err"
t1=$(date +%s.%N)
RUN_TIME=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')

# -odb: the background children go into a cgroup of their own (peak memory of all of them).
CHILD_PEAK="n/a"
if [ -f /sys/fs/cgroup/cgroup.controllers ] && grep -qw memory /sys/fs/cgroup/cgroup.controllers; then
  CG=/sys/fs/cgroup/mxsec-bench-$$
  if mkdir "$CG" 2>/dev/null && echo $$ > "$CG/cgroup.procs" 2>/dev/null; then :; else CG=""; fi
fi
sample_hwm() {  # the largest VmHWM (KiB) of mxsec processes, until $WORK/stop-sampling exists
  local max=0 v
  while [ ! -e "$WORK/stop-sampling" ]; do
    v=$(awk 'FNR == 1 { n = "" } /^Name:/ { n = $2 } /^VmHWM:/ && n == "mxsec" && $2 > m { m = $2 }
             END { print m + 0 }' /proc/[0-9]*/status 2>/dev/null || echo 0)
    [ "$v" -gt "$max" ] && max=$v
    echo "$max" > "$WORK/hwm"
    sleep 0.02
  done
}
sample_hwm &
SAMPLER=$!
t0=$(date +%s.%N)
run odb b "$MXSEC" sendmail -f bench@client.test user@ee.dane.test
N_B=$(wait_arrived b)
t1=$(date +%s.%N)
ODB_ALL=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
touch "$WORK/stop-sampling"
wait "$SAMPLER" || true
HWM=$(cat "$WORK/hwm" 2>/dev/null || echo "?")
if [ -n "$CG" ] && [ -f "$CG/memory.peak" ]; then
  CHILD_PEAK="$(( $(cat "$CG/memory.peak") / 1024 )) KiB (cgroup memory.peak: all processes of the run, page cache included)"
fi

run odi i "$MXSEC" sendmail -odi -f bench@client.test user@ee.dane.test
run msmtp s msmtp -C "$WORK/msmtprc" -f bench@client.test user@ee.dane.test

N_Q=$(wait_arrived q)
N_I=$(wait_arrived i)
N_S=$(wait_arrived s)
LEFT=$("$MXSEC" queue list --json | wc -l)

row() {  # row LABEL KEY
  printf '%-36s %9s s %9.2f ms %9s KiB %8.2fx\n' "$1" "${TOTAL[$2]}" \
    "$(awk -v t="${TOTAL[$2]}" -v n="$M" 'BEGIN { print t * 1000 / n }')" "${RSS[$2]}" \
    "$(awk -v a="${TOTAL[$2]}" -v b="${TOTAL[msmtp]}" 'BEGIN { print a / b }')"
}
echo
printf '%-36s %11s %12s %13s %9s\n' "variant (invocation to exit)" "total" "per message" "peak RSS" "time/msmtp"
row "mxsec sendmail -odq (queue only)" odq
row "mxsec sendmail (-odb, background)" odb
row "mxsec sendmail -odi (foreground)" odi
row "msmtp (sendmail mode, foreground)" msmtp
echo
echo "mxsec queue run delivering the $M -odq messages: $RUN_TIME s"
echo "-odb: first invocation to last message in the Maildir: $ODB_ALL s"
echo "-odb: largest VmHWM of an mxsec process (sampled): $HWM KiB; cgroup: $CHILD_PEAK"
awk -v a="${RSS[odi]}" -v b="${RSS[msmtp]}" 'BEGIN { printf "peak RSS ratio mxsec -odi / msmtp: %.2fx\n", a / b }'
echo "arrived at Postfix: -odq $N_Q/$M, -odb $N_B/$M, -odi $N_I/$M, msmtp $N_S/$M; left in the mxsec queue: $LEFT"
[ "$N_Q" -ge "$M" ] && [ "$N_B" -ge "$M" ] && [ "$N_I" -ge "$M" ] && [ "$N_S" -ge "$M" ] && [ "$LEFT" = 0 ]
