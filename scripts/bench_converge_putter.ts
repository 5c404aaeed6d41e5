/**
 * The putter of scripts/bench_converge.ts, run inside the hub namespace (etcd listens there
 * only): writes the leases of `ITEMS` one at a time through the registry, `GAP` ms apart, then
 * deletes them, printing one JSON line per operation with the wall clock before and after it.
 *
 * Usage (from bench_converge.ts): EP=<endpoint> ITEMS=<json [key, value][]> GAP=<ms>
 *        deno run -A scripts/bench_converge_putter.ts
 */

import { connectEtcd } from "../lib/registry/etcd/mod.ts";

const env = (k: string): string => {
  const v = Deno.env.get(k);
  if (v === undefined) throw new Error(`Missing ${k} in the environment`);
  return v;
};
const reg = connectEtcd({ endpoints: [env("EP")] });
const items = JSON.parse(env("ITEMS")) as [string, string][];
const gap = Number(env("GAP"));
const now = () => performance.timeOrigin + performance.now();
try {
  await reg.get("warmup");
  for (const op of ["put", "del"]) {
    for (const [key, value] of items) {
      const t0 = now();
      // A key without an etcd lease, in one transaction as a plain put: the guard "mod revision
      // 0" holds only while the key does not exist.
      if (op === "put") {
        if (!await reg.update(key, value, null, 0)) throw new Error(`${key} exists already`);
      } else await reg.delete(key);
      console.log(JSON.stringify({ op, key, t0, t1: now() }));
      await new Promise((r) => setTimeout(r, gap));
    }
    if (op === "put") {
      console.log(JSON.stringify({ op: "wait" }));
      await new Promise((r) => setTimeout(r, 1500));
    }
  }
} finally {
  reg.close();
}
