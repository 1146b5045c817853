#!/bin/bash
# demo.sh - build mxsec and show its main job against the loopback test bed
# (real nsd, unbound, nginx, Postfix smtpd and scripted SMTP servers on
# 127.0.53-56.x; no Internet needed): the TLS policy decision per destination
# domain, then delivery that enforces it - a DANE domain gets the message over
# verified TLS, a domain whose MX hides STARTTLS gets nothing in clear text
# (the message is deferred, exit 75). Run as root on a fresh Debian machine:
# it installs what is missing first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build >/dev/null
tb=/tmp/mxsec-demo
# The test bed's addresses are fixed: one test bed at a time on a machine.
exec 9>/tmp/mxsec-testbed.lock
flock 9
tools/testbed/testbed.sh start "$tb" >/dev/null
trap 'tools/testbed/testbed.sh stop "$tb" >/dev/null 2>&1 || true' EXIT
echo "== mxsec policy on the test bed (config: $tb/mxsec.conf)"
build/mxsec --config "$tb/mxsec.conf" policy \
  ee.dane.test ta.dane.test unusable.dane.test tlsafail.dane.test bogus.test \
  enforce.sts.test testing.sts.test insecure.test nullmx.dane.test
echo "== the same as JSON Lines, for scripts"
build/mxsec --config "$tb/mxsec.conf" policy --json ee.dane.test enforce.sts.test
msg() {
  printf 'From: demo@client.test\nTo: %s\nSubject: mxsec demo\n\nHello over TLS.\n' "$1"
}
echo "== mxsec deliver to a DANE domain: delivered over TLS verified by DANE-EE"
msg user@ee.dane.test | build/mxsec --config "$tb/mxsec.conf" -o "state_dir=$tb/demo-state" \
  deliver -f demo@client.test -- user@ee.dane.test && echo "exit status 0: delivered"
echo "== mxsec deliver to a DANE domain whose MX does not offer STARTTLS (a downgrade attack)"
rc=0
msg user@strip.dane.test | build/mxsec --config "$tb/mxsec.conf" -o "state_dir=$tb/demo-state" \
  deliver -f demo@client.test -- user@strip.dane.test || rc=$?
echo "exit status $rc: deferred (75), nothing was sent in clear text"
[ "$rc" = 75 ]
