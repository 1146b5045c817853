#!/bin/bash
# serve_bench.sh - socketmap lookups per second and latency of `mxsec serve`,
# side by side with postfix-mta-sts-resolver's mta-sts-daemon (the Debian
# socketmap server an administrator would otherwise give Postfix for
# MTA-STS), in one run, on the loopback test bed.
#
#   tools/bench/serve_bench.sh [N] [SECONDS] [CLIENTS]   (defaults 1000 10 100; run as root)
#   MXSEC_BUILD=DIR   meson build directory to use (default build-release, built if missing)
#
# Starts a test bed with N MTA-STS enforce domains (bK.sts.test), both
# servers (mxsec serve on 127.0.57.2:18461, mta-sts-daemon on 127.0.57.3:18462,
# each with the same N domains), warms both caches (every domain asked until
# it is answered "OK secure"), then runs tools/bench/socketmap_load.py
# against each in turn: CLIENTS persistent connections, one request
# outstanding per connection (as Postfix's smtp processes do), SECONDS each,
# every reply checked. Prints lookups/s, p50/p90/p99 latency and the peak RSS
# of each server, and the ratios.
#
# mta-sts-daemon uses the system resolver and trust store: it runs in a
# private mount namespace whose /etc/resolv.conf names the test bed's
# unbound, with SSL_CERT_FILE pointing at the test bed's CA (as in
# policy_bench.sh); its cache_grace is raised so that no warm answer waits for
# DNS. Both servers and the load generator share the machine's CPUs.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-1000}
SECONDS_EACH=${2:-10}
CLIENTS=${3:-100}
BUILD=${MXSEC_BUILD:-build-release}
MXSEC_ADDR=127.0.57.2 MXSEC_PORT=18461
STS_ADDR=127.0.57.3 STS_PORT=18462

command -v mta-sts-daemon >/dev/null || { echo "mta-sts-daemon missing: run tools/setup.sh" >&2; exit 1; }
[ -f "$BUILD/build.ninja" ] || meson setup "$BUILD" -Dbuildtype=release >/dev/null
ninja -C "$BUILD" mxsec >/dev/null
MXSEC=$PWD/$BUILD/mxsec

exec 9>/tmp/mxsec-testbed.lock
flock 9   # one test bed at a time on a machine: its addresses are fixed
TB=$(mktemp -d /tmp/mxsec-tb.XXXXXX)
WORK=$(mktemp -d /tmp/mxsec-serve-bench.XXXXXX)
SERVE_PID='' STS_PID=''
cleanup() {
  [ -n "$SERVE_PID" ] && kill "$SERVE_PID" 2>/dev/null && wait "$SERVE_PID" 2>/dev/null
  [ -n "$STS_PID" ] && kill "$STS_PID" 2>/dev/null && wait "$STS_PID" 2>/dev/null
  tools/testbed/testbed.sh stop "$TB" >/dev/null 2>&1 || true
  rm -rf "$TB" "$WORK"
}
trap cleanup EXIT

TB_BULK=$N tools/testbed/testbed.sh start "$TB" >/dev/null 2>"$WORK/testbed.err" ||
  { cat "$WORK/testbed.err" >&2; exit 1; }
for ((i = 1; i <= N; i++)); do echo "b$i.sts.test"; done > "$WORK/domains"
printf 'nameserver 127.0.53.2\noptions edns0 trust-ad\n' > "$WORK/resolv.conf"
cat > "$WORK/mta-sts-daemon.yml" <<EOF
host: $STS_ADDR
port: $STS_PORT
reuse_port: true
shutdown_timeout: 5
cache_grace: 86400
cache:
  type: internal
  options:
    cache_size: $((N * 2 + 100))
default_zone:
  strict_testing: false
  timeout: 4
EOF

"$MXSEC" --config "$TB/mxsec.conf" -o "state_dir=$WORK/state" serve \
  --listen "inet:$MXSEC_ADDR:$MXSEC_PORT" 2>"$WORK/serve.log" &
