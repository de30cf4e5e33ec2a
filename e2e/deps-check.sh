#!/usr/bin/env bash
# Dependencies point one way (DESIGN.md): cmd -> node -> leaves. A leaf
# (proxy, proxy/topology, cluster, vip, webui) never imports another leaf or
# node, neither in its code nor in its tests (tests share helpers through
# e2e/testutil and e2e/redistest, which import no part of redhaven).
set -euo pipefail
cd "$(dirname "$0")/.."
mod=$(go list -m)
leaves=(proxy proxy/topology cluster vip webui)
helpers=(e2e/testutil e2e/redistest)
fail=0
forbidden() { # $1: importer, $2..: deps list on stdin
  local who=$1 deps=$2; shift 2
  for other in "$@"; do
    [ "$other" = "$who" ] && continue
    if grep -qx "$mod/$other" <<<"$deps"; then
      echo "deps-check: $who imports $other (not allowed)"; fail=1
    fi
  done
}
for leaf in "${leaves[@]}"; do
  [ -d "$leaf" ] || continue
  ls "$leaf"/*.go >/dev/null 2>&1 || continue
  # -test: the package's own tests and their imports count too; drop the
  # leaf's own test variants ("pkg [pkg.test]") before comparing.
  deps=$(go list -deps -test "./$leaf" | sed 's/ \[.*\]$//' | grep "^$mod/" | sort -u || true)
  forbidden "$leaf" "$deps" node "${leaves[@]}"
done
for h in "${helpers[@]}"; do
  [ -d "$h" ] || continue
  deps=$(go list -deps "./$h" | grep "^$mod/" || true)
  forbidden "$h" "$deps" node "${leaves[@]}"
done
[ $fail = 0 ] && echo "deps-check: ok"
exit $fail
