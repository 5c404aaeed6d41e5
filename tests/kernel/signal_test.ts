/**
 * lib/sigusr1.ts: the process ends up with SIGUSR1 blocked in every thread, so Deno's "SIGUSR1
 * opens the inspector on 127.0.0.1:9229" never runs. Each case runs a Deno process in its own
 * network namespace (a listener there cannot collide with anything) and sends SIGUSR1 before and
 * after the moment Deno installs its handler (~0.5 s after start). The end-to-end hammer test
 * with controls is tests/e2e/sigusr1_test.ts.
 */
import assert from "node:assert/strict";
import { createNamespace, deleteNamespace, run, uniqueTag } from "../harness/netns.ts";
import { asRoot } from "./root.ts";

// Prints "start" each time the image starts: twice when it re-executes itself.
const SCRIPT = `
console.log("start");
const { blockSigusr1ForGood } = await import(${
  JSON.stringify(new URL("../../lib/sigusr1.ts", import.meta.url).href)
});
blockSigusr1ForGood();
await new Promise((r) => setTimeout(r, 4000));
`;

async function listensOn9229(ns: string): Promise<boolean> {
  const r = await run(["ip", "netns", "exec", ns, "ss", "-Hltn", "sport", "= :9229"]);
  return r.stdout.trim() !== "";
}

interface Seen {
  listening: boolean;
  alive: boolean;
  starts: number;
  allThreadsBlock: boolean;
}

async function sendUsr1AndLook(prefix: string[]): Promise<Seen> {
  const ns = `${uniqueTag()}-sig`;
  await createNamespace(ns);
  try {
    const child = new Deno.Command("ip", {
      args: ["netns", "exec", ns, ...prefix, Deno.execPath(), "eval", SCRIPT],
      stdout: "piped",
      stderr: "null",
    }).spawn();
    // `ip netns exec` and `env` exec in place, so child.pid is the Deno process itself.
    let listening = false;
    // The first signal lands after the re-exec but before Deno's handler exists; the others
    // after Deno installed its handler.
    for (const wait of [300, 500, 400, 600]) {
      await new Promise((r) => setTimeout(r, wait));
      try {
        Deno.kill(child.pid, "SIGUSR1");
      } catch { /* exited */ }
      await new Promise((r) => setTimeout(r, 150));
      listening ||= await listensOn9229(ns);
    }
    let allThreadsBlock = true;
    for await (const t of Deno.readDir(`/proc/${child.pid}/task`)) {
      const s = await Deno.readTextFile(`/proc/${child.pid}/task/${t.name}/status`);
      const blk = BigInt(`0x${/^SigBlk:\s*([0-9a-f]+)$/m.exec(s)![1]}`);
      allThreadsBlock &&= (blk & (1n << 9n)) !== 0n;
    }
    let alive = true;
    try {
      Deno.kill(child.pid, "SIGCONT"); // harmless probe
    } catch {
      alive = false;
    }
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
    const out = new TextDecoder().decode((await child.output()).stdout);
    const starts = out.split("\n").filter((l) => l === "start").length;
    return { listening, alive, starts, allThreadsBlock };
  } finally {
    deleteNamespace(ns);
  }
}

Deno.test(
  asRoot("blockSigusr1ForGood() re-executes once; then SIGUSR1 opens nothing and kills nothing"),
  async () => {
    const r = await sendUsr1AndLook([]);
    assert.deepEqual(r, { listening: false, alive: true, starts: 2, allThreadsBlock: true });
  },
);

Deno.test(
  asRoot("started with SIGUSR1 blocked (env --block-signal=USR1) it does not re-execute"),
  async () => {
    const r = await sendUsr1AndLook(["env", "--block-signal=USR1"]);
    assert.deepEqual(r, { listening: false, alive: true, starts: 1, allThreadsBlock: true });
  },
);
