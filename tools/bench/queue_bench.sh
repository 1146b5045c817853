#!/bin/bash
# queue_bench.sh - queue throughput: `mxsec queue run` against Postfix's
# queue manager and smtp(8) with DANE, side by side in one run on the test bed.
#
#   tools/bench/queue_bench.sh [N]      (default 1000; run as root)
#   MXSEC=build-h4/mxsec tools/bench/queue_bench.sh   (an existing build; default build-release)
#   PF_TLS_REUSE=no tools/bench/queue_bench.sh        (Postfix without smtp_tls_connection_reuse)
#   ROUNDS=3 tools/bench/queue_bench.sh               (rounds of both senders; the median ratio too)
#   SINK=discard tools/bench/queue_bench.sh          (the sink discards: see below)
#   QB_PERF=/tmp/prof tools/bench/queue_bench.sh      (perf record of each queue run: DIR/perf.one.data ...;
#                                                      the profile's cost shows in that run's rate)
#
# Two workloads, N one-recipient 2 KB messages each: all to ee.dane.test, and
# spread round-robin over the 50 benchmark domains b1..b50.dane.test (DANE-EE,
# every MX host is the test bed's Postfix smtpd at 127.0.55.1, the sink; it
# delivers to the test bed's Maildir). For each workload and each sender the
# messages are queued first with delivery held, then released, and the time
# from the release until the sink's Maildir holds all N is measured:
#   Postfix  a private sending instance in WORK/pf (smtp_tls_security_level =
#            dane, smtp_dns_support_level = dnssec, the connection cache, by
#            default also smtp_tls_connection_reuse); it runs in a mount
#            namespace whose /etc/resolv.conf names the test bed's unbound.
#            Held: cleanup puts every message on hold (header_checks HOLD);
#            released with `postsuper -H ALL` and `postqueue -f`.
#   mxsec    `mxsec sendmail -odq` N times (the test bed's mxsec.conf, a queue
#            dir of its own), then `mxsec queue run`.
# Every message carries a token in its Subject; the run fails unless each
# token arrived exactly once. With SINK=discard the recipients are qbench-discard@ those domains,
# which the sink's transport_maps sends to the discard transport after its cleanup logged the
# Subject (header_checks WARN; tools/testbed/lib/postfix.sh): the time is then until the sink
# accepted all N, the tokens are counted in its log, and the sink does much less per message
# (no Maildir write and fsync). The unbound cache is warmed (one `mxsec policy`
# over the domains) before anything is timed, so neither sender pays for the
# other's cold lookups. Prints both rates and the ratio mxsec / Postfix, for each round and, with
# several rounds, the median ratio per workload: on a shared 2-CPU machine one round's ratio moves
# with the load (Postfix's one-domain rate has ranged from 250 to 560 msg/s between rounds).
set -euo pipefail
export LC_ALL=C
umask 022
cd "$(dirname "$0")/../.."
. tools/bench/lib.sh
N=${1:-1000}
ROUNDS=${ROUNDS:-1}
SINK=${SINK:-maildir}
case $SINK in
  maildir) LOCAL=user TAG=qbench ;;
  discard) LOCAL=qbench-discard TAG=qbench-discard ;;
  *) echo "SINK is maildir or discard, not $SINK" >&2; exit 64 ;;
esac
[ -z "${QB_PERF:-}" ] || mkdir -p "$QB_PERF"
DOMAINS=50
bench_build_mxsec
bench_lock_and_dirs
PF=$WORK/pf
stop_sending_postfix() { [ -f "$PF/etc/main.cf" ] && postfix -c "$PF/etc" stop >/dev/null 2>&1; return 0; }
bench_on_exit stop_sending_postfix
bench_start_testbed "$DOMAINS"
MAILDIR=$TB_MAILDIR
chmod go+x "$WORK"   # Postfix's unprivileged processes reach WORK/pf
CONF=$WORK/mxsec.conf
{ cat "$TB_CONF"; echo "queue_dir = $WORK/queue"; echo "state_dir = $WORK/state"; } > "$CONF"
printf 'nameserver %s\noptions trust-ad\n' "$TB_UNBOUND" > "$WORK/resolv.conf"

