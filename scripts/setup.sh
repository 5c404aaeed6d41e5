#!/usr/bin/env bash
# Installs what flannel's demo, tests and benchmarks need on a Debian machine, and nothing when
# everything is already there: Deno 2.9.6 (from npm), etcd + etcdctl, iproute2, ping, iperf3,
# tcpdump, openssl. Must run as root (the tests create network namespaces).
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
# The wireguard backend's crypto (libcrypto for packets, libsodium for X25519/XChaCha20) and the
# real WireGuard peer its interop tests run against.
ldconfig -p | grep -q 'libsodium\.so\.23 ' || pkgs+=(libsodium23)
ldconfig -p | grep -q 'libcrypto\.so\.3 ' || pkgs+=(libssl3)
command -v wireguard-go >/dev/null || pkgs+=(wireguard-go)
command -v wg >/dev/null || pkgs+=(wireguard-tools)
deno_ok() { command -v deno >/dev/null && deno --version 2>/dev/null | head -1 | grep -q '^deno 2\.9\.'; }
if ! deno_ok && ! command -v npm >/dev/null; then pkgs+=(nodejs npm); fi

if [ ${#pkgs[@]} -gt 0 ]; then
  echo "flannel setup: installing ${pkgs[*]} from apt" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
fi
if ! deno_ok; then
  echo "flannel setup: installing deno@2.9.6 from npm" >&2
  npm install -g --silent deno@2.9.6 >/dev/null
  hash -r
  deno_ok || { echo "flannel setup: deno 2.9.x is still not on PATH" >&2; exit 1; }
fi
