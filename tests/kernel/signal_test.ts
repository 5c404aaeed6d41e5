/**
 * SIGUSR1 must not open Deno's V8 inspector. Each case runs a Deno process in its own network
 * namespace (so a listener on 127.0.0.1:9229 cannot collide with anything) and sends SIGUSR1
 * before and after the moment Deno installs its handler (~0.5 s after start).
 */
import assert from "node:assert/strict";
import { createNamespace, deleteNamespace, run, uniqueTag } from "../harness/netns.ts";
import { asRoot } from "./root.ts";

const SCRIPT_IGNORE = `
import { keepSignalIgnored } from ${
  JSON.stringify(new URL("../../ffi/signal.ts", import.meta.url).href)
};
const ac = new AbortController();
keepSignalIgnored("SIGUSR1", ac.signal);
setTimeout(() => ac.abort(), 4000);
await new Promise((r) => setTimeout(r, 4000));
`;
const SCRIPT_PLAIN = `await new Promise((r) => setTimeout(r, 4000));`;

async function listensOn9229(ns: string): Promise<boolean> {
  const r = await run(["ip", "netns", "exec", ns, "ss", "-Hltn", "sport", "= :9229"]);
  return r.stdout.trim() !== "";
}

async function sendUsr1AndLook(script: string): Promise<{ listening: boolean; alive: boolean }> {
  const ns = `${uniqueTag()}-sig`;
  await createNamespace(ns);
  try {
    const child = new Deno.Command("ip", {
      args: ["netns", "exec", ns, Deno.execPath(), "eval", script],
      stdout: "null",
      stderr: "null",
    }).spawn();
    // `ip netns exec` execs in place, so child.pid is the Deno process itself.
    let listening = false;
    // The first signal lands after the ignore is set but before Deno's handler exists;
    // the others after Deno installed (and we removed) its handler.
    for (const wait of [300, 500, 400, 600]) {
      await new Promise((r) => setTimeout(r, wait));
      try {
        Deno.kill(child.pid, "SIGUSR1");
      } catch { /* exited */ }
      await new Promise((r) => setTimeout(r, 150));
      listening ||= await listensOn9229(ns);
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
    await child.status;
    return { listening, alive };
  } finally {
    deleteNamespace(ns);
  }
}

Deno.test(
  asRoot("keepSignalIgnored('SIGUSR1') leaves no inspector listener and the process alive"),
  async () => {
    const r = await sendUsr1AndLook(SCRIPT_IGNORE);
    assert.deepEqual(r, { listening: false, alive: true });
  },
);

Deno.test(
  asRoot("control: without it, SIGUSR1 kills Deno early or opens 127.0.0.1:9229"),
  async () => {
    const r = await sendUsr1AndLook(SCRIPT_PLAIN);
    assert.ok(r.listening || !r.alive, `expected the hole to exist: ${JSON.stringify(r)}`);
  },
);