# The sending Postfix: no listener, delivers everything with smtp(8), DANE from validated DNS.
write_sending_postfix() {
  mkdir -p "$PF/etc" "$PF/spool" "$PF/data"
  chown postfix "$PF/data"
  cp /usr/share/postfix/master.cf.dist "$PF/etc/master.cf"
  postconf -c "$PF/etc" -F '*/*/chroot = n'
  postconf -c "$PF/etc" -MX smtp/inet
  postconf -c "$PF/etc" -M tlsproxy/unix="tlsproxy unix - - n - 0 tlsproxy"   # smtp_tls_connection_reuse
  cat > "$PF/etc/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $PF/spool
data_directory = $PF/data
mail_owner = postfix
setgid_group = postdrop
syslog_name = postfix-qbench
maillog_file = $PF/maillog
maillog_file_prefixes = $PF
myhostname = sender.qbench.test
myorigin = client.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
alias_maps =
alias_database =
biff = no
smtputf8_enable = yes
header_checks = static:HOLD
smtp_dns_support_level = dnssec
smtp_tls_security_level = dane
smtp_tls_loglevel = 1
smtp_tls_connection_reuse = ${PF_TLS_REUSE:-yes}
smtp_helo_name = client.test
EOF
  postfix -c "$PF/etc" check
  unshare -m sh -c "mount --bind '$WORK/resolv.conf' /etc/resolv.conf && exec postfix -c '$PF/etc' start" \
    > "$WORK/pf-start.out" 2>&1 || { cat "$WORK/pf-start.out" >&2; exit 1; }
}
write_sending_postfix

body=$(head -c 1900 /dev/zero | tr '\0' 'x' | fold -w 76)
make_msg() {  # token recipient
  printf 'From: bench@client.test\nTo: %s\nSubject: %s %s\nMessage-ID: <%s@client.test>\n\n%s\n' \
    "$2" "$TAG" "$1" "$1" "$body"
}
rcpt_for() {  # workload index
  if [ "$1" = one ]; then echo "$LOCAL@ee.dane.test"; else echo "$LOCAL@b$(( ($2 - 1) % DOMAINS + 1 )).dane.test"; fi
}

