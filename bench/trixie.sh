#!/bin/bash
# Run the swarm benchmark with Debian trixie's programs: bench/trixie.sh [bench.swarm options]
#
# The package targets trixie, this host may run another release. The benchmark then runs
# inside a trixie root (debootstrap, cached in $BOOTTORRENT_CACHE/bench-trixie and made
# again when its recipe changes) holding what the .deb pulls in on trixie (its Depends,
# read from packaging/debian/control, and both seed engines) plus the clients' tools:
# python3 and every library of the daemon, libtorrent, transmission, aria2c, dnsmasq,
# opentracker, curl, udpcast are trixie's. The repository is bind-mounted at its own
# path, so results written under it stay (--json bench/results/...). The root's services
# never start (policy-rc.d), and every mount lives in a mount namespace of this run.
#
#   BOOTTORRENT_MIRROR  archive (default http://deb.debian.org/debian)
#   BOOTTORRENT_CACHE   where the root lives (default /var/cache/boottorrent)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MIRROR=${BOOTTORRENT_MIRROR:-http://deb.debian.org/debian}
CACHE=${BOOTTORRENT_CACHE:-/var/cache/boottorrent}
ROOT=$CACHE/bench-trixie
# The daemon's run-time dependencies on trixie, and what the benchmark adds.
DEPENDS=$(sed -n '/^Package: boottorrent$/,/^$/{/^Depends:/,/^[A-Z]/{/^ /p}}' \
    "$REPO/packaging/debian/control" | tr -d ' ,' | grep -v '^\$' | sed 's/|.*//')
EXTRA="transmission-daemon opentracker python3-transmission-rpc curl udpcast iproute2 procps"
RECIPE="mirror=$MIRROR packages=$(echo $DEPENDS $EXTRA) v1"

die() { printf 'bench/trixie.sh: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (debootstrap, chroot and network namespaces need it)"
command -v debootstrap >/dev/null || die "debootstrap is missing; install it with 'apt-get install debootstrap'"

if [ "$(cat "$ROOT/.recipe" 2>/dev/null)" != "$RECIPE" ]; then
    echo "bench/trixie.sh: making the trixie root $ROOT (a few minutes)"
    rm -rf "$ROOT.new"
    debootstrap --variant=minbase trixie "$ROOT.new" "$MIRROR" >"$CACHE/bench-trixie.log" 2>&1 ||
        die "debootstrap failed (log: $CACHE/bench-trixie.log)"
    printf '#!/bin/sh\nexit 101\n' >"$ROOT.new/usr/sbin/policy-rc.d"
    chmod 755 "$ROOT.new/usr/sbin/policy-rc.d"
    cp /etc/resolv.conf "$ROOT.new/etc/resolv.conf"
    unshare -m --propagation private sh -c "mount -t proc proc '$ROOT.new/proc' &&
        chroot '$ROOT.new' sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends $(echo $DEPENDS $EXTRA)'" \
        >>"$CACHE/bench-trixie.log" 2>&1 || die "apt-get failed in the root (log: $CACHE/bench-trixie.log)"
    for program in boottorrentd:boottorrentd.daemon boottorrentctl:boottorrentctl.cli; do
        printf '#!/bin/sh\nexec python3 -c "import sys; from %s import main; sys.argv[0] = \\"%s\\"; sys.exit(main())" "$@"\n' \
            "${program#*:}" "${program%%:*}" >"$ROOT.new/usr/local/bin/${program%%:*}"
        chmod 755 "$ROOT.new/usr/local/bin/${program%%:*}"
    done
    echo "$RECIPE" >"$ROOT.new/.recipe"
    rm -rf "$ROOT"
    mv "$ROOT.new" "$ROOT"
fi

# A mount point as /, as `ip netns` needs; /run and /tmp fresh for this run.
exec unshare -m --propagation private bash -c '
set -e
root=$1 repo=$2
shift 2
mount --bind "$root" "$root"
mount -t proc proc "$root/proc"
mount --rbind /sys "$root/sys"
mount --rbind /dev "$root/dev"
mount -t tmpfs tmpfs "$root/run"
mount -t tmpfs tmpfs "$root/tmp"
mkdir -p "$root$repo"
mount --bind "$repo" "$root$repo"
exec chroot "$root" env -i PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    LC_ALL=C.UTF-8 PYTHONPATH="$repo" sh -c "cd \"\$0\" && exec python3 -m bench.swarm \"\$@\"" \
    "$repo" "$@"
' bash "$ROOT" "$REPO" "$@"
