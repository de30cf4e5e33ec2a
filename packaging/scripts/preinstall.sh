#!/bin/sh
# Runs before the files are unpacked, on install and on upgrade
# (deb preinst: "install"/"upgrade"; rpm %pre: 1/2).
# Creates the system user and group redhaven if they are missing.
set -e

if ! getent group redhaven >/dev/null 2>&1; then
	groupadd --system redhaven
fi
if ! getent passwd redhaven >/dev/null 2>&1; then
	nologin=/usr/sbin/nologin
	[ -x "$nologin" ] || nologin=/sbin/nologin
	useradd --system --gid redhaven --no-create-home \
		--home-dir /var/lib/redhaven --shell "$nologin" \
		--comment "redhaven agent" redhaven
fi
exit 0
