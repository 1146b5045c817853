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
