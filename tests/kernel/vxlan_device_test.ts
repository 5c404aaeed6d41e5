/**
 * ensureDevice() against the kernel: a `flannel.1` whose modes differ from the config is
 * recreated with the right ones and its MAC kept; a matching one is reused untouched. Each case
 * runs in a fresh namespace (`fl<hex>-vx`) with a veth v0 (10.0.0.1/24); iproute2's
 * `ip -d -j link` is the oracle. ensureDevice runs in a child under `ip netns exec` (a Deno
 * process cannot move its threads into another namespace).
 */

import assert from "node:assert/strict";
import { createNamespace, deleteNamespace, run, uniqueTag } from "../harness/netns.ts";
import { asRoot } from "./root.ts";

const mod = (p: string) => JSON.stringify(new URL(p, import.meta.url).href);

/** Runs ensureDevice with `spec` (lowerIndex filled in) in `ns`; prints its log lines. */
const CHILD = `
const { Netlink } = await import(${mod("../../ffi/netlink/mod.ts")});
const { ensureDevice } = await import(${mod("../../lib/backend/vxlan/device.ts")});
const { logger } = await import(${mod("../../lib/log.ts")});
const { IP } = await import(${mod("../../ffi/ip.ts")});
const spec = JSON.parse(Deno.args[0]);
spec.local = IP.mustParse(spec.local);
using nl = Netlink.open();
spec.lowerIndex = nl.linkGet("v0").index;
ensureDevice(nl, spec, logger("vxlan"));
`;

interface Spec {
  learning: boolean;
  gbp: boolean;
}

async function ok(cmd: string[]): Promise<string> {
  const r = await run(cmd);
  if (r.code !== 0) throw new Error(`${cmd.join(" ")}: exit ${r.code}: ${r.stderr}`);
  return r.stdout + r.stderr;
}

// deno-lint-ignore no-explicit-any
async function link(ns: string): Promise<any> {
  const [l] = JSON.parse(await ok(["ip", "-n", ns, "-d", "-j", "link", "show", "flannel.1"]));
  return l;
}

/** Creates flannel.1 with `ipArgs`, runs ensureDevice(spec); returns the link before and after. */
async function withDevice(ipArgs: string[], want: Spec) {
  const ns = `${uniqueTag()}-vx`;
  await createNamespace(ns);
  try {
    await ok(["ip", "-n", ns, "link", "add", "v0", "type", "veth", "peer", "name", "v1"]);
    await ok(["ip", "-n", ns, "link", "set", "v0", "up"]);
    await ok(["ip", "-n", ns, "addr", "add", "10.0.0.1/24", "dev", "v0"]);
    await ok([
      "ip",
      "-n",
      ns,
      "link",
      "add",
      "flannel.1",
      "address",
      "0e:11:22:33:44:55",
      "type",
      "vxlan",
      "id",
      "1",
      "local",
      "10.0.0.1",
      "dev",
      "v0",
      "dstport",
      "8472",
      ...ipArgs,
    ]);
    const before = await link(ns);
    const spec = {
      name: "flannel.1",
      vni: 1,
      local: "10.0.0.1",
      port: 8472,
      mtu: 1450,
      ...want,
    };
    const log = await ok([
      "ip",
      "netns",
      "exec",
      ns,
      Deno.execPath(),
      "eval",
      CHILD,
      JSON.stringify(spec),
    ]);
    return { before, after: await link(ns), log };
  } finally {
    deleteNamespace(ns);
  }
}

// deno-lint-ignore no-explicit-any
function modes(l: any) {
  const d = l.linkinfo.info_data;
  return {
    learning: d.learning === true,
    gbp: d.gbp === true,
    proxy: d.proxy === true,
    l2miss: d.l2miss === true,
    l3miss: d.l3miss === true,
  };
}

Deno.test(
  asRoot(
    "ensureDevice() recreates upstream v0.4.0's flannel.1 (proxy l2miss l3miss learning), keeping its MAC",
  ),
  async () => {
    const r = await withDevice(["learning", "proxy", "l2miss", "l3miss"], {
      learning: false,
      gbp: false,
    });
    assert.deepEqual(modes(r.before), {
      learning: true,
      gbp: false,
      proxy: true,
      l2miss: true,
      l3miss: true,
    });
    assert.deepEqual(modes(r.after), {
      learning: false,
      gbp: false,
      proxy: false,
      l2miss: false,
      l3miss: false,
    });
    assert.equal(r.after.address, "0e:11:22:33:44:55");
    assert.notEqual(r.after.ifindex, r.before.ifindex, "a new device");
    assert.match(r.log, /incompatible configuration \(learning on, want off\): recreating it/);
    assert.doesNotMatch(r.log, /Reusing device/);
  },
);

Deno.test(
  asRoot("ensureDevice() recreates a device without gbp when the config says GBP, keeping its MAC"),
  async () => {
    const r = await withDevice(["nolearning"], { learning: false, gbp: true });
    assert.equal(modes(r.before).gbp, false);
    assert.deepEqual(modes(r.after), {
      learning: false,
      gbp: true,
      proxy: false,
      l2miss: false,
      l3miss: false,
    });
    assert.equal(r.after.address, "0e:11:22:33:44:55");
    assert.match(r.log, /incompatible configuration \(gbp off, want on\): recreating it/);
  },
);

Deno.test(asRoot("ensureDevice() recreates a device with only proxy on"), async () => {
  const r = await withDevice(["nolearning", "proxy"], { learning: false, gbp: false });
  assert.equal(modes(r.after).proxy, false);
  assert.equal(r.after.address, "0e:11:22:33:44:55");
  assert.match(r.log, /\(proxy on, want off\): recreating it/);
});

Deno.test(asRoot("ensureDevice() reuses a device whose modes match, untouched"), async () => {
  const r = await withDevice(["nolearning"], { learning: false, gbp: false });
  assert.equal(r.after.ifindex, r.before.ifindex);
  assert.equal(r.after.address, "0e:11:22:33:44:55");
  assert.match(r.log, /Reusing device flannel\.1/);
});
