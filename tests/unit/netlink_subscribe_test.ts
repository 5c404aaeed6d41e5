/**
 * subscribe() lifecycle without privileges: joining rtnetlink groups only listens (it changes
 * nothing in the namespace), so these run where the test runs. Op and resource sanitizers are on:
 * an abort must not leave the pool-thread poll pending.
 */

import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { subscribe } from "../../ffi/netlink/mod.ts";

Deno.test("subscribe() ends a waiting iteration promptly when the signal aborts", async () => {
  const ac = new AbortController();
  const seen: string[] = [];
  const t0 = performance.now();
  const timer = setTimeout(() => ac.abort(), 50);
  for await (const ev of subscribe(["link", "route", "neigh"], ac.signal)) seen.push(ev.kind);
  clearTimeout(timer);
  const ms = performance.now() - t0;
  // Ended by the eventfd wake-up, not by a poll timeout (there is none).
  if (ms > 1000) throw new Error(`Iteration took ${ms.toFixed(0)} ms to end after abort`);
  assertEquals(seen.filter((k) => k === "resync"), []);
});

Deno.test("subscribe() with an already aborted signal yields nothing", async () => {
  const ac = new AbortController();
  ac.abort();
  const seen: unknown[] = [];
  for await (const ev of subscribe(["route"], ac.signal)) seen.push(ev);
  assertEquals(seen, []);
});

Deno.test("subscribe() closes its socket when aborted before anyone iterates", async () => {
  const ac = new AbortController();
  const events = subscribe(["link"], ac.signal);
  ac.abort();
  const seen: unknown[] = [];
  for await (const ev of events) seen.push(ev);
  assertEquals(seen, []);
});

Deno.test("subscribe(): a pending next() resolves done on abort and return() is clean", async () => {
  const ac = new AbortController();
  const it = subscribe(["link"], ac.signal)[Symbol.asyncIterator]();
  // Nothing arrives in this idle namespace; return() must still finish without a pending op.
  const next = it.next();
  setTimeout(() => ac.abort(), 20);
  assertEquals((await next).done, true);
  assertEquals((await it.return!()).done, true);
});
