#!/usr/bin/env bash
# package.sh: builds the Debian packages auto-client and auto-server with plain `dpkg-deb --build`
# of a staged tree (no cargo-deb: nothing to install, and the maintainer scripts, conffiles and
# modes are written out here in full).
#
#   scripts/package.sh [--debug] [--out DIR]
#
# --debug packages the debug build (what scripts/test.sh has built already; for the install test);
# the default is a release build. Writes DIR/auto-client_VERSION_ARCH.deb and
# DIR/auto-server_VERSION_ARCH.deb (DIR: target/debian) and prints their paths.
#
# auto-client: /usr/bin/auto-client; the collectors named in plugins.toml under /usr/lib/auto-client/
# (root:root 0644 in 0755 directories: the host's StrictModes check passes); the conffiles
# /etc/auto-client/auto-client.toml and /etc/auto-client/plugins.toml; /etc/auto-client/plugins.d/;
# /var/lib/auto-client/; auto-client.service (oneshot `run`) and auto-client.timer (daily).
# auto-server: /usr/bin/auto-server; the conffile /etc/auto-server/auto-server.toml (SQLite under
# /var/lib/auto-server); auto-server.service (hardened); postinst makes the system user
# auto-server and /var/lib/auto-server (0700, its own); purge removes both.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
out=target/debian
while [[ $# -gt 0 ]]; do
    case "$1" in
        --debug) profile=debug; shift ;;
        --out) out=${2:?--out needs a directory}; shift 2 ;;
        -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "package.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
command -v dpkg-deb >/dev/null || { echo "package.sh: dpkg-deb is needed (apt-get install dpkg)" >&2; exit 2; }

version=$(sed -n 's/^version = "\(.*\)"/\1/p' host/Cargo.toml | head -n1)
arch=$(dpkg --print-architecture)
target_dir=${CARGO_TARGET_DIR:-target}
bin_dir="$target_dir/$profile"

