#!/bin/bash
# setup.sh - install the Debian packages mxsec needs to build, test and run
# its loopback test bed. Run as root on Debian bookworm (or newer).
#
# Postfix is preseeded to "No configuration" so that installing it never
# starts or configures a system mail server: the tests run their own.
set -euo pipefail

packages=(
  # build
  build-essential meson ninja-build pkg-config cmake
  libldns-dev libgnutls28-dev libcurl4-gnutls-dev nlohmann-json3-dev doctest-dev libsqlite3-dev libpq-dev
  zlib1g-dev
  # the linker that lays out mxsec's code by tools/link_order.txt (meson.build; without it, GNU ld)
  lld
  # fuzzing (tools/fuzz.sh): clang with libFuzzer and the sanitizer runtimes
  clang-14 libfuzzer-14-dev libclang-rt-14-dev
  # test bed: DNS, DNSSEC tools, HTTPS, certificates
  nsd unbound ldnsutils knot-dnsutils nginx-light gnutls-bin openssl ca-certificates curl iproute2
  # shared state of a fleet (state_backend = postgresql://): a server on loopback
  postgresql
  # SMTP peers for the delivery tests, and the comparison tools of tools/bench
  postfix swaks python3 python3-aiosmtpd msmtp postfix-mta-sts-resolver
  # real programs that submit through sendmail(1) (tests/integration/test_sendmail.py)
  bsd-mailx
  # measuring (time: tools/bench; valgrind and linux-perf: profiling one `mxsec deliver`)
  time valgrind linux-perf
)

if [ "$(id -u)" != 0 ]; then
  echo "setup.sh: run as root (apt-get install)" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Debian starts the daemons it installs where an init system runs; the test
# bed needs their ports on its own addresses only, and the system copies
# would fight over nothing, but stop them so that no stray server answers.
for svc in nsd unbound nginx postfix postfix-mta-sts-resolver; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
    systemctl stop "$svc" || true
  fi
done
echo "setup.sh: all packages present"
