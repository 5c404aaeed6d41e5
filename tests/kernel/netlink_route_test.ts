/**
 * The netlink verbs against the kernel, as root, each test in a fresh namespace that it removes.
 * The verbs run in tests/kernel/netlink_child.ts under `ip netns exec`; iproute2 is the oracle.
 */

import { deepStrictEqual as assertEquals, match, ok } from "node:assert/strict";
import { asRoot } from "./root.ts";

interface Res {
  ok?: unknown;
  err?: { code: string; message: string };
}

const CHILD = new URL("./netlink_child.ts", import.meta.url).pathname;

async function run(cmd: string[]): Promise<string> {
  const out = await new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  const dec = new TextDecoder();
  if (!out.success) {
    throw new Error(`${cmd.join(" ")}: exit ${out.code}: ${dec.decode(out.stderr)}`);
  }
  return dec.decode(out.stdout);
}

/** A namespace `fl<hex>-nl` with lo up and a veth pair v0 (10.0.0.1/24) / v1, removed after. */
async function withNs(fn: (ns: string, v0: number) => Promise<void>): Promise<void> {
  const ns = `fl${
    crypto.getRandomValues(new Uint8Array(2)).reduce((s, b) =>
      s + b.toString(16).padStart(2, "0"), "")
  }-nl`;
  await run(["ip", "netns", "add", ns]);
  try {
    const x = (...a: string[]) => run(["ip", "netns", "exec", ns, ...a]);
    await x("ip", "link", "set", "lo", "up");
    await x("ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1");
    await x("ip", "link", "set", "v0", "up");
    await x("ip", "link", "set", "v1", "up");
    await x("ip", "addr", "add", "10.0.0.1/24", "dev", "v0");
    const v0 = JSON.parse(await x("ip", "-j", "link", "show", "v0"))[0].ifindex as number;
    await fn(ns, v0);
  } finally {
    await run(["ip", "netns", "del", ns]);
  }
}

/** Runs verbs in the namespace; returns one result per op. */
async function verbs(ns: string, ops: unknown[][]): Promise<Res[]> {
  return JSON.parse(
    await run([
      "ip",
      "netns",
      "exec",
      ns,
      Deno.execPath(),
      "run",
      "-A",
      CHILD,
      JSON.stringify(ops),
    ]),
  );
}

// deno-lint-ignore no-explicit-any
async function ipj(ns: string, ...args: string[]): Promise<any> {
  const text = await run(["ip", "netns", "exec", ns, ...args]);
  return JSON.parse(text.trim() || "[]");
}

Deno.test(
  asRoot("linkAddVxlan() creates the link `ip -d -j link` reads back; EEXIST on a duplicate"),
  async () => {
    await withNs(async (ns, v0) => {
      const spec = {
        name: "flannel.1",
        vni: 1,
        local: "10.0.0.1",
        lowerIndex: v0,
        port: 8472,
        learning: false,
        ttl: 0,
        mtu: 1450,
      };
      const [add, dup, got] = await verbs(ns, [["linkAddVxlan", spec], ["linkAddVxlan", spec], [
        "linkGet",
        "flannel.1",
      ]]);
      assertEquals(add, { ok: null });
      assertEquals(dup.err?.code, "EEXIST");
      assertEquals(dup.err?.message, "RTM_NEWLINK: EEXIST (File exists)");
      const [ipLink] = await ipj(ns, "ip", "-d", "-j", "link", "show", "flannel.1");
      const d = ipLink.linkinfo.info_data;
      assertEquals(ipLink.linkinfo.info_kind, "vxlan");
      assertEquals([d.id, d.port, d.local, d.learning, d.link, ipLink.mtu], [
        1,
        8472,
        "10.0.0.1",
        false,
        "v0",
        1450,
      ]);
      // deno-lint-ignore no-explicit-any
      const link = got.ok as any;
      assertEquals(link.index, ipLink.ifindex);
      assertEquals(link.mac, ipLink.address);
      assertEquals(link.vxlan, {
        vni: 1,
        local: "10.0.0.1",
        lowerIndex: v0,
        port: 8472,
        learning: false,
        ttl: 0,
        group: null,
        gbp: false,
        proxy: false,
        l2miss: false,
        l3miss: false,
      });
      assertEquals(link.up, false);

      const idx = link.index as number;
      const [up, mtu, mac, list, del, gone, missing] = await verbs(ns, [
        ["linkSetUp", idx],
        ["linkSetMtu", idx, 1400],
        ["linkSetAddress", idx, "0e:11:22:33:44:66"],
        ["linkList"],
        ["linkDelete", idx],
        ["linkGet", idx],
        ["linkGet", "nope0"],
      ]);
      assertEquals([up, mtu, mac], [{ ok: null }, { ok: null }, { ok: null }]);
      // deno-lint-ignore no-explicit-any
      const f = (list.ok as any[]).find((l) => l.name === "flannel.1");
      assertEquals([f.up, f.mtu, f.mac, f.kind], [true, 1400, "0e:11:22:33:44:66", "vxlan"]);
      // deno-lint-ignore no-explicit-any
      ok((list.ok as any[]).some((l) => l.name === "v0" && l.kind === "veth"));
      assertEquals([del, gone, missing], [{ ok: null }, { ok: null }, { ok: null }]);
      assertEquals(await ipj(ns, "ip", "-j", "link", "show", "type", "vxlan"), []);
    });
  },
);

