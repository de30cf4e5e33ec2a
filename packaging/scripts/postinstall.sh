#!/bin/sh
# Runs after the files are unpacked (deb postinst "configure" with the old
# version as $2 on upgrade; rpm %post: 1 = install, 2 = upgrade).
# Never enables or starts the service on a first install: it must be
# configured first. On an upgrade, a running service is reloaded: the
# agent hands its client connections over to the new binary (README:
# "Restart, upgrade, reload"); one whose unit had no reload yet (an agent from before the
# hand-over) is restarted.
set -e

case "$1" in
configure) [ -z "$2" ] && first=yes || first=no ;;
1) first=yes ;;
2) first=no ;;
*) exit 0 ;; # abort-upgrade, abort-remove, ...: nothing to do
esac

chown redhaven:redhaven /var/lib/redhaven
chmod 0750 /var/lib/redhaven

systemd_running=no
can_reload=no
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
	systemd_running=yes
	# Asked before daemon-reload: does the running agent's unit (so the
	# running agent) know reload? An older agent would stop on SIGHUP.
	if [ "$(systemctl show -p CanReload --value redhaven.service 2>/dev/null)" = yes ]; then
		can_reload=yes
	fi
	systemctl daemon-reload >/dev/null 2>&1 || true
fi

if [ "$first" = yes ]; then
	echo "redhaven installed. Configure /etc/redhaven/redhaven.yaml (redis.sentinels, cluster.join, vip,"
	echo "and cluster.encrypt: the same 'redhaven keygen' key on every node),"
	echo "check it with 'redhaven check-config' and start it with 'systemctl enable --now redhaven'."
elif [ "$systemd_running" = yes ] && [ "$can_reload" = yes ]; then
	systemctl try-reload-or-restart redhaven.service >/dev/null 2>&1 || true
elif [ "$systemd_running" = yes ]; then
	systemctl try-restart redhaven.service >/dev/null 2>&1 || true
fi
exit 0
