#!/usr/bin/env bash
# Builds the Docker images of the end-to-end tests without any image registry.
#
#   e2e/image.sh base            -> prints the base image tag
#   e2e/image.sh node DEB        -> prints the node image tag (base + DEB installed)
#   e2e/image.sh app DEB VERSION -> prints redhaven:VERSION, the image for
#                                   users (make image; packaging/docker-compose.yml)
#   e2e/image.sh systemd DEB     -> prints the systemd node image tag: a base
#                                   with systemd as PID 1 (/sbin/init) and DEB
#                                   installed (TestSystemdUnitVIP)
#
# base: debootstrap a minimal Debian bookworm with Redis and network tools from
# the same Debian mirror apt uses on this machine, then `docker import` it as
# redhaven-base:bookworm-<hash of the package list>. Skipped when that tag
# exists, so reruns take well under a second.
#
# systemd base: the same debootstrap with systemd and systemd-sysv added,
# tagged redhaven-systemd-base:bookworm-<hash of its package list>; the
# systemd node image installs DEB on it and boots /sbin/init.
#
# node: `docker build --network=none` of a two-line Dockerfile FROM the base
# that installs the .deb with dpkg -i (no network during the build). Tagged
# redhaven-node:<first 12 hex of the sha256 of the .deb's sha256 and the base
# tag>; skipped when it exists.
#
# Environment:
#   REDHAVEN_MIRROR   Debian mirror URL (default: read from apt's sources)
#   REDHAVEN_SUITE    Debian suite (default: bookworm)
#   TMPDIR            where the temporary root file system is made (/var/tmp)
#
# Must run as root (debootstrap). Everything temporary is removed on exit.
set -euo pipefail

SUITE="${REDHAVEN_SUITE:-bookworm}"
VARIANT=minbase
# Keep sorted: the tag hashes this list, so any change builds a new image.
INCLUDE="ca-certificates,haproxy,iproute2,iputils-ping,keepalived,procps,redis-sentinel,redis-server,redis-tools"
# The systemd base: Redis and network tools, and systemd as init (sorted).
SYSTEMD_INCLUDE="ca-certificates,iproute2,iputils-ping,procps,redis-sentinel,redis-server,redis-tools,systemd,systemd-sysv"
BASE_REPO=redhaven-base
NODE_REPO=redhaven-node
SYSTEMD_BASE_REPO=redhaven-systemd-base
SYSTEMD_NODE_REPO=redhaven-systemd-node

