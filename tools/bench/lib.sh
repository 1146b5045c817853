# lib.sh - what the benchmark scripts share; sourced, never run:
#
#   . tools/bench/lib.sh             (from the top of the project; every script cds there first)
#   bench_build_mxsec                MXSEC = absolute path of build-release/mxsec (configured and built if
#                                    needed), or of $MXSEC when the caller set it (an existing build)
#   bench_lock_and_dirs              takes /tmp/mxsec-testbed.lock (one test bed at a time on a machine: its
#                                    addresses are fixed) on fd 9 until the script exits; makes TB (a fresh
#                                    /tmp/mxsec-tb.XXXXXX) and WORK (/tmp/mxsec-bench.XXXXXX); on exit, the
#                                    hooks of bench_on_exit run, the test bed is stopped and both directories
#                                    are removed, whatever ended the script
#   bench_on_exit FUNCTION           one more cleanup step, run before the test bed stops (e.g. a server)
#   bench_start_testbed [BULK]       starts the test bed in TB (BULK benchmark domains, see testbed.sh) and
#                                    sources its env.sh (TB_CONF, TB_MAILDIR, ...); on failure prints the
#                                    end of the test bed's output and exits
#   bench_msmtprc FILE               msmtp's configuration (mode 0600) for the fair "just send it over TLS"
#                                    alternative: the test bed's Postfix for ee.dane.test (127.0.55.1:25),
#                                    STARTTLS with the certificate checked against the test bed CA for the
#                                    name mx.ee.dane.test, log WORK/msmtp.log, from bench@client.test
#   bench_cgroup NAME                CG = a cgroup of the script's own for CPU accounting (cgroup v2, or v1
#                                    cpuacct), NAME-PID under the hierarchy's root, removed on exit; empty
#                                    when neither can be made (CPU is then reported as n/a)
#   bench_per_process M PREFIX COMMAND...
#                                    runs COMMAND M times, one process per message as pipe(8) runs it, 4 at
#                                    a time, message i on stdin (WORK/PREFIXi.eml) for i from BENCH_FROM
#                                    (default 1), output discarded; in CG when there is one. Sets
#                                    BENCH_ELAPSED (wall seconds, 2 decimals), BENCH_CPU_USEC (user +
#                                    system of the M, microseconds, or empty), BENCH_CPU (the same in ms per
#                                    process, 2 decimals, or n/a: includes the per-message sh and
#                                    /usr/bin/time wrappers, the same for every command) and BENCH_PEAK_RSS
#                                    (KiB, the largest of every PREFIX process run so far)

bench_build_mxsec() {
  if [ -z "${MXSEC:-}" ]; then
    [ -f build-release/build.ninja ] || meson setup build-release -Dbuildtype=release >/dev/null
    ninja -C build-release mxsec >/dev/null
    MXSEC=build-release/mxsec
  fi
  MXSEC=$(readlink -f "$MXSEC")
  [ -x "$MXSEC" ] || { echo "no mxsec binary at $MXSEC" >&2; exit 1; }
}

BENCH_EXIT_HOOKS=()
bench_on_exit() { BENCH_EXIT_HOOKS+=("$1"); }

bench_cleanup() {
  local h
  for h in "${BENCH_EXIT_HOOKS[@]}"; do "$h" || true; done
  if [ -n "${TB:-}" ]; then
    tools/testbed/testbed.sh stop "$TB" >/dev/null 2>&1 || true
    rm -rf "$TB"
  fi
  if [ -n "${WORK:-}" ]; then rm -rf "$WORK"; fi
  return 0
}

bench_lock_and_dirs() {
  exec 9>/tmp/mxsec-testbed.lock
  flock 9
  TB=$(mktemp -d /tmp/mxsec-tb.XXXXXX)
  WORK=$(mktemp -d /tmp/mxsec-bench.XXXXXX)
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM   # then the EXIT trap cleans up
}

bench_start_testbed() {
  TB_BULK=${1:-0} tools/testbed/testbed.sh start "$TB" > "$WORK/testbed.out" 2>&1 ||
    { tail -30 "$WORK/testbed.out" >&2; echo "the test bed did not start" >&2; exit 1; }
  . "$TB/env.sh"
}

bench_msmtprc() {
  cat > "$1" <<EOF
defaults
tls on
tls_starttls on
tls_trust_file $TB/pki/ca.pem
tls_host_override mx.ee.dane.test
logfile $WORK/msmtp.log
account bench
host 127.0.55.1
port 25
from bench@client.test
auth off
account default : bench
EOF
  chmod 600 "$1"
}

# CPU time from a cgroup (cgroup v2 cpu.stat usage_usec, or v1 cpuacct.usage): exact, where rusage of a
# short process is counted in whole ticks (a 10 ms process).
CG=""
bench_cgroup() {
  local base
  CG=""
  for base in /sys/fs/cgroup /sys/fs/cgroup/cpuacct; do
    [ -f "$base/cgroup.controllers" ] || [ -f "$base/cpuacct.usage" ] || continue
    CG=$base/$1-$$
    mkdir "$CG" 2>/dev/null && break
    CG=""
  done
  bench_on_exit bench_leave_cgroup
}
bench_leave_cgroup() { [ -n "$CG" ] && [ -d "$CG" ] && rmdir "$CG" 2>/dev/null; return 0; }
bench_cg_usec() {
  if [ -z "$CG" ]; then echo 0
  elif [ -f "$CG/cpuacct.usage" ]; then echo $(( $(cat "$CG/cpuacct.usage") / 1000 ))
  else awk '$1 == "usage_usec" { print $2 }' "$CG/cpu.stat"
  fi
}

bench_per_process() {  # M PREFIX COMMAND...
  local m=$1 prefix=$2; shift 2
  local t0 t1 u0 u1 from=${BENCH_FROM:-1}
  t0=$(date +%s.%N)
  u0=$(bench_cg_usec)
  (
    [ -n "$CG" ] && echo "$BASHPID" > "$CG/cgroup.procs"
    seq "$from" $((from + m - 1)) | xargs -P 4 -I{} sh -c \
      'w=$0; p=$1; i=$2; shift 2; /usr/bin/time -f %M -o "$w/rss.$p.$i" "$@" < "$w/$p$i.eml" > /dev/null 2>&1' \
      "$WORK" "$prefix" {} "$@"
  )
  u1=$(bench_cg_usec)
  t1=$(date +%s.%N)
  BENCH_ELAPSED=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
  BENCH_CPU_USEC=$((u1 > u0 ? u1 - u0 : 0)); [ "$BENCH_CPU_USEC" -gt 0 ] || BENCH_CPU_USEC=""
  BENCH_CPU=$(awk -v a="$u0" -v b="$u1" -v n="$m" 'BEGIN { if (b > a) printf "%.2f", (b - a) / 1000 / n; else print "n/a" }')
  BENCH_PEAK_RSS=$(cat "$WORK"/rss."$prefix".* | sort -n | tail -1)
}
