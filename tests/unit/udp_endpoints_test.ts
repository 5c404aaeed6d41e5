/** The udp data path's peer table: longest-prefix lookups, replacement, source checks. */

import assert from "node:assert/strict";
import {
  endpointIp,
  endpointPort,
  EndpointTable,
  packEndpoint,
} from "../../lib/backend/udp/endpoints.ts";
import { parseIPv4 } from "../../lib/ip.ts";

// The data path's peer table works on host-order u32 addresses.
const ip = (s: string) => parseIPv4(s)!.toU32();

Deno.test("packEndpoint() round-trips every address and port exactly", () => {
  for (const [a, p] of [[0, 0], [0xffffffff, 65535], [ip("192.168.1.10"), 8285]]) {
    const e = packEndpoint(a, p);
    assert.equal(endpointIp(e), a);
    assert.equal(endpointPort(e), p);
  }
});

Deno.test("EndpointTable routes addresses inside a subnet and nothing else", () => {
  const t = new EndpointTable();
  t.set(ip("10.1.15.0"), 24, ip("192.168.1.2"), 8285);
  assert.equal(t.lookup(ip("10.1.15.77")), packEndpoint(ip("192.168.1.2"), 8285));
  assert.equal(t.lookup(ip("10.1.15.255")), packEndpoint(ip("192.168.1.2"), 8285));
  assert.equal(t.lookup(ip("10.1.16.0")), -1);
  assert.equal(t.lookup(ip("10.1.14.255")), -1);
});

Deno.test("EndpointTable masks host bits, replaces a route, and tracks sources by reference", () => {
  const t = new EndpointTable();
  t.set(ip("10.1.15.9"), 24, ip("192.168.1.2"), 8285);
  assert.equal(t.size, 1);
  assert.ok(t.isPeer(ip("192.168.1.2"), 8285));
  assert.equal(t.isPeer(ip("192.168.1.2"), 8286), false);
  t.set(ip("10.1.15.0"), 24, ip("192.168.1.3"), 8285); // the subnet moved to another host
  assert.equal(t.size, 1);
  assert.equal(t.isPeer(ip("192.168.1.2"), 8285), false);
  assert.ok(t.isPeer(ip("192.168.1.3"), 8285));
  t.set(ip("10.1.16.0"), 24, ip("192.168.1.3"), 8285); // same host, second subnet
  assert.ok(t.delete(ip("10.1.15.0"), 24));
  assert.ok(t.isPeer(ip("192.168.1.3"), 8285), "still routes 10.1.16.0/24");
  assert.ok(t.delete(ip("10.1.16.0"), 24));
  assert.equal(t.isPeer(ip("192.168.1.3"), 8285), false);
  assert.equal(t.delete(ip("10.1.16.0"), 24), false);
  assert.equal(t.lookup(ip("10.1.16.1")), -1);
});

Deno.test("EndpointTable prefers the longest prefix when lengths differ", () => {
  const t = new EndpointTable();
  t.set(ip("10.1.0.0"), 16, 1, 1);
  t.set(ip("10.1.15.0"), 24, 2, 2);
  assert.equal(t.lookup(ip("10.1.15.1")), packEndpoint(2, 2));
  assert.equal(t.lookup(ip("10.1.16.1")), packEndpoint(1, 1));
});

Deno.test("EndpointTable lookups do not scan the table (10,000 peers)", () => {
  const t = new EndpointTable();
  const nets: number[] = [];
  for (let i = 0; i < 10000; i++) {
    t.set(ip("10.0.0.0") + i * 256, 24, ip("172.16.0.0") + i, 8285);
    nets.push(ip("10.0.0.0") + i * 256);
  }
  assert.equal(t.size, 10000);
  const base = ip("10.0.0.7"); // parsed once: the loops time lookups, not address parsing
  const n = 200_000;
  let hits = 0;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) if (t.lookup(base + (i % 10000) * 256) >= 0) hits++;
  const tableNs = (performance.now() - t0) * 1e6 / n;
  assert.equal(hits, n);
  assert.equal(t.lookup(ip("10.0.0.7") + 10000 * 256), -1);
  // The baseline, measured in the same run so that machine load cancels out: a linear scan of
  // the same 10,000 subnets. A table that scanned would be about as slow; a hashed one is
  // hundreds of times faster, so a factor of 10 is generous.
  const m = 2_000;
  let found = 0;
  const t1 = performance.now();
  for (let i = 0; i < m; i++) {
    const dst = base + ((i * 7919) % 10000) * 256;
    for (let j = 0; j < nets.length; j++) {
      if (((dst & 0xffffff00) >>> 0) === nets[j]) {
        found++;
        break;
      }
    }
  }
  const scanNs = (performance.now() - t1) * 1e6 / m;
  assert.equal(found, m);
  assert.ok(
    tableNs * 10 < scanNs,
    `lookup took ${tableNs.toFixed(0)} ns, a linear scan ${scanNs.toFixed(0)} ns`,
  );
});

Deno.test("EndpointTable.source() holds exactly the subnets routed to an endpoint", () => {
  const t = new EndpointTable();
  const h2 = ip("192.168.1.2");
  t.set(ip("10.1.15.0"), 24, h2, 8285);
  const s = t.source(h2, 8285)!;
  assert.ok(s.holds(ip("10.1.15.0")), "the peer's flannel address (ICMP errors it sends)");
  assert.ok(s.holds(ip("10.1.15.200")));
  assert.equal(s.holds(ip("8.8.8.8")), false);
  assert.equal(s.holds(ip("10.1.16.1")), false, "another peer's subnet");
  assert.equal(t.source(h2, 8286), undefined);
  t.set(ip("10.1.16.0"), 24, h2, 8285); // a second subnet for the same host
  assert.ok(t.source(h2, 8285)!.holds(ip("10.1.16.1")));
  t.set(ip("10.1.15.0"), 24, ip("192.168.1.3"), 8285); // 10.1.15.0/24 moved to another host
  assert.equal(t.source(h2, 8285)!.holds(ip("10.1.15.9")), false);
  assert.ok(t.source(ip("192.168.1.3"), 8285)!.holds(ip("10.1.15.9")));
  t.delete(ip("10.1.16.0"), 24);
  assert.equal(t.source(h2, 8285), undefined, "no subnet left: no longer a peer");
  // High addresses (sign bit set) compare as unsigned.
  t.set(ip("200.1.0.0"), 16, h2, 8285);
  assert.ok(t.source(h2, 8285)!.holds(ip("200.1.255.255")));
  assert.equal(t.source(h2, 8285)!.holds(ip("200.2.0.0")), false);
});
