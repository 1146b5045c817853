#!/bin/bash
# link_order.sh - writes tools/link_order.txt, the functions of the mxsec
# program that a delivery runs, for the linker to place side by side
# (meson.build: lld's --symbol-ordering-file, each function in a section of
# its own).
#
#   tools/bench/link_order.sh           (run as root; needs valgrind and the test bed)
#   MXSEC=build-x/mxsec tools/bench/link_order.sh   (an existing build; default build-release)
#
# Why: `mxsec deliver` runs once per message and its peak RSS is mostly
# pages of code. The kernel maps a file page fault's neighbours too (fault
# around, 64 KiB), so the ~500 functions one delivery runs, spread over the
# whole 3 MiB of text, made 2.5 MiB resident; placed together they fill a
# fraction of that. The list is a profile: `mxsec deliver` under callgrind
# on the test bed, DANE-EE (ee.dane.test) and MTA-STS enforce
# (enforce.sts.test), every function of the program's own text that ran
# (libstdc++'s included: it is linked in), mangled, sorted. A name the
# program no longer has is skipped by the linker, a new function is placed
# after the listed ones: a stale list costs memory, never correctness. Run
# it again after large changes to the delivery path and commit the result.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tools/bench/lib.sh
bench_build_mxsec
command -v valgrind >/dev/null || { echo "valgrind missing: run tools/setup.sh" >&2; exit 1; }
bench_lock_and_dirs
bench_start_testbed

printf 'From: bench@client.test\nTo: user@example\nSubject: link order\n\nhello\n' > "$WORK/msg.eml"
n=0
for rcpt in user@ee.dane.test user@enforce.sts.test; do
  n=$((n + 1))
  valgrind --tool=callgrind --demangle=no --callgrind-out-file="$WORK/cg.$n" "$MXSEC" --config "$TB_CONF" \
    -o "state_dir=$WORK/state" deliver -f bench@client.test -- "$rcpt" < "$WORK/msg.eml" > "$WORK/out.$n" 2>&1 ||
    { cat "$WORK/out.$n" >&2; echo "link_order.sh: the delivery to $rcpt failed" >&2; exit 1; }
done

# callgrind names a function once per object ("fn=(id) name", later "fn=(id)"); keep those of the
# program's own object whose name is a defined text symbol of it (suffixes such as 'N, recursion
# depths, are callgrind's own).
nm --defined-only "$MXSEC" | awk '$2 ~ /^[tTwW]$/ { print $3 }' | sort -u > "$WORK/symbols"
/usr/bin/python3 - "$MXSEC" "$WORK"/cg.* > "$WORK/ran" <<'EOF'
import re, sys
program, ran = sys.argv[1], set()
for path in sys.argv[2:]:
    objects, names, current = {}, {}, None
    for line in open(path, errors="replace"):
        m = re.match(r"^(c?ob)=\((\d+)\)(?: (.*))?$", line.rstrip("\n"))
        if m:
            if m.group(3):
                objects[m.group(2)] = m.group(3)
            if m.group(1) == "ob":
                current = objects[m.group(2)]
            continue
        m = re.match(r"^(c?fn)=\((\d+)\)(?: (.*))?$", line.rstrip("\n"))
        if m:
            if m.group(3):
                names[m.group(2)] = re.sub(r"'\d+$", "", m.group(3))
            if m.group(1) == "fn" and current == program:
                ran.add(names[m.group(2)])
for name in sorted(ran):
    print(name)
EOF
sort -u "$WORK/ran" | comm -12 - "$WORK/symbols" > tools/link_order.txt
echo "tools/link_order.txt: $(wc -l < tools/link_order.txt) functions"