log() { printf 'image.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# mirror prints the Debian mirror of $SUITE that apt uses here: the first URI
# of a deb822 .sources stanza (or one-line sources.list entry) whose suites
# include exactly $SUITE.
mirror() {
	if [[ -n "${REDHAVEN_MIRROR:-}" ]]; then
		printf '%s\n' "$REDHAVEN_MIRROR"
		return
	fi
	local f m=""
	for f in /etc/apt/sources.list.d/*.sources; do
		[[ -f "$f" ]] || continue
		m=$(awk -v suite="$SUITE" '
			function flush() {
				if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") && uris != "" && found == "") {
					split(uris, u, " "); found = u[1]
				}
				types = ""; uris = ""; suites = ""
			}
			/^[ \t]*$/ { flush(); next }
			/^[ \t]*#/ { next }
			tolower($1) == "types:" { $1 = ""; types = $0 }
			tolower($1) == "uris:" { $1 = ""; sub(/^ +/, ""); uris = $0 }
			tolower($1) == "suites:" { $1 = ""; suites = $0 }
			END { flush(); if (found != "") print found }
		' "$f")
		[[ -n "$m" ]] && break
	done
	if [[ -z "$m" && -f /etc/apt/sources.list ]]; then
		# deb [options] URI SUITE COMPONENTS...
		m=$(awk -v suite="$SUITE" '
			$1 == "deb" {
				i = 2
				if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
				if ($(i+1) == suite) { print $i; exit }
			}' /etc/apt/sources.list)
	fi
	[[ -n "$m" ]] || die "no apt source for suite $SUITE found in /etc/apt; set REDHAVEN_MIRROR"
	printf '%s\n' "${m%/}"
}

# rootfs_tag REPO INCLUDE: the tag of a debootstrapped image of INCLUDE.
rootfs_tag() {
	local h
	h=$(printf '%s|%s|%s' "$SUITE" "$VARIANT" "$2" | sha256sum | cut -c1-12)
	printf '%s:%s-%s\n' "$1" "$SUITE" "$h"
}

base_tag() { rootfs_tag "$BASE_REPO" "$INCLUDE"; }

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

build_base() { build_rootfs "$BASE_REPO" "$INCLUDE"; }

# build_rootfs REPO INCLUDE: debootstrap $SUITE with INCLUDE and import it
# as REPO:SUITE-<hash>, unless that tag exists; prints the tag.
build_rootfs() {
	local repo=$1 include=$2 tag
	tag=$(rootfs_tag "$repo" "$include")
	if have_image "$tag"; then
		log "base image $tag exists (cached)"
		printf '%s\n' "$tag"
		return
	fi
	# Tests of several packages may ask at the same time: one debootstrap.
	exec 9>"${TMPDIR:-/var/tmp}/$repo-image.lock"
	flock 9
	if have_image "$tag"; then
		exec 9>&-
		log "base image $tag was built meanwhile"
		printf '%s\n' "$tag"
		return
	fi
	[[ $(id -u) -eq 0 ]] || die "debootstrap needs root"
	command -v debootstrap >/dev/null || die "debootstrap missing (apt-get install debootstrap)"
	local m root start
	m=$(mirror)
	root=$(mktemp -d "${TMPDIR:-/var/tmp}/redhaven-rootfs.XXXXXX")
	# shellcheck disable=SC2064 # expand now: the trap must remove this root.
	trap "rm -rf --one-file-system '$root'" EXIT
	log "debootstrap $SUITE ($VARIANT, +$include) from $m into $root"
	start=$(date +%s)
	debootstrap --variant="$VARIANT" --include="$include" "$SUITE" "$root" "$m" >"$root.log" 2>&1 || {
		tail -n 30 "$root.log" >&2
		rm -f "$root.log"
		die "debootstrap failed"
	}
	rm -f "$root.log"
	log "debootstrap took $(($(date +%s) - start))s"
	# Shrink: apt lists and caches are of no use in a test image without network.
	rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
		"$root"/var/cache/apt/*.bin "$root"/tmp/* "$root"/var/log/*.log
	# Docker mounts its own resolv.conf and hostname into each container.
	: >"$root/etc/resolv.conf"
	tar --numeric-owner --xattrs -C "$root" -c . |
		docker import \
			--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
			--change 'ENV LANG=C.UTF-8' \
			--change 'CMD ["/bin/bash"]' \
			--message "redhaven e2e $repo: debootstrap $SUITE $VARIANT +$include" \
			- "$tag" >/dev/null
	rm -rf --one-file-system "$root"
	trap - EXIT
	exec 9>&-
	log "imported $tag in $(($(date +%s) - start))s total"
	printf '%s\n' "$tag"
}

build_node() {
	local deb=${1:-}
	[[ -f "$deb" ]] || die "usage: image.sh node path/to/redhaven_VERSION_ARCH.deb (got '${deb}')"
	local base tag ctx
	base=$(build_base)
	# the base's tag is part of the hash: a new package list, a new node image
	tag="$NODE_REPO:$({ sha256sum <"$deb"; printf '%s\n' "$base"; } | sha256sum | cut -c1-12)"
	if have_image "$tag"; then
		log "node image $tag exists (cached)"
		printf '%s\n' "$tag"
		return
	fi
	ctx=$(mktemp -d "${TMPDIR:-/var/tmp}/redhaven-node.XXXXXX")
	# shellcheck disable=SC2064
	trap "rm -rf '$ctx'" EXIT
	cp "$deb" "$ctx/redhaven.deb"
	cat >"$ctx/Dockerfile" <<EOF
FROM $base
COPY redhaven.deb /tmp/redhaven.deb
RUN dpkg -i /tmp/redhaven.deb && rm /tmp/redhaven.deb && redhaven version
EOF
	local out
	out=$(DOCKER_BUILDKIT=0 docker build --network=none --rm --force-rm -t "$tag" "$ctx" 2>&1) || {
		printf '%s\n' "$out" >&2
		die "docker build of $tag failed"
	}
	rm -rf "$ctx"
	trap - EXIT
	log "built $tag from $deb"
	printf '%s\n' "$tag"
}

# build_app: the image for users: the .deb installed on the base, the agent
# as entrypoint with the packaged config path, tagged redhaven:VERSION and
# redhaven:latest. It runs as root in the container (the VIP needs
# NET_ADMIN and NET_RAW, given with --cap-add).
build_app() {
	local deb=${1:-} version=${2:-}
	[[ -f "$deb" && -n "$version" ]] || die "usage: image.sh app path/to/redhaven_VERSION_ARCH.deb VERSION"
	local base ctx tag="redhaven:${version//+/-}" # docker tags have no '+' 
	base=$(build_base)
	ctx=$(mktemp -d "${TMPDIR:-/var/tmp}/redhaven-app.XXXXXX")
	# shellcheck disable=SC2064
	trap "rm -rf '$ctx'" EXIT
	cp "$deb" "$ctx/redhaven.deb"
	cat >"$ctx/Dockerfile" <<EOF
FROM $base
COPY redhaven.deb /tmp/redhaven.deb
RUN dpkg -i /tmp/redhaven.deb && rm /tmp/redhaven.deb && redhaven version && mkdir -p /run/redhaven
LABEL org.opencontainers.image.title=redhaven org.opencontainers.image.version=$version
VOLUME /var/lib/redhaven
ENTRYPOINT ["/usr/bin/redhaven"]
CMD ["agent", "-c", "/etc/redhaven/redhaven.yaml"]
EOF
	local out
	out=$(DOCKER_BUILDKIT=0 docker build --network=none --rm --force-rm -t "$tag" -t redhaven:latest "$ctx" 2>&1) || {
		printf '%s\n' "$out" >&2
		die "docker build of $tag failed"
	}
	rm -rf "$ctx"
	trap - EXIT
	log "built $tag (and redhaven:latest) from $deb"
	printf '%s\n' "$tag"
}

# build_systemd: the .deb installed on the systemd base; the container's
# PID 1 is systemd (/sbin/init), stopped with SIGRTMIN+3 as systemd wants.
# Debian's redis-server and redis-sentinel units are masked: the test runs
# its own Redis and Sentinel with its own configs.
build_systemd() {
	local deb=${1:-}
	[[ -f "$deb" ]] || die "usage: image.sh systemd path/to/redhaven_VERSION_ARCH.deb (got '${deb}')"
	local base tag ctx
	base=$(build_rootfs "$SYSTEMD_BASE_REPO" "$SYSTEMD_INCLUDE")
	tag="$SYSTEMD_NODE_REPO:$({ sha256sum <"$deb"; printf '%s\n' "$base"; } | sha256sum | cut -c1-12)"
	if have_image "$tag"; then
		log "systemd node image $tag exists (cached)"
		printf '%s\n' "$tag"
		return
	fi
	ctx=$(mktemp -d "${TMPDIR:-/var/tmp}/redhaven-systemd.XXXXXX")
	# shellcheck disable=SC2064
	trap "rm -rf '$ctx'" EXIT
	cp "$deb" "$ctx/redhaven.deb"
	cat >"$ctx/Dockerfile" <<EOF
FROM $base
COPY redhaven.deb /tmp/redhaven.deb
RUN dpkg -i /tmp/redhaven.deb && rm /tmp/redhaven.deb && redhaven version && \\
	systemctl mask redis-server.service redis-sentinel.service
ENV container=docker
STOPSIGNAL SIGRTMIN+3
CMD ["/sbin/init"]
EOF
	local out
	out=$(DOCKER_BUILDKIT=0 docker build --network=none --rm --force-rm -t "$tag" "$ctx" 2>&1) || {
		printf '%s\n' "$out" >&2
		die "docker build of $tag failed"
	}
	rm -rf "$ctx"
	trap - EXIT
	log "built $tag from $deb"
	printf '%s\n' "$tag"
}

case "${1:-}" in
base) build_base ;;
node) build_node "${2:-}" ;;
app) build_app "${2:-}" "${3:-}" ;;
systemd) build_systemd "${2:-}" ;;
mirror) mirror ;;
base-tag) base_tag ;;
*)
	echo "usage: $0 base | node DEB | app DEB VERSION | systemd DEB | mirror | base-tag" >&2
	exit 2
	;;
esac
