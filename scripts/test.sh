#!/usr/bin/env bash
# The whole test suite: static gates (fmt, lint, type check), then unit tests (no privileges),
# kernel tests (root, each in its own network namespace) and end-to-end tests (hosts in network
# namespaces sharing one real etcd). Installs what it needs first. Extra arguments go to
# `deno test` (e.g. --filter vxlan).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export NO_COLOR=1
# What an earlier run that was killed left behind (only what its harness marked as its own).
bash scripts/clean_leftovers.sh

# The layer check (scripts/lint_layers.ts) runs inside `deno lint` as a plugin; the op and resource
# sanitizers are on for every `deno test` through deno.json's "test" settings.
echo "== static checks"
deno fmt --check
deno lint
deno check main.ts lib/ ffi/ tests/ scripts/

echo "== tests"
log=$(mktemp)
# Ctrl-C: `deno test` exits at once without the harness's cleanups; remove what it left.
trap 'rm -f "$log"; bash scripts/clean_leftovers.sh' EXIT
set +e
deno test -A "$@" tests/unit/ tests/kernel/ tests/e2e/ 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# deno prints "ok | 120 passed (40 steps) | 0 failed (1m2s)"; repeat it as the plain closing line.
summary=$(grep -E '^(ok|FAILED) \| [0-9]+ passed' "$log" | tail -1 || true)
passed=$(sed -E 's/.*\| ([0-9]+) passed.*/\1/' <<<"$summary")
failed=$(sed -E 's/.*\| ([0-9]+) failed.*/\1/' <<<"$summary")
echo "${passed:-0} passed, ${failed:-0} failed"
exit "$status"
