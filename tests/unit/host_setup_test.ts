import assert from "node:assert/strict";
import { BLACKHOLE_METRIC, type BlackholeOps, setUpHost } from "../../lib/host_setup.ts";
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

Deno.test("setUpHost() --ip-blackhole-route replaces ours and removes only flannel's stale ones", async () => {
  using _log = logCapture();
  const rt = routes([
    { dst: "10.1.9.0/24", type: 6, priority: BLACKHOLE_METRIC }, // an earlier lease's: removed
    { dst: "10.1.15.0/24", type: 6, priority: BLACKHOLE_METRIC }, // ours: replaced in place
    { dst: "10.1.8.0/24", type: 6, priority: null }, // someone else's blackhole: kept
    { dst: "192.168.7.0/24", type: 6, priority: BLACKHOLE_METRIC }, // outside the Network: kept
    { dst: "10.1.7.0/24", type: 1, priority: BLACKHOLE_METRIC }, // not a blackhole: kept
  ]);
  await setUpHost(
    { ...OPTS, ipMasq: false, iptablesForwardRules: false, ipBlackholeRoute: true },
    NET,
    SUB,
    { routes: rt },
  );
  assert.deepEqual(rt.calls, [
    'del {"dst":"10.1.9.0/24","type":6,"metric":1024}',
    'replace {"dst":"10.1.15.0/24","type":6,"metric":1024}',
  ]);
});
