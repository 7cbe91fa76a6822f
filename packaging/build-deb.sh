#!/bin/bash
# Build the boottorrent Debian packages, boottorrent and boottorrent-gtk (make deb).
#
# The package is built for Debian trixie inside a trixie root made with debootstrap: the
# release that builds it decides paths such as /usr/lib/systemd/system, whatever this
# host runs. The root is cached between runs (BOOTTORRENT_CACHE, default
# /var/cache/boottorrent/build-trixie) and made again when it is missing or broken. Each
# run copies the source tree into it, copies packaging/debian to ./debian there, installs
# the Build-Depends, builds the source and binary package, runs lintian (no error and
# no warning allowed) and leaves the .debs, with lintian's report, in dist/.
#
# Needs root, debootstrap and systemd-nspawn (systemd-container), and Debian's archive.
#
#   BOOTTORRENT_SUITE   release to build for (default trixie)
#   BOOTTORRENT_MIRROR  archive (default http://deb.debian.org/debian)
#   BOOTTORRENT_CACHE   where the build root lives (default /var/cache/boottorrent)
#   DEB_BUILD_OPTIONS, DEB_BUILD_PROFILES   passed to the build (e.g. nocheck for both:
#                       no unit tests at build time)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SUITE=${BOOTTORRENT_SUITE:-trixie}
MIRROR=${BOOTTORRENT_MIRROR:-http://deb.debian.org/debian}
CACHE=${BOOTTORRENT_CACHE:-/var/cache/boottorrent}
ROOT=$CACHE/build-$SUITE
DIST=$REPO/dist
# Downloaded packages, kept across runs and rebuilt roots (shared with tests/packaging).
ARCHIVES=$CACHE/apt-archives
APT_CACHE=--bind=$ARCHIVES:/var/cache/apt/archives
# What the cached root was made from; a different recipe makes it again.
RECIPE="suite=$SUITE mirror=$MIRROR variant=minbase tools=lintian,build-essential,ca-certificates v1"
STAMP=.boottorrent-build-root

START=$SECONDS
step() { printf '\n==> [%3ds] %s\n' $((SECONDS - START)) "$*"; }
die() { printf 'build-deb: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (debootstrap and systemd-nspawn need it)"
for tool in debootstrap systemd-nspawn; do
    command -v "$tool" >/dev/null ||
        die "$tool is missing; install it with 'apt-get install debootstrap systemd-container'"
done

# Run a command inside the build root. The host's network (apt needs the archive); no
# machine registration or scope (no machined or systemd as PID 1 needed on the host).
in_root() {
    local root=$1
    shift
    # nspawn says this when it cannot clean /run/systemd/nspawn/propagate on a /run that
    # is not a tmpfs (as in some containers): harmless.
    systemd-nspawn --quiet --register=no --keep-unit --pipe -D "$root" \
        --setenv=DEBIAN_FRONTEND=noninteractive --setenv=LC_ALL=C.UTF-8 "$@" \
        2> >(grep -v 'Attempted to remove disk file system under' >&2)
}

root_healthy() {
    [ -f "$ROOT/$STAMP" ] && [ "$(cat "$ROOT/$STAMP")" = "$RECIPE" ] &&
        in_root "$ROOT" sh -c 'dpkg-query -W dpkg-dev lintian apt >/dev/null && apt-get --version >/dev/null' \
            >/dev/null 2>&1
}

make_root() {
    local new=$ROOT.new
    rm -rf "$new"
    step "debootstrap $SUITE (minbase) into $new from $MIRROR"
    mkdir -p "$CACHE/debootstrap-$SUITE"
    debootstrap --variant=minbase --cache-dir="$CACHE/debootstrap-$SUITE" "$SUITE" "$new" "$MIRROR" \
        > "$CACHE/debootstrap-$SUITE.log" 2>&1 ||
        { tail -20 "$CACHE/debootstrap-$SUITE.log" >&2; die "debootstrap failed (log: $CACHE/debootstrap-$SUITE.log)"; }
    step "installing the build tools (build-essential, lintian) in the build root"
    in_root "$new" "$APT_CACHE" sh -c 'apt-get update -qq &&
        apt-get install -y -qq --no-install-recommends build-essential lintian ca-certificates >/dev/null'
    echo "$RECIPE" > "$new/$STAMP"
    rm -rf "$ROOT"
    mv "$new" "$ROOT"
}

mkdir -p "$CACHE" "$DIST" "$ARCHIVES/partial"
exec 9> "$CACHE/build-$SUITE.lock"
flock -n 9 || { echo "build-deb: another build is running; waiting for it"; flock 9; }

step "checking the cached build root $ROOT"
if root_healthy; then
    echo "reusing it"
else
    [ -e "$ROOT" ] && echo "missing, broken or from another recipe: making it again"
    make_root
fi

version=$(dpkg-parsechangelog -l "$REPO/packaging/debian/changelog" -S Version 2>/dev/null ||
    sed -n '1s/.*(\([^)]*\)).*/\1/p' "$REPO/packaging/debian/changelog")
upstream=$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$REPO/pyproject.toml" | head -1)
[ "$version" = "$upstream" ] ||
    die "packaging/debian/changelog says $version but pyproject.toml says $upstream; add a changelog entry (dch -v $upstream)"

# No stale package in dist/ if this build fails.
rm -f "$DIST"/boottorrent_*_all.deb "$DIST"/boottorrent-gtk_*_all.deb \
    "$DIST"/boottorrent_*_all.lintian.txt

step "copying the source tree (boottorrent $version) into the build root"
src=/build/boottorrent-$version
rm -rf "$ROOT/build"
mkdir -p "$ROOT$src"
tar -C "$REPO" -cf - \
    --exclude=./.git --exclude=./.venv --exclude=./dist --exclude=./build --exclude=./debian \
    --exclude='*.egg-info' --exclude=__pycache__ --exclude=.pytest_cache --exclude=.ruff_cache \
    --exclude=./tests/desktop/screenshots \
    . | tar -C "$ROOT$src" -xf -
cp -a "$REPO/packaging/debian" "$ROOT$src/debian"

# The build's own options, when given (e.g. DEB_BUILD_OPTIONS=nocheck).
buildenv=()
for var in DEB_BUILD_OPTIONS DEB_BUILD_PROFILES; do
    [ -n "${!var:-}" ] && buildenv+=("--setenv=$var=${!var}")
done

step "installing the Build-Depends of debian/control"
in_root "$ROOT" --chdir="$src" "$APT_CACHE" "${buildenv[@]}" sh -c '
    build_dep() { apt-get build-dep -y -qq --no-install-recommends ./ >/tmp/build-dep.log 2>&1; }
    build_dep || { apt-get update -qq && build_dep; } || { cat /tmp/build-dep.log; exit 1; }'

step "dpkg-buildpackage (source and binary)"
in_root "$ROOT" --chdir="$src" "${buildenv[@]}" sh -c 'dpkg-buildpackage -us -uc 2>&1' > "$CACHE/build-$SUITE.log" ||
    { tail -40 "$CACHE/build-$SUITE.log" >&2; die "the build failed (log: $CACHE/build-$SUITE.log)"; }
grep -E '^(dpkg-deb: building|dh_python3|=+ [0-9]+ passed)|passed in' "$CACHE/build-$SUITE.log" || true

changes=boottorrent_${version}_$(in_root "$ROOT" dpkg --print-architecture).changes
debs=(boottorrent_${version}_all.deb boottorrent-gtk_${version}_all.deb)
for deb in "${debs[@]}"; do
    [ -f "$ROOT/build/$deb" ] || die "no $deb was built (log: $CACHE/build-$SUITE.log)"
done

step "lintian (no error and no warning allowed)"
report=$DIST/boottorrent_${version}_all.lintian.txt
set +e
# As nobody: lintian warns when it runs as root.
in_root "$ROOT" --chdir=/build setpriv --reuid=nobody --regid=nogroup --clear-groups \
    env HOME=/tmp lintian --info --display-info --fail-on error,warning "$changes" > "$report" 2>&1
lintian_rc=$?
set -e
cat "$report"
errors=$(grep -c '^E: ' "$report" || true)
warnings=$(grep -c '^W: ' "$report" || true)
echo "lintian: $errors error(s), $warnings warning(s)"
[ "$lintian_rc" = 0 ] && [ "$errors" = 0 ] && [ "$warnings" = 0 ] ||
    die "lintian is not clean (report: $report)"

for deb in "${debs[@]}"; do
    cp "$ROOT/build/$deb" "$DIST/$deb"
done
step "done: $(cd "$DIST" && du -h "${debs[@]}" | tr '\t\n' ' ')"
