#!/usr/bin/env bash
# Builds the CNI `flannel` plugin (upstream flannel-io/cni-plugin) from a source directory with
# Debian's Go in GOPATH mode, for the CNI end-to-end test:
#   scripts/build-cni-plugin.sh SRC_DIR [OUT]    (OUT default /var/cache/flannel-tests/cni/flannel)
# SRC_DIR holds a release's flannel.go and flannel_linux.go (v1.1.2 matches Debian 12's
# golang-github-appc-cni-dev 1.1.2). Needs golang-go and golang-github-appc-cni-dev (installed
# from apt when missing); nothing is downloaded from the Go module proxy.
set -euo pipefail
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
src=$1
out=${2:-/var/cache/flannel-tests/cni/flannel}
for f in flannel.go flannel_linux.go; do
  [ -f "$src/$f" ] || { echo "build-cni-plugin: $src has no $f" >&2; exit 1; }
done
pkgs=()
command -v go >/dev/null || pkgs+=(golang-go)
[ -d /usr/share/gocode/src/github.com/containernetworking/cni/pkg/skel ] ||
  pkgs+=(golang-github-appc-cni-dev)
if [ ${#pkgs[@]} -gt 0 ]; then
  echo "build-cni-plugin: installing ${pkgs[*]} from apt" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
fi

gopath=$(mktemp -d)
trap 'rm -rf "$gopath"' EXIT
pkg="$gopath/src/github.com/flannel-io/cni-plugin"
mkdir -p "$pkg"
cp "$src/flannel.go" "$src/flannel_linux.go" "$pkg/"
mkdir -p "$(dirname "$out")"
(
  cd "$pkg"
  GO111MODULE=off GOPATH="$gopath:/usr/share/gocode" GOCACHE="$gopath/cache" GOFLAGS= \
    CGO_ENABLED=0 go build -o "$out.tmp" .
)
mv -f "$out.tmp" "$out"
echo "build-cni-plugin: built $out" >&2
