#!/usr/bin/env bash
# The demo: several hosts in network namespaces, one local etcd, flannel on each host; shows the
# lease table, each host's subnet.env and (for vxlan, host-gw, udp) a ping matrix between hosts.
# Installs what is missing first (Deno 2.9.6 from npm; etcd, iproute2, ping, iperf3, tcpdump
# from apt) and is quiet when everything is there. Needs root; the machine's own network
# namespace is not changed.
#   scripts/demo.sh [--hosts=3] [--backend=vxlan|host-gw|udp|alloc] [--keep]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export NO_COLOR=1
# --cached-only: setup cached every module; a missing one is a setup bug, not a download.
exec deno run --cached-only -A scripts/demo.ts "$@"
