#!/bin/sh
# Runs after the files are removed (deb postrm: "remove"/"purge"/"upgrade"/...;
# rpm %postun: 0 = erase, 1 = upgrade).
#
# remove (and rpm erase) keeps the Raft data in /var/lib/redhaven and a
# changed config file. deb purge deletes /var/lib/redhaven and /etc/redhaven.
# The system user and group redhaven are kept, as Debian does for system
# users (files owned by them may remain); remove them by hand with
# `userdel redhaven` if wanted.
set -e

if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi

if [ "$1" = purge ]; then
	rm -rf /var/lib/redhaven
	rm -rf /etc/redhaven
fi
exit 0
