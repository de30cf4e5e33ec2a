#!/bin/sh
# Runs before the files are removed (deb prerm: "remove"/"upgrade"/...;
# rpm %preun: 0 = erase, 1 = upgrade). Stops and disables the service on
# removal only; an upgrade restarts it in postinstall instead.
set -e

case "$1" in
remove | 0) ;;
*) exit 0 ;;
esac

if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
	systemctl stop redhaven.service >/dev/null 2>&1 || true
fi
if command -v systemctl >/dev/null 2>&1; then
	systemctl --no-reload disable redhaven.service >/dev/null 2>&1 || true
fi
exit 0
