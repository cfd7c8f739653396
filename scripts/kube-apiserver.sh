#!/usr/bin/env bash
# Build (once) and cache a real kube-apiserver plus etcd/etcdctl for the
# Topology real-apiserver test tier.  Nothing lands in the repository: the
# source, toolchain and binaries live under $CORRMESH_CACHE (default
# ~/.cache/corrmesh)/kube-apiserver.  See ../shared/peers/KUBERNETES.md.
#
# Usage: scripts/kube-apiserver.sh [build|path]
#   build  build what is missing, then print the bin directory (default)
#   path   print the bin directory if everything is cached, else exit 1
#
# The bin directory holds kube-apiserver, etcd and etcdctl.
set -euo pipefail

CACHE="${CORRMESH_CACHE:-$HOME/.cache/corrmesh}/kube-apiserver"
BIN="$CACHE/bin"
ROOT="$CACHE/root"
SRC="$CACHE/src"
APT="$CACHE/apt"
GO_PKGS=(golang-1.19-go golang-1.19-src)
ETCD_PKGS=(etcd-server etcd-client)
TOOL_PKGS=(rsync jq libjq1 libonig5 libpopt0)

have_all() {
    [[ -x "$BIN/kube-apiserver" && -x "$BIN/etcd" && -x "$BIN/etcdctl" ]]
}

log() { echo "kube-apiserver.sh: $*" >&2; }

# apt-get with a private configuration: deb-src twins of the machine's own
# bookworm lines, private lists, no change to the system's apt state.
apt_private() {
    apt-get -q \
        -o Dir::Etc::SourceList="$APT/sources.list" \
        -o Dir::Etc::SourceParts=/dev/null \
        -o Dir::State::Lists="$APT/lists" \
        -o Dir::Cache::Archives="$APT/archives" \
        -o APT::Sandbox::User=root \
        "$@"
}

prepare_apt() {
    mkdir -p "$APT/lists/partial" "$APT/archives/partial"
    cat >"$APT/sources.list" <<'EOF'
deb http://deb.debian.org/debian bookworm main
deb-src http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian-security bookworm-security main
deb-src http://deb.debian.org/debian-security bookworm-security main
EOF
    apt_private update >&2
}

# Download .debs and unpack them into the private root (no dpkg database).
unpack_debs() {
    local dl="$CACHE/debs"
    mkdir -p "$dl" "$ROOT"
    (cd "$dl" && apt_private download "$@" >&2)
    local deb
    for deb in "$dl"/*.deb; do
        dpkg -x "$deb" "$ROOT"
    done
}

fetch_source() {
    if compgen -G "$SRC/kubernetes-*/Makefile" >/dev/null; then
        return
    fi
    mkdir -p "$SRC"
    (cd "$SRC" && apt_private source kubernetes >&2)
}

build_apiserver() {
    local tree
    tree="$(compgen -G "$SRC/kubernetes-*/Makefile" | head -n1)"
    tree="$(dirname "$tree")"
    local goroot="$ROOT/usr/lib/go-1.19"
    local path="$goroot/bin:$PATH"
    # Toolchain helpers only if the machine lacks them.
    if ! command -v rsync >/dev/null || ! command -v jq >/dev/null; then
        path="$ROOT/usr/bin:$path"
        export LD_LIBRARY_PATH="$ROOT/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    fi
    local gopath="$CACHE/gopath"
    mkdir -p "$gopath/src/k8s.io"
    ln -sfn "$tree" "$gopath/src/k8s.io/kubernetes"
    log "building kube-apiserver in $tree (about 12+ minutes on 2 cores)"
    (
        cd "$gopath/src/k8s.io/kubernetes"
        env PATH="$path" GOROOT="$goroot" GOPATH="$gopath" CGO_ENABLED=0 \
            GOPROXY=off GOFLAGS=-mod=vendor GOCACHE="$CACHE/gocache" \
            make WHAT=cmd/kube-apiserver >&2
    )
    mkdir -p "$BIN"
    install -m 0755 "$tree/_output/bin/kube-apiserver" "$BIN/kube-apiserver"
}

build() {
    have_all && { echo "$BIN"; return; }
    mkdir -p "$CACHE"
    exec 9>"$CACHE/.lock"
    flock 9  # one build at a time, whoever asks
    have_all && { echo "$BIN"; return; }
    prepare_apt
    if [[ ! -x "$BIN/etcd" || ! -x "$BIN/etcdctl" ]]; then
        unpack_debs "${ETCD_PKGS[@]}"
        mkdir -p "$BIN"
        install -m 0755 "$ROOT/usr/bin/etcd" "$BIN/etcd"
        install -m 0755 "$ROOT/usr/bin/etcdctl" "$BIN/etcdctl"
    fi
    if [[ ! -x "$BIN/kube-apiserver" ]]; then
        [[ -x "$ROOT/usr/lib/go-1.19/bin/go" ]] || unpack_debs "${GO_PKGS[@]}" "${TOOL_PKGS[@]}"
        fetch_source
        build_apiserver
    fi
    echo "$BIN"
}

case "${1:-build}" in
    build) build ;;
    path) have_all && echo "$BIN" || exit 1 ;;
    *) echo "usage: $0 [build|path]" >&2; exit 2 ;;
esac
