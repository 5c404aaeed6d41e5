/**
 * Netlink benchmark: route replaces per second, and the time to install 5,000 routes, through
 * `Netlink` (ffi/netlink/mod.ts), against iproute2 doing the same in one `ip -batch` process as
 * the baseline measured in the same run ("speed" > 1 means faster than iproute2). Everything
 * happens in a namespace `fl<hex>-bn` that the script creates and removes; the measuring half
 * re-runs this file inside it (`--inner`).
 *
 * Usage (root): deno run -A scripts/bench_netlink.ts
 */

import { IP, IPNet } from "../ffi/ip.ts";
import { Netlink } from "../ffi/netlink/mod.ts";

const INSTALL = 5_000;
const REPLACES = 20_000;

interface Figures {
  installSeconds: number;
  replacesPerSecond: number;
  routesAfter: number;
}

function inner(): Figures {
  using nl = Netlink.open();
  const v0 = nl.linkGet("v0");
  if (!v0) throw new Error("Cannot find v0 in the benchmark namespace");
  const dst = (i: number) => IPNet.mustParse(`10.210.${i >> 8}.${i & 255}/32`);
  const gateway = IP.mustParse("10.0.0.2");
  let t0 = performance.now();
  for (let i = 0; i < INSTALL; i++) nl.routeReplace({ dst: dst(i), oif: v0.index });
  const installSeconds = (performance.now() - t0) / 1000;
  // Replacing existing routes: the steady-state cost of a reconcile loop.
  t0 = performance.now();
  for (let i = 0; i < REPLACES; i++) {
    nl.routeReplace({ dst: dst(i % INSTALL), gateway, oif: v0.index });
  }
  const replacesPerSecond = REPLACES / ((performance.now() - t0) / 1000);
  const routesAfter = nl.routeList().filter((r) => r.dst.toString().startsWith("10.210.")).length;
  return { installSeconds, replacesPerSecond, routesAfter };
}

async function sh(cmd: string[], stdin?: string): Promise<string> {
  const p = new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin !== undefined) {
    const w = p.stdin.getWriter();
    await w.write(new TextEncoder().encode(stdin));
    await w.close();
  }
  const out = await p.output();
  const dec = new TextDecoder();
  if (!out.success) {
    throw new Error(`${cmd.join(" ")}: exit ${out.code}: ${dec.decode(out.stderr)}`);
  }
  return dec.decode(out.stdout);
}

async function outer(): Promise<void> {
  const hex = Array.from(
    crypto.getRandomValues(new Uint8Array(2)),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
  const ns = `fl${hex}-bn`;
  const x = (...a: string[]) => sh(["ip", "netns", "exec", ns, ...a]);
  await sh(["ip", "netns", "add", ns]);
  try {
    await x("ip", "link", "set", "lo", "up");
    await x("ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1");
    await x("ip", "link", "set", "v0", "up");
    await x("ip", "link", "set", "v1", "up");
    await x("ip", "addr", "add", "10.0.0.1/24", "dev", "v0");

    // Baseline: iproute2, one process, the same two phases.
    const lines = (n: number, via: string) =>
      Array.from(
        { length: n },
        (_, i) =>
          `route replace 10.220.${(i % INSTALL) >> 8}.${(i % INSTALL) & 255}/32 ${via}dev v0\n`,
      ).join("");
    let t0 = performance.now();
    await x("ip", "-batch", "-").catch(() => "");
    const spawnCost = (performance.now() - t0) / 1000; // process start, subtracted below
    t0 = performance.now();
    await sh(["ip", "netns", "exec", ns, "ip", "-batch", "-"], lines(INSTALL, ""));
    const ipInstall = (performance.now() - t0) / 1000 - spawnCost;
    t0 = performance.now();
    await sh(["ip", "netns", "exec", ns, "ip", "-batch", "-"], lines(REPLACES, "via 10.0.0.2 "));
    const ipRate = REPLACES / ((performance.now() - t0) / 1000 - spawnCost);

    const ours = JSON.parse(
      await x(Deno.execPath(), "run", "-A", new URL(import.meta.url).pathname, "--inner"),
    ) as Figures;
    if (ours.routesAfter !== INSTALL) {
      throw new Error(`Expected ${INSTALL} routes after the run, found ${ours.routesAfter}`);
    }
    const row = (name: string, a: string, b: string, r: string) =>
      console.log(`${name.padEnd(34)}${a.padStart(14)}${b.padStart(14)}${r.padStart(10)}`);
    row("netlink (ffi/netlink)", "flannel-deno", "ip -batch", "speed");
    row(
      `install ${INSTALL} routes (s)`,
      ours.installSeconds.toFixed(3),
      ipInstall.toFixed(3),
      (ipInstall / ours.installSeconds).toFixed(2) + "x",
    );
    row(
      `route replaces per second`,
      ours.replacesPerSecond.toFixed(0),
      ipRate.toFixed(0),
      (ours.replacesPerSecond / ipRate).toFixed(2) + "x",
    );
  } finally {
    await sh(["ip", "netns", "del", ns]);
  }
}

if (import.meta.main) {
  if (Deno.args[0] === "--inner") console.log(JSON.stringify(inner()));
  else await outer();
}