# The shipped collectors: those plugins.toml names (target/release/libcollector_X.so -> collector-X).
mapfile -t libs < <(sed -n 's#^path = "target/release/\(libcollector_[a-z0-9_]*\.so\)"#\1#p' plugins.toml)
((${#libs[@]})) || { echo "package.sh: plugins.toml names no collector" >&2; exit 2; }
crates=(-p auto-client -p auto-server)
for lib in "${libs[@]}"; do
    name=${lib#libcollector_}; name=${name%.so}
    crates+=(-p "collector-${name//_/-}")
done
cargo_flags=(--quiet)
[[ $profile == release ]] && cargo_flags+=(--release)
echo "==> cargo build ${cargo_flags[*]} (${#libs[@]} collectors, auto-client, auto-server)" >&2
cargo build "${cargo_flags[@]}" "${crates[@]}"

mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/auto-package.XXXXXX")
trap 'rm -rf "$work"' EXIT

# The shared-library dependencies of ELF files, as a Depends: value (dpkg-shlibdeps when dpkg-dev is
# there; libc6 otherwise).
depends_of() {
    local deps=""
    if command -v dpkg-shlibdeps >/dev/null; then
        mkdir -p "$work/shlibs/debian"
        printf 'Source: x\n\nPackage: x\nArchitecture: any\n' >"$work/shlibs/debian/control"
        deps=$(cd "$work/shlibs" && dpkg-shlibdeps -O "$@" 2>/dev/null | sed -n 's/^shlibs:Depends=//p') || deps=""
    fi
    echo "${deps:-libc6}"
}

# stage PKG: a fresh tree with DEBIAN/ (maintainer scripts 0755) and the docs.
stage() {
    local pkg=$1 d="$work/$1"
    install -d -m 0755 "$d/DEBIAN" "$d/usr/bin" "$d/usr/share/doc/$pkg" "$d/lib/systemd/system"
    for s in postinst prerm postrm; do
        install -m 0755 "packaging/$pkg/$s" "$d/DEBIAN/$s"
    done
    install -m 0644 README.md "$d/usr/share/doc/$pkg/README.md"
    printf 'auto-client\nLicense: MIT OR Apache-2.0\n' >"$d/usr/share/doc/$pkg/copyright"
    chmod 0644 "$d/usr/share/doc/$pkg/copyright"
}

# control PKG DEPENDS DESCRIPTION...: DEBIAN/control, with Installed-Size.
control() {
    local pkg=$1 depends=$2 d="$work/$1"
    shift 2
    local size
    size=$(du -sk --exclude=DEBIAN "$d" | cut -f1)
    {
        echo "Package: $pkg"
        echo "Version: $version"
        echo "Architecture: $arch"
        echo "Maintainer: auto-client maintainers <root@localhost>"
        echo "Section: admin"
        echo "Priority: optional"
        echo "Installed-Size: $size"
        echo "Depends: $depends"
        echo "Description: $1"
        shift
        for line in "$@"; do echo " $line"; done
    } >"$d/DEBIAN/control"
}

build() {
    local pkg=$1 d="$work/$1" deb="$out/${1}_${version}_${arch}.deb"
    # every file root-owned in the archive, whatever the builder's uid
    dpkg-deb --root-owner-group -Zxz --build "$d" "$deb" >/dev/null
    echo "$deb"
}

# --- auto-client
stage auto-client
c="$work/auto-client"
install -d -m 0755 "$c/usr/lib/auto-client" "$c/etc/auto-client" "$c/etc/auto-client/plugins.d" "$c/var/lib/auto-client"
install -m 0755 "$bin_dir/auto-client" "$c/usr/bin/auto-client"
for lib in "${libs[@]}"; do
    install -m 0644 "$bin_dir/$lib" "$c/usr/lib/auto-client/$lib"
done
strip --strip-unneeded "$c/usr/bin/auto-client" "$c"/usr/lib/auto-client/*.so
install -m 0644 packaging/auto-client/auto-client.toml "$c/etc/auto-client/auto-client.toml"
# plugins.toml: the repository's, with the collectors under /usr/lib/auto-client and the drop-in
# directory /etc/auto-client/plugins.d
sed -e 's#^path = "target/release/#path = "/usr/lib/auto-client/#' \
    -e 's#^dirs = \["plugins.d"\]#dirs = ["/etc/auto-client/plugins.d"]#' \
    plugins.toml >"$c/etc/auto-client/plugins.toml"
chmod 0644 "$c/etc/auto-client/plugins.toml"
install -m 0644 packaging/auto-client/auto-client.service packaging/auto-client/auto-client.timer "$c/lib/systemd/system/"
printf '/etc/auto-client/auto-client.toml\n/etc/auto-client/plugins.toml\n' >"$c/DEBIAN/conffiles"
control auto-client "$(depends_of "$c/usr/bin/auto-client" "$c"/usr/lib/auto-client/*.so)" \
    "collects server assets through collector plugins for auto-server" \
    "auto-client runs collector plugins (shared libraries under /usr/lib/auto-client," \
    "drop-ins in /etc/auto-client/plugins.d) on this machine, over SSH or through Salt," \
    "and reports the assets, signed, to auto-server. auto-client.timer runs it daily."
build auto-client

# --- auto-server
stage auto-server
s="$work/auto-server"
install -d -m 0755 "$s/etc/auto-server"
install -m 0755 "$bin_dir/auto-server" "$s/usr/bin/auto-server"
strip --strip-unneeded "$s/usr/bin/auto-server"
install -m 0644 packaging/auto-server/auto-server.toml "$s/etc/auto-server/auto-server.toml"
install -m 0644 packaging/auto-server/auto-server.service "$s/lib/systemd/system/"
printf '/etc/auto-server/auto-server.toml\n' >"$s/DEBIAN/conffiles"
control auto-server "$(depends_of "$s/usr/bin/auto-server"), passwd" \
    "CMDB API for auto-client (SQLite or PostgreSQL)" \
    "auto-server keeps every host's current assets, a change log and an error log," \
    "takes signed reports from auto-client and serves the API and web pages." \
    "Runs as the system user auto-server; state in /var/lib/auto-server."
build auto-server
