#!/bin/bash
# check-layers.sh - the source tree's structural rules, checked (run by
# tools/run-tests.sh, so by CI):
#
#  1. Layers. The library is one folder per layer, lowest first:
#       base < dns < policy < smtp < queue < report < serve < app
#     src/<layer>/ and include/mxsec/<layer>/ may include only headers of
#     their own layer or of a lower one; app (the mxsec program) may use all.
#     No source or public header lives outside a layer folder.
#  2. Headers are self-contained: each public header compiles on its own.
#  3. Comments stand alone: nothing in src, include, tests or tools cites a
#     document outside the repository (design notes, issue numbers).
#
# Prints one line per violation and exits 1 if there is any.
set -uo pipefail
cd "$(dirname "$0")/.."

layers=(base dns policy smtp queue report serve app)
declare -A rank
for i in "${!layers[@]}"; do rank[${layers[$i]}]=$i; done

bad=0
fail() { echo "check-layers: $*"; bad=1; }

# 1. Every file in a known layer; every include points down or sideways.
for f in src/*.cc src/*.h include/mxsec/*.h; do
  [ -e "$f" ] && fail "$f: not in a layer folder (${layers[*]})"
done
for f in $(find src include/mxsec -mindepth 2 -name '*.cc' -o -mindepth 2 -name '*.h' | sort); do
  case $f in
    src/*) layer=$(echo "$f" | cut -d/ -f2) ;;
    include/mxsec/*) layer=$(echo "$f" | cut -d/ -f3) ;;
  esac
  if [ -z "${rank[$layer]+x}" ]; then
    fail "$f: unknown layer folder '$layer'"
    continue
  fi
  while IFS=: read -r line inc; do
    used=$(echo "$inc" | sed -E 's|.*"mxsec/([a-z_]+)/.*|\1|')
    if [ -z "${rank[$used]+x}" ]; then
      fail "$f:$line: includes $inc: not a layer"
    elif [ "${rank[$used]}" -gt "${rank[$layer]}" ]; then
      fail "$f:$line: layer $layer includes $inc from higher layer $used"
    fi
  done < <(grep -n '^#include "mxsec/' "$f" | sed -E 's/^([0-9]+):#include (.*)/\1:\2/')
done

# 2. Each public header compiles alone (with the project's dependencies'
# include paths), so its includes are its own and its contract is complete.
cflags=$(pkg-config --cflags ldns gnutls libcurl sqlite3 libpq nlohmann_json 2>/dev/null)
for h in $(find include/mxsec -name '*.h' | sort); do
  if ! echo "#include \"${h#include/}\"" |
      ${CXX:-g++} -std=c++20 -fsyntax-only -Iinclude $cflags -x c++ - 2>/tmp/check-layers.$$; then
    fail "$h: does not compile on its own: $(head -3 /tmp/check-layers.$$ | tr '\n' ' ')"
  fi
done
rm -f /tmp/check-layers.$$

# 3. No citation of documents outside the repository.
while read -r hit; do
  fail "$hit: cites a document outside the repository"
done < <(grep -rnE 'DESIGN\.md|[Ii]ssue #?[0-9]|notes §|technical\.md' src include tests tools \
           --exclude=check-layers.sh)

[ $bad -eq 0 ] && echo "check-layers: ok (${#layers[@]} layers, headers self-contained, no outside citations)"
exit $bad
