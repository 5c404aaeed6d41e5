#!/usr/bin/env bash
# Builds the upstream flannel daemons the mixed-cluster test (tests/e2e/upstream_mixed_test.ts)
# runs next to ours, from a local flannel git directory (no network needed):
#
#   scripts/build-upstream.sh <flannel git dir> [cache dir]
#
# The cache dir defaults to /var/cache/flannel-tests/upstream and receives flanneld-v0.20.2
# (etcd v3 API; go modules with the tag's vendor/) and flanneld-v0.4.0 (etcd v2 API; GOPATH mode
# with the tag's Godeps/_workspace, whose imports are already rewritten). A binary already in the
# cache is kept. Needs git, tar and Go 1.19 (Debian's golang-go); a build takes about a minute.
set -euo pipefail

usage() {
  echo "Usage: $0 <flannel git dir> [cache dir]" >&2
  exit 2
}

[ $# -ge 1 ] && [ $# -le 2 ] || usage
gitdir=$1
cache=${2:-/var/cache/flannel-tests/upstream}

if ! git -C "$gitdir" rev-parse --git-dir >/dev/null 2>&1; then
  echo "$0: $gitdir is not a git directory" >&2
  exit 1
fi
command -v go >/dev/null || {
  echo "$0: go is not installed (apt-get install golang-go)" >&2
  exit 1
}
mkdir -p "$cache"

work=$(mktemp -d "${TMPDIR:-/tmp}/fl-upstream-build.XXXXXX")
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT

# Unpacks tag $1 of the git dir into directory $2.
unpack() {
  if ! git -C "$gitdir" rev-parse --verify --quiet "refs/tags/$1" >/dev/null; then
    echo "$0: $gitdir has no tag $1" >&2
    exit 1
  fi
  mkdir -p "$2"
  git -C "$gitdir" archive "$1" | tar -x -C "$2"
}

build_v0_20_2() {
  local out=$cache/flanneld-v0.20.2
  if [ -x "$out" ]; then
    echo "cached: $out"
    return
  fi
  local src=$work/v0.20.2
  unpack v0.20.2 "$src"
  echo "building $out"
  (cd "$src" && GOFLAGS=-mod=vendor GOPROXY=off GOCACHE=$work/gocache CGO_ENABLED=1 \
    go build -ldflags "-X github.com/flannel-io/flannel/version.Version=v0.20.2" -o "$out.tmp" .)
  mv "$out.tmp" "$out"
}

build_v0_4_0() {
  local out=$cache/flanneld-v0.4.0
  if [ -x "$out" ]; then
    echo "cached: $out"
    return
  fi
  local gopath=$work/gopath4
  unpack v0.4.0 "$gopath/src/github.com/coreos/flannel"
  echo "building $out"
  (cd "$gopath/src/github.com/coreos/flannel" &&
    GO111MODULE=off GOPATH=$gopath GOPROXY=off GOCACHE=$work/gocache GOFLAGS= \
      go build -o "$out.tmp" github.com/coreos/flannel)
  mv "$out.tmp" "$out"
}

build_v0_20_2
build_v0_4_0
