#!/usr/bin/env bash
# Turns flannel's subnet.env into Docker daemon options.
#   -f FILE  subnet.env to read (default /run/flannel/subnet.env)
#   -d FILE  file to write (default /run/docker_opts.env)
#   -k NAME  name of the combined variable (default DOCKER_OPTS)
#   -i       write only the individual DOCKER_OPT_* variables
#   -c       write only the combined variable
#   -m       do not emit --ip-masq=false even when FLANNEL_IPMASQ=true
set -euo pipefail

usage() {
  sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

in=/run/flannel/subnet.env out=/run/docker_opts.env key=DOCKER_OPTS
individual=1 combined=1 masq=1
while getopts "f:d:k:icmh" opt; do
  case $opt in
    f) in=$OPTARG ;;
    d) out=$OPTARG ;;
    k) key=$OPTARG ;;
    i) combined=0 ;;
    c) individual=0 ;;
    m) masq=0 ;;
    *) usage ;;
  esac
done
if [ $individual = 0 ] && [ $combined = 0 ]; then
  echo "mk-docker-opts.sh: -i and -c exclude each other" >&2
  exit 2
fi
[ -r "$in" ] || { echo "mk-docker-opts.sh: cannot read $in" >&2; exit 1; }

FLANNEL_SUBNET="" FLANNEL_MTU="" FLANNEL_IPMASQ=""
# shellcheck disable=SC1090
. "$in"
[ -n "$FLANNEL_SUBNET" ] || { echo "mk-docker-opts.sh: $in has no FLANNEL_SUBNET" >&2; exit 1; }

opts=("--bip=$FLANNEL_SUBNET")
lines=("DOCKER_OPT_BIP=\"--bip=$FLANNEL_SUBNET\"")
if [ -n "$FLANNEL_MTU" ]; then
  opts+=("--mtu=$FLANNEL_MTU")
  lines+=("DOCKER_OPT_MTU=\"--mtu=$FLANNEL_MTU\"")
fi
if [ "$FLANNEL_IPMASQ" = true ] && [ $masq = 1 ]; then
  opts+=("--ip-masq=false")
  lines+=("DOCKER_OPT_IPMASQ=\"--ip-masq=false\"")
fi

tmp="$out.tmp.$$"
{
  [ $individual = 1 ] && printf '%s\n' "${lines[@]}"
  [ $combined = 1 ] && printf '%s="%s"\n' "$key" "${opts[*]}"
  true
} >"$tmp"
mv "$tmp" "$out"
