#!/usr/bin/env bash
# The Debian packages that `make test` needs (one list, used by make test
# and .ci/run). Run as root it installs what is missing; otherwise it names
# the missing packages and fails, so that nobody gets a green run that
# silently skipped the tests needing them. REDHAVEN_SKIP_DEPS=1 skips the
# check (the tests then skip what is missing, with a message each).
set -euo pipefail
PACKAGES=(redis-server redis-sentinel redis-tools haproxy chromium fonts-liberation
  debootstrap rpm iproute2 iputils-ping procps curl ca-certificates make git tcpdump systemd prometheus
  keepalived openssl zsh) # openssl: make bench-tls makes its certificates with it; zsh: the completion test
SERVICES=(redis-server redis-sentinel haproxy prometheus keepalived)

[ "${REDHAVEN_SKIP_DEPS:-0}" = 1 ] && exit 0
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
[ ${#missing[@]} = 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "test-deps: missing Debian packages: ${missing[*]}" >&2
  echo "test-deps: run as root: apt-get install ${missing[*]}  (or REDHAVEN_SKIP_DEPS=1 to let those tests skip)" >&2
  exit 1
fi
echo "== installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The packages may start their own services; the tests start their own processes.
for svc in "${SERVICES[@]}"; do service "$svc" stop >/dev/null 2>&1 || true; done
