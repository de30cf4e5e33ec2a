#!/usr/bin/env bash
# Dependencies point one way (DESIGN.md): cmd -> node -> leaves. A leaf
# (proxy, proxy/topology, cluster, vip, webui) never imports another leaf or node.
set -euo pipefail
cd "$(dirname "$0")/.."
mod=$(go list -m)
leaves=(proxy proxy/topology cluster vip webui)
fail=0
for leaf in "${leaves[@]}"; do
  [ -d "$leaf" ] || continue
  ls "$leaf"/*.go >/dev/null 2>&1 || continue
  deps=$(go list -deps "./$leaf" | grep "^$mod/" || true)
  for other in node "${leaves[@]}"; do
    [ "$other" = "$leaf" ] && continue
    # proxy/topology is inside proxy's folder but is its own leaf
    if grep -qx "$mod/$other" <<<"$deps"; then
      echo "deps-check: $leaf imports $other (not allowed)"; fail=1
    fi
  done
done
[ $fail = 0 ] && echo "deps-check: ok"
exit $fail
