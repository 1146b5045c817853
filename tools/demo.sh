#!/bin/bash
# demo.sh - build mxsec and show its main job: the TLS policy decision for
# destination domains, against the loopback test bed (real nsd, unbound and
# nginx on 127.0.53.x / 127.0.54.1; no Internet needed). Run as root on a
# fresh Debian machine: it installs what is missing first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build >/dev/null
tb=/tmp/mxsec-demo
tools/testbed/testbed.sh start "$tb" >/dev/null
trap 'tools/testbed/testbed.sh stop "$tb" >/dev/null 2>&1 || true' EXIT
echo "== mxsec policy on the test bed (config: $tb/mxsec.conf)"
build/mxsec --config "$tb/mxsec.conf" policy \
  ee.dane.test ta.dane.test unusable.dane.test tlsafail.dane.test bogus.test \
  enforce.sts.test testing.sts.test insecure.test nullmx.dane.test
echo "== the same as JSON Lines, for scripts"
build/mxsec --config "$tb/mxsec.conf" policy --json ee.dane.test enforce.sts.test
