/**
 * The shared data-path Worker plumbing (lib/backend/datapath/host.ts and serve.ts) with a
 * fixture Worker: messages are applied and counted in the control words, stop() ends the
 * Worker cleanly, and each kind of failure surfaces where the backends look for it — a failing
 * init rejects ready(), a failing run() resolves `died`, a failing message is a warning or
 * (for the udp backend's strictness) a death.
 */

import assert from "node:assert/strict";
import { DataPathWorker } from "../../lib/backend/datapath/host.ts";
import type { BaseInit } from "../../lib/backend/datapath/protocol.ts";
import { logger } from "../../lib/log.ts";
import { logCapture } from "../helpers.ts";

interface Init extends BaseInit {
  readonly mode: "ok" | "init-throws" | "message-throws" | "run-throws";
  readonly applied: SharedArrayBuffer;
}

const log = logger("test");

function start(mode: Init["mode"], errors: "warn" | "error" = "warn") {
  const applied = new SharedArrayBuffer(4);
  const url = new URL(`./fixtures/datapath_worker.ts?errors=${errors}`, import.meta.url);
  const w = new DataPathWorker<Init, { n: number }>(url, { mode, applied }, log);
  return { w, applied: new Int32Array(applied) };
}

async function until(what: string, ok: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

Deno.test("DataPathWorker: ready, every posted message applied, a clean stop", async () => {
  using captured = logCapture();
  const { w, applied } = start("ok");
  await w.ready();
  for (let i = 1; i <= 50; i++) w.post({ n: i });
  await until("50 messages applied", () => Atomics.load(applied, 0) === 1275);
  await w.stop();
  await w.stop(); // idempotent
  assert.throws(() => w.post({ n: 1 }), /not running/);
  assert.doesNotMatch(captured.lines.join(""), /did not stop in time/);
});

Deno.test("DataPathWorker: a failing init rejects ready() with its message", async () => {
  const { w } = start("init-throws");
  await assert.rejects(w.ready(), { message: "Data path failed: no crypto library" });
  assert.equal(await w.died, "Data path failed: no crypto library");
  await w.stop();
});

Deno.test("DataPathWorker: a failing run() resolves died", async () => {
  const { w } = start("run-throws");
  await w.ready();
  assert.equal(await w.died, "Data path failed: poll: EBADF");
  await w.stop();
});

Deno.test("DataPathWorker: a failing message is a warning (wireguard) or a death (udp)", async () => {
  using captured = logCapture();
  const lenient = start("message-throws");
  await lenient.w.ready();
  lenient.w.post({ n: 7 });
  await until("the warning", () => captured.lines.join("").includes("bad message 7"));
  lenient.w.post({ n: 8 }); // still running
  await until("the second warning", () => captured.lines.join("").includes("bad message 8"));
  await lenient.w.stop();

  const strict = start("message-throws", "error");
  await strict.w.ready();
  strict.w.post({ n: 9 });
  assert.equal(await strict.w.died, "Data path failed: bad message 9");
  await strict.w.stop();
});
