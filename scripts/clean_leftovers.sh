#!/usr/bin/env bash
# Removes what a killed test run left behind (SIGKILL, or Ctrl-C, which `deno test` handles itself
# without running the harness's cleanups): the namespaces and standalone etcd processes that have
# an owner marker in /run/fl-test-owners (tests/harness/cleanup.ts) naming a process that is gone.
# Nothing without a marker is touched, nor anything whose owner still runs (another test run).
set -euo pipefail
dir=/run/fl-test-owners
[[ -d $dir ]] || exit 0

start_time() { # field 22 of /proc/<pid>/stat (after the command name in parentheses)
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  awk '{print $20}' <<<"$stat"
}

alive() { # alive <pid> <start time>
  [[ $1 =~ ^[0-9]+$ ]] || return 1
  local now
  now=$(start_time "$1") || return 1
  [[ $now == "$2" ]]
}

for marker in "$dir"/*; do
  [[ -f $marker ]] || continue
  name=$(basename "$marker")
  read -r owner owner_start extra tmp <"$marker" || true
  if alive "${owner:-}" "${owner_start:-}"; then continue; fi
  if [[ $name =~ ^fl[0-9a-f]{4}-[A-Za-z0-9-]+$ ]]; then
    if ip netns list | awk '{print $1}' | grep -qxF "$name"; then
      for pid in $(ip netns pids "$name" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
      ip netns del "$name" 2>/dev/null || true
      echo "removed leftover namespace $name (owner $owner gone)"
    fi
    # A cluster's temp dir (`/tmp/<tag>-…`), named in its hub's marker.
    if [[ ${extra:-} =~ ^/tmp/${name%%-*}-[A-Za-z0-9_]+$ ]]; then rm -rf -- "$extra"; fi
  elif [[ $name =~ ^etcd-([0-9]+)$ ]]; then
    pid=${BASH_REMATCH[1]}
    if alive "$pid" "${extra:-}" && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == etcd ]]; then
      kill -KILL "$pid" 2>/dev/null || true
      echo "killed leftover etcd $pid (owner $owner gone)"
    fi
    if [[ ${tmp:-} =~ ^/tmp/fl-etcd-[A-Za-z0-9_]+$ ]]; then rm -rf -- "$tmp"; fi
  else
    continue
  fi
  rm -f "$marker"
done