Deno.test(
  asRoot("addresses, routes, ARP and FDB entries match `ip -j` and `bridge -j`"),
  async () => {
    await withNs(async (ns, v0) => {
      const [add] = await verbs(ns, [["linkAddVxlan", {
        name: "flannel.1",
        vni: 1,
        local: "10.0.0.1",
        lowerIndex: v0,
      }]]);
      assertEquals(add, { ok: null });
      const fl = JSON.parse(
        await run(["ip", "netns", "exec", ns, "ip", "-j", "link", "show", "flannel.1"]),
      )[0].ifindex as number;
      const mac = "0e:aa:bb:cc:dd:ee";
      const r = await verbs(ns, [
        ["linkSetUp", fl],
        ["addrAdd", fl, "10.1.15.0/32"],
        ["addrAdd", fl, "10.1.15.0/32"],
        ["routeReplace", { dst: "10.1.7.0/24", gateway: "10.1.7.0", oif: fl, onlink: true }],
        ["routeReplace", { dst: "10.2.0.0/16", gateway: "10.0.0.2", oif: v0 }],
        ["routeAdd", { dst: "10.2.0.0/16", gateway: "10.0.0.2", oif: v0 }],
        ["routeReplace", { dst: "0.0.0.0/0", gateway: "10.0.0.254", oif: v0 }],
        ["neighSet", fl, "10.1.7.0", mac],
        ["fdbSet", fl, mac, "10.0.0.2"],
        ["addrList", fl],
        ["routeList"],
        ["neighList", fl],
        ["fdbList", fl],
        ["defaultRoute"],
        ["routeGet", "10.1.7.5"],
        ["routeReplace", { dst: "10.3.0.0/16", oif: 9999 }],
        ["neighSet", 9999, "10.1.7.1", mac],
      ]);
      for (const i of [0, 1, 3, 4, 6, 7, 8]) assertEquals(r[i], { ok: null }, `op ${i}`);
      assertEquals(r[2].err?.code, "EEXIST");
      match(r[2].err!.message, /^RTM_NEWADDR: EEXIST \(File exists\)/);
      assertEquals(r[5].err?.code, "EEXIST");
      match(r[5].err!.message, /^RTM_NEWROUTE: EEXIST \(File exists\)/);
      assertEquals(r[15].err?.code, "ENODEV");
      match(r[15].err!.message, /^RTM_NEWROUTE: ENODEV \(No such device\)/);
      assertEquals(r[16].err?.code, "ENODEV");

      // Addresses.
      const ipAddr =
        (await ipj(ns, "ip", "-4", "-j", "addr", "show", "dev", "flannel.1"))[0].addr_info;
      assertEquals(
        ipAddr.map((a: { local: string; prefixlen: number }) => [a.local, a.prefixlen]),
        [[
          "10.1.15.0",
          32,
        ]],
      );
      assertEquals(r[9].ok, [{ index: fl, address: "10.1.15.0", prefix: 32, scope: 0 }]);

      // Routes: what `ip -d -j route` shows (-d prints "proto boot"), and what routeList() decodes.
      const ipRoutes = await ipj(ns, "ip", "-d", "-j", "route", "show");
      const onlink = ipRoutes.find((x: { dst: string }) => x.dst === "10.1.7.0/24");
      assertEquals([onlink.gateway, onlink.dev, onlink.flags, onlink.protocol], [
        "10.1.7.0",
        "flannel.1",
        ["onlink"],
        "boot",
      ]);
      const gw = ipRoutes.find((x: { dst: string }) => x.dst === "10.2.0.0/16");
      assertEquals([gw.gateway, gw.dev], ["10.0.0.2", "v0"]);
      // deno-lint-ignore no-explicit-any
      const routes = r[10].ok as any[];
      assertEquals(routes.length, ipRoutes.length);
      const ours = routes.find((x) => x.dst === "10.1.7.0/24");
      assertEquals([ours.gateway, ours.oif, ours.flags & 4, ours.protocol, ours.table], [
        "10.1.7.0",
        fl,
        4,
        3,
        254,
      ]);
      ok(routes.some((x) => x.dst === "0.0.0.0/0" && x.gateway === "10.0.0.254"));
      assertEquals(r[13].ok, { index: v0, gateway: "10.0.0.254" });
      // deno-lint-ignore no-explicit-any
      const got = r[14].ok as any;
      assertEquals([got.gateway, got.oif, got.prefsrc], ["10.1.7.0", fl, "10.1.15.0"]);

      // ARP and FDB.
      const ipNeigh = await ipj(ns, "ip", "-j", "neigh", "show", "dev", "flannel.1");
      assertEquals(
        ipNeigh.map((
          n: { dst: string; lladdr: string; state: string[] },
        ) => [n.dst, n.lladdr, n.state]),
        [
          ["10.1.7.0", mac, ["PERMANENT"]],
        ],
      );
      assertEquals(r[11].ok, [
        { index: fl, ip: "10.1.7.0", mac, state: 0x80, flags: 0, permanent: true },
      ]);
      const fdb = (await ipj(ns, "bridge", "-j", "fdb", "show", "dev", "flannel.1"))
        .filter((e: { mac: string }) => e.mac === mac);
      assertEquals(
        fdb.map((e: { dst: string; state: string; flags: string[] }) => [e.dst, e.state, e.flags]),
        [
          ["10.0.0.2", "permanent", ["self"]],
        ],
      );
      // deno-lint-ignore no-explicit-any
      assertEquals((r[12].ok as any[]).filter((e) => e.mac === mac), [
        { index: fl, mac, dst: "10.0.0.2", state: 0xc0, flags: 2, permanent: true },
      ]);

      // The kernel keeps several destinations only for the all-zeros (flood) MAC; for a unicast
      // MAC, NLM_F_APPEND is accepted and changes nothing.
      const zero = "00:00:00:00:00:00";
      const d = await verbs(ns, [
        ["fdbAppend", fl, zero, "10.0.0.3"],
        ["fdbAppend", fl, zero, "10.0.0.4"],
        ["fdbList", fl],
        ["fdbDel", fl, zero, "10.0.0.3"],
        ["fdbDel", fl, zero, "10.0.0.4"],
        ["fdbDel", fl, mac, "10.0.0.2"],
        ["neighDel", fl, "10.1.7.0"],
        ["routeDel", { dst: "10.1.7.0/24", gateway: "10.1.7.0", oif: fl }],
        ["routeDel", { dst: "10.1.7.0/24", gateway: "10.1.7.0", oif: fl }],
        ["addrDel", fl, "10.1.15.0/32"],
      ]);
      for (const i of [0, 1, 3, 4, 5, 6, 7, 9]) assertEquals(d[i], { ok: null }, `op ${i}`);
      // deno-lint-ignore no-explicit-any
      const flood = (d[2].ok as any[]).filter((e) => e.mac === zero).map((e) => e.dst).sort();
      assertEquals(flood, ["10.0.0.3", "10.0.0.4"]);
      assertEquals(d[8].err?.code, "ESRCH");
      match(d[8].err!.message, /^RTM_DELROUTE: ESRCH \(No such process\)/);
      const left = (await ipj(ns, "bridge", "-j", "fdb", "show", "dev", "flannel.1"))
        .filter((e: { mac: string }) => e.mac === mac || e.mac === zero);
      assertEquals(left, []);
      assertEquals(await ipj(ns, "ip", "-j", "neigh", "show", "dev", "flannel.1"), []);
      assertEquals(await ipj(ns, "ip", "-j", "route", "show", "10.1.7.0/24"), []);
    });
  },
);

