import assert from "node:assert/strict";
import { BLACKHOLE_METRIC, type BlackholeOps, setUpHost } from "../../lib/host/mod.ts";
import { FirewallError, type FirewallRunner } from "../../lib/firewall/mod.ts";
import type { RouteInfo, RouteSpec } from "../../ffi/netlink/mod.ts";
import { IPNet } from "../../lib/ip.ts";
import { logCapture } from "../helpers.ts";

const OPTS = {
  ipMasq: true,
  ipMasqFullyRandomDisable: false,
  iptablesForwardRules: true,
  iptablesResync: 5,
  ipBlackholeRoute: false,
};
const NET = IPNet.mustParse("10.1.0.0/16");
const SUB = IPNet.mustParse("10.1.15.0/24");

const show = (r: RouteSpec) => JSON.stringify({ ...r, dst: r.dst.toString() });

/** A runner that records restores over an empty ruleset. */
function runner(randomFully = true): FirewallRunner & { restores: string[] } {
  const restores: string[] = [];
  return {
    version: "iptables-restore v1.8.9 (fake)",
    randomFully,
    restores,
    save: () => Promise.resolve(""),
    restore: (input) => {
      restores.push(input);
      return Promise.resolve();
    },
  };
}

function routes(
  list: (Omit<Partial<RouteInfo>, "dst"> & { dst: string })[] = [],
): BlackholeOps & { calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    routeList: () =>
      list.map((r): RouteInfo => ({
        gateway: null,
        oif: null,
        table: 254,
        protocol: 3,
        scope: 0,
        type: 1,
        flags: 0,
        prefsrc: null,
        priority: null,
        onlink: false,
        kernel: false,
        ...r,
        dst: IPNet.mustParse(r.dst),
      })),
    routeReplace: (r: RouteSpec) => void calls.push(`replace ${show(r)}`),
    routeDel: (r: RouteSpec) => void calls.push(`del ${show(r)}`),
  };
}

Deno.test("setUpHost() installs masquerade with --random-fully unless disabled or unsupported", async (t) => {
  using log = logCapture();
  const rows: [string, boolean, boolean, boolean][] = [
    ["supported and wanted", false, true, true],
    ["--ip-masq-fully-random-disable", true, true, false],
    ["iptables without --random-fully", false, false, false],
  ];
  for (const [name, disable, supported, want] of rows) {
    await t.step(name, async () => {
      const r = runner(supported);
      const h = await setUpHost(
        { ...OPTS, ipMasqFullyRandomDisable: disable },
        NET,
        SUB,
        { routes: routes(), openFirewall: () => Promise.resolve(r) },
      );
      assert.ok(h.firewall?.installed);
      assert.equal(r.restores.length, 1);
      assert.equal(r.restores[0].includes("--random-fully"), want);
      assert.match(r.restores[0], /^\*nat$/m);
      assert.match(r.restores[0], /^\*filter$/m);
    });
  }
  assert.match(log.lines.join(""), /has no MASQUERADE --random-fully: masquerading without it/);
});

Deno.test("setUpHost() without iptables: --ip-masq fails, default forward rules warn, none asks nothing", async () => {
  using log = logCapture();
  const missing = (why: string) =>
    Promise.reject(new FirewallError(`${why} needs iptables-restore, which is not installed`));
  await assert.rejects(
    setUpHost(OPTS, NET, SUB, { routes: routes(), openFirewall: missing }),
    /^FirewallError: --ip-masq needs iptables-restore, which is not installed$/,
  );
  const fwd = await setUpHost({ ...OPTS, ipMasq: false }, NET, SUB, {
    routes: routes(),
    openFirewall: missing,
  });
  assert.equal(fwd.firewall, null);
  assert.match(log.lines.join(""), /--iptables-forward-rules needs iptables-restore/);
  let opened = 0;
  const none = await setUpHost(
    { ...OPTS, ipMasq: false, iptablesForwardRules: false },
    NET,
    SUB,
    { routes: routes(), openFirewall: () => (opened++, missing("x")) },
  );
  assert.equal(none.firewall, null);
  assert.equal(opened, 0, "no tool is even looked for");
  await none.keep(AbortSignal.abort());
});

Deno.test("setUpHost() --ip-blackhole-route adds ours once and removes only flannel's stale ones", async () => {
  using log = logCapture();
  const stale = [
    { dst: "10.1.9.0/24", type: 6, priority: BLACKHOLE_METRIC }, // an earlier lease's: removed
    { dst: "10.1.8.0/24", type: 6, priority: null }, // someone else's blackhole: kept
    { dst: "192.168.7.0/24", type: 6, priority: BLACKHOLE_METRIC }, // outside the Network: kept
    { dst: "10.1.7.0/24", type: 1, priority: BLACKHOLE_METRIC }, // not a blackhole: kept
  ];
  const opts = { ...OPTS, ipMasq: false, iptablesForwardRules: false, ipBlackholeRoute: true };
  const absent = routes(stale);
  await setUpHost(opts, NET, SUB, { routes: absent });
  assert.deepEqual(absent.calls, [
    'del {"dst":"10.1.9.0/24","type":6,"metric":1024}',
    'replace {"dst":"10.1.15.0/24","type":6,"metric":1024}',
  ]);
  const present = routes([...stale, { dst: "10.1.15.0/24", type: 6, priority: BLACKHOLE_METRIC }]);
  await setUpHost(opts, NET, SUB, { routes: present });
  assert.deepEqual(present.calls, ['del {"dst":"10.1.9.0/24","type":6,"metric":1024}']);
  assert.match(log.lines.join(""), /Blackhole route for 10\.1\.15\.0\/24 \(metric 1024\) in place/);
});

Deno.test("HostSetup.keep() restores a deleted blackhole route every period", async () => {
  using log = logCapture();
  const list: { dst: string; type: number; priority: number }[] = [];
  const rt = routes(list);
  const ops: BlackholeOps = {
    routeList: rt.routeList,
    routeDel: rt.routeDel,
    routeReplace: (r) => {
      rt.routeReplace(r);
      list.push({ dst: r.dst.toString(), type: 6, priority: BLACKHOLE_METRIC });
    },
  };
  const opts = {
    ...OPTS,
    ipMasq: false,
    iptablesForwardRules: false,
    ipBlackholeRoute: true,
    iptablesResync: 0.02,
  };
  const h = await setUpHost(opts, NET, SUB, { routes: ops });
  assert.equal(list.length, 1);
  const stop = new AbortController();
  const kept = h.keep(stop.signal);
  list.length = 0; // someone deleted it
  const deadline = Date.now() + 5000;
  while (list.length === 0) {
    assert.ok(Date.now() < deadline, "not restored");
    await new Promise((r) => setTimeout(r, 10));
  }
  await new Promise((r) => setTimeout(r, 100));
  stop.abort();
  await kept;
  assert.equal(rt.calls.filter((c) => c.startsWith("replace")).length, 2, "restored once only");
  assert.match(log.lines.join(""), /was removed by someone else: restored/);
});
