/**
 * What the harness made (namespaces, etcd processes, temp dirs) is removed also when the process
 * running it is killed:
 *
 * - SIGTERM, and SIGINT where the process does not handle it itself: one listener per signal,
 *   installed once per process when this module is loaded (so no test owns it and the sanitizers
 *   never see it), runs every registered cleanup, then exits with 128+N. `deno test` handles SIGINT
 *   itself (it lists the pending tests and exits at once, no listener or `unload` runs).
 * - SIGKILL, or SIGINT under `deno test`: each namespace and etcd has an owner marker in
 *   {@link OWNER_DIR} naming the process that made it; `scripts/test.sh` removes, before it starts,
 *   what a process that is gone left behind (only what has a marker, so nothing the harness did not
 *   make, and nothing of a test run that is still going).
 */

/**
 * Marker files: `<namespace>` holding `<owner pid> <owner start time> [temp dir]`, or
 * `etcd-<pid>` holding `<owner pid> <owner start time> <etcd start time> <temp dir>`.
 */
export const OWNER_DIR = "/run/fl-test-owners";

const cleanups = new Set<() => void>();

/**
 * Registers a synchronous cleanup to run if the process is killed by SIGTERM (or SIGINT); call the
 * returned function once the thing is removed normally.
 */
export function onKill(fn: () => void): () => void {
  cleanups.add(fn);
  return () => {
    cleanups.delete(fn);
  };
}

/** Runs every registered cleanup once (each one's failure is ignored). */
export function runCleanups(): void {
  const all = [...cleanups];
  cleanups.clear();
  for (const fn of all.reverse()) {
    try {
      fn();
    } catch {
      // Best effort: the next cleanup still runs.
    }
  }
}

function install(signal: Deno.Signal, code: number): void {
  try {
    Deno.addSignalListener(signal, () => {
      runCleanups();
      Deno.exit(code);
    });
  } catch {
    // Not supported here (e.g. no signal permission): the markers still let test.sh clean up.
  }
}

/**
 * Set in the environment of a child process that a test spawns from its own file and that handles
 * SIGTERM itself (e.g. a daemon stand-in that must exit 0 on SIGTERM): the listeners below would
 * exit it with 143 before its own handler ran.
 */
export const TEST_CHILD_ENV = "FL_TEST_CHILD";

if (!Deno.env.get(TEST_CHILD_ENV)) {
  install("SIGTERM", 143);
  install("SIGINT", 130);
}
globalThis.addEventListener("unload", runCleanups);

/** The start time of process `pid` (field 22 of /proc/<pid>/stat), or null when it is gone. */
export function startTimeOf(pid: number): string | null {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19] ?? null;
  } catch {
    return null;
  }
}

/** Writes the owner marker `name` for this process (best effort: skipped when not root). */
export function markOwned(name: string, extra = ""): void {
  try {
    Deno.mkdirSync(OWNER_DIR, { recursive: true });
    const line = `${Deno.pid} ${startTimeOf(Deno.pid)}${extra ? ` ${extra}` : ""}\n`;
    Deno.writeTextFileSync(`${OWNER_DIR}/${name}`, line);
  } catch {
    // Not writable: only the signal cleanup applies.
  }
}

/** Removes the owner marker `name`. */
export function unmarkOwned(name: string): void {
  try {
    Deno.removeSync(`${OWNER_DIR}/${name}`);
  } catch {
    // Never written or already gone.
  }
}