Deno.test(asRoot("a dump of 10,000 routes completes and parses"), async () => {
  await withNs(async (ns, v0) => {
    const [bulk, list] = await verbs(ns, [["bulkRoutes", 10_000, v0], ["routeList"]]);
    ok(typeof bulk.ok === "number");
    // deno-lint-ignore no-explicit-any
    const routes = list.ok as any[];
    const ipCount = (await ipj(ns, "ip", "-j", "route", "show")).length;
    assertEquals(routes.length, ipCount);
    assertEquals(routes.filter((x) => x.dst.startsWith("10.200.")).length, 10_000);
    ok(routes.some((x) => x.dst === "10.200.39.15/32" && x.oif === v0 && x.scope === 253));
  });
});

Deno.test(asRoot("subscribe() delivers a route added by `ip` and ends on abort"), async () => {
  await withNs(async (ns) => {
    const child = new Deno.Command("ip", {
      args: [
        "netns",
        "exec",
        ns,
        Deno.execPath(),
        "run",
        "-A",
        CHILD,
        JSON.stringify([["watch", ["route", "link"], "10.9.0.0/16"]]),
      ],
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    const nextLine = async (): Promise<string> => {
      while (!buf.includes("\n")) {
        const { value, done } = await lines.read();
        if (done) throw new Error(`Child ended early: ${buf}`);
        buf += value;
      }
      const i = buf.indexOf("\n");
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      return line;
    };
    try {
      assertEquals(await nextLine(), "ready");
      await run(["ip", "netns", "exec", ns, "ip", "route", "add", "10.9.0.0/16", "dev", "v0"]);
      const ev = JSON.parse(await nextLine());
      assertEquals([ev.kind, ev.type, ev.route.dst, ev.route.protocol], [
        "route",
        "new",
        "10.9.0.0/16",
        3,
      ]);
      assertEquals(await nextLine(), "ended");
    } finally {
      await lines.cancel();
      const status = await child.status;
      assertEquals(status.code, 0);
    }
  });
});

Deno.test(
  asRoot("subscribe() reports ENOBUFS as resync and keeps delivering afterwards"),
  async () => {
    await withNs(async (ns, v0) => {
      const out = await run([
        "ip",
        "netns",
        "exec",
        ns,
        Deno.execPath(),
        "run",
        "-A",
        CHILD,
        JSON.stringify([["overrun", v0]]),
      ]);
      const r = JSON.parse(out);
      ok(r.resyncs >= 1, `resync reported: ${out}`);
      ok(r.after?.startsWith("10.250."), `a change after the resync arrives: ${out}`);
    });
  },
);

Deno.test(
  asRoot(
    "IPv6 verbs: vxlan over IPv6, /128 nodad, onlink route, NDP and FDB entries, dumps by family",
  ),
  async () => {
    await withNs(async (ns, v0) => {
      const spec = {
        name: "flannel-v6.1",
        vni: 1,
        local: "fd00::1",
        lowerIndex: v0,
        port: 8472,
        learning: false,
        ttl: 0,
        mtu: 1430,
      };
      const [a0, add, got] = await verbs(ns, [
        ["addrAdd", v0, "fd00::1/64", { nodad: true }],
        ["linkAddVxlan", spec],
        ["linkGet", "flannel-v6.1"],
      ]);
      assertEquals([a0, add], [{ ok: null }, { ok: null }]);
      const [ipLink] = await ipj(ns, "ip", "-d", "-j", "link", "show", "flannel-v6.1");
      assertEquals(ipLink.linkinfo.info_data.local6, "fd00::1");
      // deno-lint-ignore no-explicit-any
      const link = got.ok as any;
      assertEquals(link.vxlan.local, "fd00::1");
      const idx = link.index as number;
      const res = await verbs(ns, [
        ["linkSetUp", idx],
        ["addrAdd", idx, "fc00:0:0:22::/128", { nodad: true }],
        ["routeReplace", {
          dst: "fc00:0:0:7::/64",
          gateway: "fc00:0:0:7::",
          oif: idx,
          onlink: true,
          protocol: 102,
        }],
        ["neighSet", idx, "fc00:0:0:7::", "0e:aa:bb:cc:dd:ff"],
        ["fdbSet", idx, "0e:aa:bb:cc:dd:ff", "fd00::2"],
        ["routeReplace", { dst: "::/0", gateway: "fd00::fe", oif: v0 }],
        ["addrList", idx, 6],
        ["routeList", 254, 6],
        ["neighList", idx, 6],
        ["fdbList", idx],
        ["routeGet", "fd00::2"],
        ["defaultRoute", 6],
        ["addrList", idx],
      ]);
      for (const r of res.slice(0, 6)) assertEquals(r, { ok: null });
      // deno-lint-ignore no-explicit-any
      const [addrs, routes, neighs, fdb, get, def, addrs4] = res.slice(6).map((r) => r.ok as any);
      ok(
        // deno-lint-ignore no-explicit-any
        addrs.some((a: any) => a.address === "fc00:0:0:22::" && a.prefix === 128),
        JSON.stringify(addrs),
      );
      assertEquals(addrs4, [], "the IPv4 dump holds no IPv6 address");
      // deno-lint-ignore no-explicit-any
      const r = routes.find((x: any) => x.dst === "fc00:0:0:7::/64");
      assertEquals(
        [r.gateway, r.oif, r.onlink, r.protocol, r.priority],
        ["fc00:0:0:7::", idx, true, 102, 1024],
      );
      // deno-lint-ignore no-explicit-any
      const n = neighs.find((x: any) => x.ip === "fc00:0:0:7::");
      assertEquals([n.mac, n.permanent], ["0e:aa:bb:cc:dd:ff", true]);
      // deno-lint-ignore no-explicit-any
      const f = fdb.find((x: any) => x.mac === "0e:aa:bb:cc:dd:ff");
      assertEquals([f.dst, f.permanent], ["fd00::2", true]);
      assertEquals([get.oif, get.gateway, get.prefsrc], [v0, null, "fd00::1"]);
      assertEquals(def, { index: v0, gateway: "fd00::fe" });
      // iproute2 agrees.
      const [ir] = await ipj(ns, "ip", "-6", "-j", "route", "show", "fc00:0:0:7::/64");
      assertEquals([ir.gateway, ir.dev, ir.flags, ir.protocol], [
        "fc00:0:0:7::",
        "flannel-v6.1",
        ["onlink"],
        "102",
      ]);
      const [nd] = await ipj(ns, "ip", "-6", "-j", "neigh", "show", "fc00:0:0:7::");
      assertEquals([nd.lladdr, nd.state], ["0e:aa:bb:cc:dd:ff", ["PERMANENT"]]);
      const del = await verbs(ns, [
        ["routeDel", { dst: "fc00:0:0:7::/64", gateway: "fc00:0:0:7::", oif: idx, protocol: 102 }],
        ["neighDel", idx, "fc00:0:0:7::"],
        ["fdbDel", idx, "0e:aa:bb:cc:dd:ff", "fd00::2"],
        ["addrDel", idx, "fc00:0:0:22::/128"],
      ]);
      for (const d of del) assertEquals(d, { ok: null });
      assertEquals(await ipj(ns, "ip", "-6", "-j", "route", "show", "fc00:0:0:7::/64"), []);
      assertEquals(await ipj(ns, "ip", "-6", "-j", "neigh", "show", "fc00:0:0:7::"), []);
    });
  },
);

Deno.test(
  asRoot("blackhole routes of both families: replace, list by family, delete, as iproute2 reads"),
  async () => {
    await withNs(async (ns) => {
      const bh4 = { dst: "10.1.15.0/24", type: 6, metric: 1024 };
      const bh6 = { dst: "fc00:0:0:22::/64", type: 6, metric: 1024 };
      const res = await verbs(ns, [
        ["routeReplace", bh4],
        ["routeReplace", bh6],
        ["routeReplace", bh6], // a replace of what is there is no error
        ["routeList", 254, 4],
        ["routeList", 254, 6],
      ]);
      for (const r of res.slice(0, 3)) assertEquals(r, { ok: null });
      // deno-lint-ignore no-explicit-any
      const pick = (list: any[]) =>
        // deno-lint-ignore no-explicit-any
        list.filter((r: any) => r.type === 6).map((r: any) => [r.dst, r.priority]);
      assertEquals(pick(res[3].ok as unknown[]), [["10.1.15.0/24", 1024]]);
      assertEquals(pick(res[4].ok as unknown[]), [["fc00:0:0:22::/64", 1024]]);
      const six = await ipj(ns, "ip", "-6", "-j", "route", "show", "type", "blackhole");
      // deno-lint-ignore no-explicit-any
      assertEquals(six.map((r: any) => [r.type, r.dst, r.metric]), [[
        "blackhole",
        "fc00:0:0:22::/64",
        1024,
      ]]);
      const del = await verbs(ns, [["routeDel", bh6], ["routeDel", bh6], ["routeDel", bh4]]);
      assertEquals(del[0], { ok: null });
      assertEquals(del[1].err?.code, "ESRCH");
      assertEquals(del[2], { ok: null });
      assertEquals(await ipj(ns, "ip", "-6", "-j", "route", "show", "type", "blackhole"), []);
      assertEquals(await ipj(ns, "ip", "-4", "-j", "route", "show", "type", "blackhole"), []);
    });
  },
);
