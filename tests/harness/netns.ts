/**
 * Small helpers for tests that run commands and manage network namespaces through iproute2.
 *
 * iproute2 is a test oracle only: product code never spawns `ip`. Namespace names follow
 * `fl<4 hex>-<role>` so leftovers are recognisable, and every namespace made here is removed by
 * {@linkcode deleteNamespace} (killing the processes still inside first), also when the test
 * process is killed (see `cleanup.ts`).
 */

import { markOwned, onKill, unmarkOwned } from "./cleanup.ts";

/** The outcome of a finished command. */
export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `cmd` to completion and returns its exit code and output (never throws on a bad exit). */
export async function run(cmd: string[], opts: { stdin?: string } = {}): Promise<ExecResult> {
  const child = new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    stdin: opts.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (opts.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(opts.stdin));
    await w.close();
  }
  const out = await child.output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** Runs `cmd` and throws, with the command and its stderr in the message, when it fails. */
export async function runOk(cmd: string[], opts: { stdin?: string } = {}): Promise<string> {
  const r = await run(cmd, opts);
  if (r.code !== 0) {
    throw new Error(`Command failed: ${cmd.join(" ")}: exit ${r.code}: ${r.stderr.trim()}`);
  }
  return r.stdout;
}

/** Four random hex digits, for unique namespace and link names. */
export function randomHex4(): string {
  const b = crypto.getRandomValues(new Uint8Array(2));
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/** Lists the names of the existing network namespaces. */
export function listNamespaces(): string[] {
  const out = new Deno.Command("ip", { args: ["netns", "list"], stdout: "piped", stderr: "null" })
    .outputSync();
  return new TextDecoder().decode(out.stdout).split("\n").map((l) => l.split(" ")[0]).filter((
    l,
  ) => l);
}

/** Picks a `fl<4 hex>` tag that no existing namespace uses yet. */
export function uniqueTag(): string {
  const existing = listNamespaces();
  for (;;) {
    const tag = `fl${randomHex4()}`;
    if (!existing.some((n) => n.startsWith(tag + "-"))) return tag;
  }
}

/**
 * Creates a namespace with `lo` up. `dir`: a temp dir of the same owner that `scripts/test.sh`
 * removes with the namespace when a killed run left both behind.
 */
export async function createNamespace(name: string, dir?: string): Promise<void> {
  await runOk(["ip", "netns", "add", name]);
  markOwned(name, dir);
  owned.set(name, onKill(() => deleteNamespace(name)));
  await runOk(["ip", "-n", name, "link", "set", "lo", "up"]);
}

/**
 * Kills every process left inside the namespace (SIGKILL) and deletes it. Synchronous so that
 * it also works from an `unload` handler; a namespace that is already gone is not an error.
 */
export function deleteNamespace(name: string): void {
  owned.get(name)?.();
  owned.delete(name);
  if (listNamespaces().includes(name)) killAndDelete(name);
  unmarkOwned(name);
}

/** The kill-time cleanup of each namespace made by {@linkcode createNamespace}. */
const owned = new Map<string, () => void>();

function killAndDelete(name: string): void {
  const pids = new Deno.Command("ip", {
    args: ["netns", "pids", name],
    stdout: "piped",
    stderr: "null",
  }).outputSync();
  for (const p of new TextDecoder().decode(pids.stdout).split("\n")) {
    const pid = Number(p.trim());
    if (!pid || pid === Deno.pid) continue;
    try {
      Deno.kill(pid, "SIGKILL");
    } catch {
      // Already gone.
    }
  }
  new Deno.Command("ip", { args: ["netns", "del", name], stdout: "null", stderr: "null" })
    .outputSync();
}

/** Reads the resident set size (VmRSS) of a process in bytes; null when the process is gone. */
export function readRssBytes(pid: number): number | null {
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** VmRSS and its anonymous part (RssAnon: heap, not the mapped binary) in bytes; null if gone. */
export function readMemory(pid: number): { rssBytes: number; anonBytes: number } | null {
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    const rss = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
    const anon = /^RssAnon:\s+(\d+)\s+kB/m.exec(status);
    if (!rss || !anon) return null;
    return { rssBytes: Number(rss[1]) * 1024, anonBytes: Number(anon[1]) * 1024 };
  } catch {
    return null;
  }
}

/**
 * Finds the `deno` process for a pid spawned through `ip netns exec`: iproute2 6.x execs the
 * command in place (the pid is deno itself), but older versions fork, so look at the children.
 */
export function findDenoPid(pid: number): number | null {
  const comm = (p: number) => {
    try {
      return Deno.readTextFileSync(`/proc/${p}/comm`).trim();
    } catch {
      return null;
    }
  };
  if (comm(pid) === "deno") return pid;
  const queue = [pid];
  while (queue.length > 0) {
    const p = queue.shift()!;
    let children: string;
    try {
      children = Deno.readTextFileSync(`/proc/${p}/task/${p}/children`);
    } catch {
      continue;
    }
    for (const c of children.split(" ").map(Number).filter((n) => n > 0)) {
      if (comm(c) === "deno") return c;
      queue.push(c);
    }
  }
  return null;
}
