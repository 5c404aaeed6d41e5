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
const V4 = [{ network: NET, subnet: SUB }];
const NET6 = IPNet.mustParse("fc00::/48");
const SUB6 = IPNet.mustParse("fc00:0:0:22::/64");
const DUAL = [...V4, { network: NET6, subnet: SUB6 }];

const show = (r: RouteSpec) => JSON.stringify({ ...r, dst: r.dst.toString() });

/** A runner that records restores over an empty ruleset. */
function runner(
  randomFully = true,
  tool: "iptables" | "ip6tables" = "iptables",
): FirewallRunner & { restores: string[] } {
  const restores: string[] = [];
  return {
    tool,
    version: `${tool}-restore v1.8.9 (fake)`,
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
    // Like the kernel's dump, one family at a time.
    routeList: (_table, family = 4) =>
      list.filter((r) => IPNet.mustParse(r.dst).family === family).map((r): RouteInfo => ({
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
        V4,
        { routes: routes(), openFirewall: () => Promise.resolve(r) },
      );
      assert.equal(h.firewalls.length, 1);
      assert.ok(h.firewalls[0].installed);
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
    setUpHost(OPTS, V4, { routes: routes(), openFirewall: missing }),
    /^FirewallError: --ip-masq needs iptables-restore, which is not installed$/,
  );
  const fwd = await setUpHost({ ...OPTS, ipMasq: false }, V4, {
    routes: routes(),
    openFirewall: missing,
  });
  assert.deepEqual(fwd.firewalls, []);
  assert.match(log.lines.join(""), /--iptables-forward-rules needs iptables-restore/);
  let opened = 0;
  const none = await setUpHost(
    { ...OPTS, ipMasq: false, iptablesForwardRules: false },
    DUAL,
    { routes: routes(), openFirewall: () => (opened++, missing("x")) },
  );
  assert.deepEqual(none.firewalls, []);
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
  await setUpHost(opts, V4, { routes: absent });
  assert.deepEqual(absent.calls, [
    'del {"dst":"10.1.9.0/24","type":6,"metric":1024}',
    'replace {"dst":"10.1.15.0/24","type":6,"metric":1024}',
  ]);
  const present = routes([...stale, { dst: "10.1.15.0/24", type: 6, priority: BLACKHOLE_METRIC }]);
  await setUpHost(opts, V4, { routes: present });
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
  const h = await setUpHost(opts, V4, { routes: ops });
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

Deno.test("setUpHost() on a dual-stack network keeps iptables and ip6tables rules, each its own", async () => {
  using log = logCapture();
  const r4 = runner(true, "iptables");
  const r6 = runner(true, "ip6tables");
  const asked: string[] = [];
  const h = await setUpHost(OPTS, DUAL, {
    routes: routes(),
    openFirewall: (why, family) => {
      asked.push(`${why} ${family}`);
      return Promise.resolve(family === 4 ? r4 : r6);
    },
  });
  assert.deepEqual(asked, ["--ip-masq 4", "--ip-masq 6"]);
  assert.deepEqual(h.firewalls.map((f) => [f.tool, f.installed]), [
    ["iptables", true],
    ["ip6tables", true],
  ]);
  assert.equal(r4.restores.length, 1);
  assert.equal(r6.restores.length, 1);
  assert.match(r4.restores[0], /^-A FLANNEL-POSTRTG -s 10\.1\.0\.0\/16 ! -d 224\.0\.0\.0\/4 /m);
  assert.doesNotMatch(r4.restores[0], /fc00/);
  assert.match(r6.restores[0], /^-A FLANNEL-POSTRTG -s fc00:0:0:22::\/64 -d fc00::\/48 /m);
  assert.match(
    r6.restores[0],
    /^-A FLANNEL-POSTRTG -s fc00::\/48 ! -d ff00::\/8 .*--random-fully$/m,
  );
  assert.match(r6.restores[0], /^-A FLANNEL-FWD -d fc00::\/48 /m);
  assert.doesNotMatch(r6.restores[0], /10\.1\./);
  assert.match(log.lines.join(""), /Installed firewall rules with ip6tables-restore v1\.8\.9/);
});

Deno.test("setUpHost() without ip6tables: --ip-masq fails, default forward rules warn and keep IPv4's", async () => {
  using log = logCapture();
  const r4 = runner();
  const no6 = (why: string, family: 4 | 6) =>
    family === 4 ? Promise.resolve(r4) : Promise.reject(
      new FirewallError(`${why} needs ip6tables-restore, which is not installed`),
    );
  await assert.rejects(
    setUpHost(OPTS, DUAL, { routes: routes(), openFirewall: no6 }),
    /^FirewallError: --ip-masq needs ip6tables-restore, which is not installed$/,
  );
  const fwd = await setUpHost({ ...OPTS, ipMasq: false }, DUAL, {
    routes: routes(),
    openFirewall: no6,
  });
  assert.deepEqual(fwd.firewalls.map((f) => f.tool), ["iptables"]);
  assert.match(
    log.lines.join(""),
    /--iptables-forward-rules needs ip6tables-restore, which is not installed; no FORWARD rules/,
  );
  // An IPv6-only network never looks for iptables.
  const asked: number[] = [];
  const only6 = await setUpHost({ ...OPTS, ipMasq: false }, [{ network: NET6, subnet: SUB6 }], {
    routes: routes(),
    openFirewall: (why, family) => (asked.push(family), no6(why, family)),
  });
  assert.deepEqual(asked, [6]);
  assert.deepEqual(only6.firewalls, []);
});

Deno.test("setUpHost() --ip-blackhole-route on a dual-stack network: one per family, stale ones per family", async () => {
  using log = logCapture();
  const opts = { ...OPTS, ipMasq: false, iptablesForwardRules: false, ipBlackholeRoute: true };
  const rt = routes([
    { dst: "fc00:0:0:9::/64", type: 6, priority: BLACKHOLE_METRIC }, // an earlier IPv6 lease's
    { dst: "fd99::/64", type: 6, priority: BLACKHOLE_METRIC }, // outside the IPv6Network: kept
    { dst: "10.1.9.0/24", type: 6, priority: BLACKHOLE_METRIC }, // an earlier IPv4 lease's
  ]);
  await setUpHost(opts, DUAL, { routes: rt });
  assert.deepEqual(rt.calls, [
    'del {"dst":"10.1.9.0/24","type":6,"metric":1024}',
    'replace {"dst":"10.1.15.0/24","type":6,"metric":1024}',
    'del {"dst":"fc00:0:0:9::/64","type":6,"metric":1024}',
    'replace {"dst":"fc00:0:0:22::/64","type":6,"metric":1024}',
  ]);
  assert.match(
    log.lines.join(""),
    /Blackhole route for fc00:0:0:22::\/64 \(metric 1024\) in place/,
  );
});
