#!/usr/bin/env bash
# Installs what flannel's demo, tests and benchmarks need on a Debian machine, and nothing when
# everything is already there: Deno 2.9.6 (from npm), etcd + etcdctl, iproute2, ping, iperf3,
# tcpdump, openssl, iptables (--ip-masq and the forward rules run iptables-restore), the
# wireguard libraries and wireguard-go, Docker, busybox-static and the CNI plugins. Then caches
# every module the daemon, demo, tests and benchmarks import into $DENO_DIR (default
# ~/.cache/deno): daemons run inside network namespaces that cannot reach the package registry,
# so nothing may be left to download at run time. Must run as root (the tests create network
# namespaces).
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
  echo "flannel setup: run as root (network namespaces and TUN devices need it)" >&2
  exit 1
fi

pkgs=()
command -v etcd >/dev/null || pkgs+=(etcd-server)
command -v etcdctl >/dev/null || pkgs+=(etcd-client)
{ command -v ip && command -v bridge && command -v ss; } >/dev/null || pkgs+=(iproute2)
command -v ping >/dev/null || pkgs+=(iputils-ping)
command -v iperf3 >/dev/null || pkgs+=(iperf3)
command -v tcpdump >/dev/null || pkgs+=(tcpdump)
command -v openssl >/dev/null || pkgs+=(openssl)
command -v strace >/dev/null || pkgs+=(strace)
{ command -v iptables-restore && command -v iptables-save; } >/dev/null || pkgs+=(iptables)
# The wireguard backend's crypto (libcrypto for packets, libsodium for X25519/XChaCha20) and the
# real WireGuard peer its interop tests run against.
ldconfig -p | grep -q 'libsodium\.so\.23 ' || pkgs+=(libsodium23)
ldconfig -p | grep -q 'libcrypto\.so\.3 ' || pkgs+=(libssl3)
command -v wireguard-go >/dev/null || pkgs+=(wireguard-go)
command -v wg >/dev/null || pkgs+=(wireguard-tools)
# The real consumers of subnet.env the host-integration tests run: Debian's Docker (a dockerd per
# host namespace, an image made from busybox-static) and the CNI bridge/host-local plugins.
command -v dockerd >/dev/null || pkgs+=(docker.io)
[ -x /bin/busybox ] || pkgs+=(busybox-static)
[ -x /usr/lib/cni/bridge ] || pkgs+=(containernetworking-plugins)
deno_ok() { command -v deno >/dev/null && deno --version 2>/dev/null | head -1 | grep -q '^deno 2\.9\.'; }
if ! deno_ok && ! command -v npm >/dev/null; then pkgs+=(nodejs npm); fi

if [ ${#pkgs[@]} -gt 0 ]; then
  echo "flannel setup: installing ${pkgs[*]} from apt" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  # No package may start a service in the machine's own network namespace (docker.io would set
  # up docker0 and its iptables there): policy-rc.d answers "not allowed" while installing.
  guard=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    guard=/usr/sbin/policy-rc.d
  fi
  apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
  [ -z "$guard" ] || rm -f "$guard"
fi
if ! deno_ok; then
  echo "flannel setup: installing deno@2.9.6 from npm" >&2
  npm install -g --silent deno@2.9.6 >/dev/null
  hash -r
  deno_ok || { echo "flannel setup: deno 2.9.x is still not on PATH" >&2; exit 1; }
fi

# Every entry point, listed explicitly: the backends are loaded by dynamic import (only the
# configured one), the udp and wireguard data paths run as Workers, and scripts and tests run
# from the root namespace before anything starts in a namespace. `deno install --entrypoint` fetches and
# caches their whole module graph (npm packages included) without type checking.
cd "$(dirname "$0")/.."
mapfile -t entries < <(
  printf '%s\n' main.ts lib/backend/*/mod.ts lib/backend/*/worker.ts
  find scripts tests -name '*.ts' | sort
)
if ! deno install --quiet --entrypoint "${entries[@]}" >/dev/null; then
  echo "flannel setup: caching the modules failed (is the npm registry reachable?)" >&2
  exit 1
fi