shopt -s nullglob
in_maildir() { local f=("$MAILDIR"/new/* "$MAILDIR"/cur/*); echo "${#f[@]}"; }
secs() { date +%s.%N; }
# All CPUs' busy time so far (user, nice, system, irq, softirq; /proc/stat, in USER_HZ = 1/100 s):
# both senders share the 2 CPUs with the sink, so what the whole machine spends per message says
# how much room a sender leaves the sink.
cpu_busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8; exit }' /proc/stat; }
arrivals() {  # key -> messages in the Maildir (all keys), or the sink's log lines of KEY's tokens
  if [ "$SINK" = maildir ]; then in_maildir; else grep -c "warning: header Subject: $TAG $1-" "$TB_MAILLOG" || true; fi
}
wait_arrivals() {  # key target -> waits (at most 600 s) until arrivals KEY reach TARGET
  local t_end=$((SECONDS + 600))
  while [ "$(arrivals "$1")" -lt "$2" ] && [ $SECONDS -lt $t_end ]; do sleep 0.05; done
}
check_tokens() {  # prefix -> fails unless qbench PREFIX1..N each arrived exactly once
  local bad
  if [ "$SINK" = maildir ]; then grep -h "^Subject: $TAG $1-" "$MAILDIR"/new/* "$MAILDIR"/cur/*
  else grep -o "warning: header Subject: $TAG $1-[0-9]* " "$TB_MAILLOG"
  fi | sort | uniq -c > "$WORK/tokens.$1"
  bad=$(awk -v n="$N" '$1 != 1 { b++ } END { print (NR != n) + b }' "$WORK/tokens.$1")
  [ "$bad" = 0 ] || { echo "$1: $(wc -l < "$WORK/tokens.$1") distinct of $N tokens, some not exactly once" >&2; exit 1; }
}

declare -A RATE TIME
run_postfix() {  # workload
  local key=pf-$1.$R i held base t0 t1 c0
  for ((i = 1; i <= N; i++)); do
    make_msg "$key-$i" "$(rcpt_for "$1" "$i")" | sendmail -C "$PF/etc" -f bench@client.test "$(rcpt_for "$1" "$i")"
  done
  for ((i = 0; i < 300; i++)); do
    held=$(find "$PF/spool/hold" -type f | wc -l)
    [ "$held" -ge "$N" ] && break
    sleep 0.2
  done
  [ "$held" -ge "$N" ] || { echo "postfix: only $held of $N messages on hold" >&2; exit 1; }
  base=$(arrivals "$key")
  t0=$(secs) c0=$(cpu_busy)
  postsuper -c "$PF/etc" -H ALL 2>/dev/null   # to the deferred queue ...
  postqueue -c "$PF/etc" -f                    # ... and from there to delivery at once
  wait_arrivals "$key" $((base + N))
  t1=$(secs)
  record "$key" "$t0" "$t1" "$c0"
}

run_mxsec() {  # workload
  local key=mx-$1.$R i base t0 t1 t_run user sys c0
  for ((i = 1; i <= N; i++)); do
    make_msg "$key-$i" "$(rcpt_for "$1" "$i")" |
      "$MXSEC" --config "$CONF" sendmail -odq -f bench@client.test "$(rcpt_for "$1" "$i")"
  done
  base=$(arrivals "$key")
  t0=$(secs) c0=$(cpu_busy)
  /usr/bin/time -f '%U %S' -o "$WORK/run.$1.cpu" ${QB_PERF:+perf record -q -g -o "$QB_PERF/perf.$1.data" --} "$MXSEC" --config "$CONF" queue run 2> "$WORK/run.$1.err" ||
    { tail -5 "$WORK/run.$1.err" >&2; exit 1; }
  t_run=$(secs)
  wait_arrivals "$key" $((base + N))
  t1=$(secs)
  record "$key" "$t0" "$t1" "$c0"
  # The sink's share: every message was accepted (250 after DATA) when the run returned; the rest
  # is the sink's own delivery into the Maildir.
  read -r user sys < "$WORK/run.$1.cpu"
  awk -v a="$t0" -v b="$t_run" -v c="$t1" -v u="$user" -v s="$sys" -v n="$N" \
    'BEGIN { printf "%-12s %8.2f s until the last 250 (queue run returned), %.2f s more for the sink; queue run CPU %.2f ms/msg\n",
             "", b - a, c - b, (u + s) * 1000 / n }' 
  [ "$("$MXSEC" --config "$CONF" queue list --json | wc -l)" = 0 ] || { echo "mxsec: messages left in its queue" >&2; exit 1; }
}

record() {  # key t0 t1 cpu_busy_at_t0
  local busy
  busy=$(awk -v a="$4" -v b="$(cpu_busy)" -v n="$N" 'BEGIN { printf "%.2f", (b - a) * 10 / n }')
  TIME[$1]=$(awk -v a="$2" -v b="$3" 'BEGIN { printf "%.2f", b - a }')
  RATE[$1]=$(awk -v n="$N" -v t="${TIME[$1]}" 'BEGIN { printf "%.1f", n / t }')
  check_tokens "$1"
  printf '%-12s %8s s %8s msg/s (release to the last arrival; every token once); machine CPU %s ms/msg\n' \
    "$1" "${TIME[$1]}" "${RATE[$1]}" "$busy"
}

echo "queue benchmark: $N messages of 2 KB, released at once, to Postfix smtpd over DANE (sink: $SINK); $(nproc) CPUs, $(date -u +%F)"
echo "Postfix $(postconf -h -d mail_version) (smtp_tls_connection_reuse = ${PF_TLS_REUSE:-yes}); mxsec $MXSEC"
{ echo ee.dane.test; for ((d = 1; d <= DOMAINS; d++)); do echo "b$d.dane.test"; done; } |
  xargs "$MXSEC" --config "$CONF" policy > /dev/null   # warms the resolver cache for both
for ((R = 1; R <= ROUNDS; R++)); do
  for w in one spread; do
    run_postfix "$w"
    run_mxsec "$w"
  done
done
label() { if [ "$1" = one ]; then echo "one domain (ee.dane.test)"; else echo "$DOMAINS domains (bK.dane.test)"; fi; }
ratio() { awk -v a="${RATE[mx-$1]}" -v b="${RATE[pf-$1]}" 'BEGIN { printf "%.2f", a / b }'; }
echo
printf '%-40s %12s %12s %8s\n' "workload" "Postfix" "mxsec" "ratio"
for w in one spread; do
  for ((R = 1; R <= ROUNDS; R++)); do
    l=$(label "$w"); [ "$ROUNDS" -gt 1 ] && l="$l, round $R"
    printf '%-40s %8s msg/s %6s msg/s %7.2fx\n' "$l" "${RATE[pf-$w.$R]}" "${RATE[mx-$w.$R]}" "$(ratio "$w.$R")"
  done
done
if [ "$ROUNDS" -gt 1 ]; then
  for w in one spread; do
    printf '%-40s median ratio %.2fx\n' "$(label "$w")" \
      "$(for ((R = 1; R <= ROUNDS; R++)); do ratio "$w.$R"; echo; done | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')"
  done
fi
echo "Postfix TLS sessions: $(grep -c 'Verified TLS connection established' "$PF/maillog" || true) verified," \
  "$(grep -Ec '(Untrusted|Anonymous|Trusted) TLS connection established' "$PF/maillog" || true) not DANE-verified;" \
  "delivered: $(grep -c 'status=sent' "$PF/maillog" || true)"