SERVE_PID=$!
unshare -m sh -c 'mount --bind "$1" /etc/resolv.conf && SSL_CERT_FILE="$2" exec mta-sts-daemon -c "$3" -v warn' \
  sh "$WORK/resolv.conf" "$TB/pki/ca.pem" "$WORK/mta-sts-daemon.yml" 2>"$WORK/sts.log" &
STS_PID=$!
wait_port() {  # addr port name
  local i
  for ((i = 0; i < 100; i++)); do
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "$3 does not listen on $1:$2" >&2
  exit 1
}
wait_port "$MXSEC_ADDR" "$MXSEC_PORT" "mxsec serve"
wait_port "$STS_ADDR" "$STS_PORT" mta-sts-daemon

load() {  # name server expect [extra args]
  local name=$1 server=$2 expect=$3; shift 3
  /usr/bin/python3 tools/bench/socketmap_load.py --server "$server" --domains "$WORK/domains" \
    --clients "$CLIENTS" --expect "$expect" "$@"
}
# Warm both caches: every domain must get its enforce policy ("OK secure")
for s in "mxsec inet:$MXSEC_ADDR:$MXSEC_PORT" "mta-sts-daemon inet:$STS_ADDR:$STS_PORT"; do
  set -- $s
  out=$(load "$1" "$2" "OK secure" --warm --seconds 300) ||
    { echo "$1: warm-up incomplete: $out" >&2; exit 1; }
  echo "warm-up $1: $out"
done

rss() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }
load mxsec "inet:$MXSEC_ADDR:$MXSEC_PORT" "OK secure match=" --seconds "$SECONDS_EACH" > "$WORK/mxsec.json" ||
  { echo "mxsec run failed: $(cat "$WORK/mxsec.json")" >&2; exit 1; }
load mta-sts-daemon "inet:$STS_ADDR:$STS_PORT" "OK secure match=" --seconds "$SECONDS_EACH" > "$WORK/sts.json" ||
  { echo "mta-sts-daemon run failed: $(cat "$WORK/sts.json")" >&2; exit 1; }
RSS_MXSEC=$(rss "$SERVE_PID")
RSS_STS=$(rss "$STS_PID")

echo "socketmap benchmark: $N MTA-STS enforce domains, warm caches, $CLIENTS persistent clients," \
  "${SECONDS_EACH}s per server, $(nproc) CPUs shared by servers and load generator, $(date -u +%F)"
echo "example answers:"
printf '  %-15s %s\n' mxsec "$(load x "inet:$MXSEC_ADDR:$MXSEC_PORT" "" --warm --seconds 10 2>/dev/null |
  /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["example"])')"
printf '  %-15s %s\n' mta-sts-daemon "$(load x "inet:$STS_ADDR:$STS_PORT" "" --warm --seconds 10 2>/dev/null |
  /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["example"])')"
/usr/bin/python3 - "$WORK/mxsec.json" "$WORK/sts.json" "$RSS_MXSEC" "$RSS_STS" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
s = json.load(open(sys.argv[2]))
rows = [("mxsec serve", m, sys.argv[3]), ("mta-sts-daemon", s, sys.argv[4])]
print("%-16s %10s %9s %9s %9s %9s %8s %12s" % ("server", "lookups/s", "p50 ms", "p90 ms", "p99 ms", "max ms",
                                             "errors", "peak RSS KiB"))
for name, r, rss in rows:
    print("%-16s %10d %9.3f %9.3f %9.3f %9.3f %8d %12s" % (name, r["rps"], r["p50_ms"], r["p90_ms"], r["p99_ms"],
                                                          r["max_ms"], r["errors"], rss))
print("ratio mxsec / mta-sts-daemon: lookups/s %.2fx, p50 %.2fx, p99 %.2fx (latency: lower is better)"
      % (m["rps"] / s["rps"], m["p50_ms"] / s["p50_ms"], m["p99_ms"] / s["p99_ms"]))
EOF
