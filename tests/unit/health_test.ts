import assert from "node:assert/strict";
import { Metrics } from "../../lib/health/metrics.ts";
import { healthHandler, HEALTHZ_BODY, serveHealth } from "../../lib/health/server.ts";
import { registerUdpCounters, unregisterUdpCounters } from "../../lib/backend/udp/metrics.ts";
import {
  registerWireguardCounters,
  unregisterWireguardCounters,
} from "../../lib/backend/wireguard/metrics.ts";
import {
  COUNTER_NAMES as WG_COUNTER_NAMES,
  type CounterName as WgCounterName,
} from "../../lib/backend/wireguard/counters.ts";
import { instrumentRegistry } from "../../lib/health/registry_metrics.ts";
import {
  backendReady,
  etcdErrors,
  etcdLastContact,
  etcdReconnects,
  leaseHeld,
  registry as catalog,
  watchEvents,
} from "../../lib/health/catalog.ts";
import { daemonReadiness, ETCD_FRESH_S } from "../../lib/health/mod.ts";
import { COUNTER_NAMES, type CounterName } from "../../lib/backend/udp/counters.ts";
import type { Registry, WatchEvent } from "../../lib/registry/mod.ts";

Deno.test("Metrics.render() writes the text exposition format", () => {
  const m = new Metrics();
  const c = m.counter("t_events_total", "Events.\nSecond line with \\.");
  const g = m.gauge("t_temp", "A gauge.");
  c.inc({ type: "put" });
  c.inc({ type: "put" }, 2);
  c.inc({ type: 'we"ird\\', zz: "a\nb" });
  g.set(1.5);
  m.collector("t_live", "Read at scrape.", "gauge", () => [{ value: Infinity }, {
    labels: { a: "1" },
    value: NaN,
  }]);
  assert.equal(
    m.render(),
    [
      "# HELP t_events_total Events.\\nSecond line with \\\\.",
      "# TYPE t_events_total counter",
      't_events_total{type="put"} 3',
      't_events_total{type="we\\"ird\\\\",zz="a\\nb"} 1',
      "# HELP t_temp A gauge.",
      "# TYPE t_temp gauge",
      "t_temp 1.5",
      "# HELP t_live Read at scrape.",
      "# TYPE t_live gauge",
      "t_live +Inf",
      't_live{a="1"} NaN',
      "",
    ].join("\n"),
  );
});

Deno.test("Metrics refuses bad names, negative increments and a kind change", () => {
  const m = new Metrics();
  assert.throws(() => m.counter("bad-name", "x"), /Invalid metric name "bad-name"/);
  const c = m.counter("ok_total", "x");
  assert.throws(() => c.inc({}, -1), /cannot add -1/);
  assert.throws(() => c.inc({ "bad-label": "x" }), /Invalid label name "bad-label"/);
  assert.throws(() => m.gauge("ok_total", "x"), /already registered as a counter/);
  // Registering the same counter again returns the same series.
  m.counter("ok_total", "x").inc();
  assert.equal(c.get(), 1);
  // A collector value that is not a number renders as NaN, not as text a scraper refuses.
  m.collector("odd", "x", "gauge", () => [{ value: undefined as unknown as number }]);
  assert.match(m.render(), /^odd NaN$/m);
  m.removeCollector("odd");
  // A collector that throws contributes nothing instead of failing the scrape.
  m.collector("broken", "x", "gauge", () => {
    throw new Error("gone");
  });
  assert.match(m.render(), /# TYPE broken gauge\n$/);
});

Deno.test("udp collectors read every data-path counter at scrape time, by direction and reason", () => {
  const m = new Metrics();
  const values = Object.fromEntries(COUNTER_NAMES.map((n, i) => [n, i + 1])) as Record<
    CounterName,
    number
  >;
  let reads = 0;
  registerUdpCounters(m, () => {
    reads++;
    return values;
  });
  assert.equal(reads, 0, "nothing is read until a scrape");
  const text = m.render();
  for (const name of COUNTER_NAMES) {
    const n = values[name];
    assert.ok(new RegExp(`^flannel_udp_\\w+_total\\{[^}]*\\} ${n}$`, "m").test(text), name);
  }
  assert.match(text, /^flannel_udp_packets_total\{direction="tx"\} 1$/m);
  assert.match(text, /^flannel_udp_dropped_total\{direction="rx",reason="not_peer"\} 11$/m);
  assert.match(text, /^flannel_udp_dropped_total\{direction="tx",reason="no_route"\} 3$/m);
  values.rx_packets = 1e9;
  assert.match(m.render(), /^flannel_udp_packets_total\{direction="rx"\} 1000000000$/m);
  unregisterUdpCounters(m);
  assert.doesNotMatch(m.render(), /flannel_udp/);
});

function get(h: (r: Request) => Response, path: string, method = "GET") {
  return h(new Request(`http://x${path}`, { method }));
}

Deno.test("healthHandler() answers /healthz, /readyz, /metrics, 404 and 405", async () => {
  const m = new Metrics();
  m.gauge("x_up", "Up.").set(1);
  let leaseOk = false;
  const h = healthHandler({
    metrics: m,
    readiness: {
      lease: () => leaseOk ? null : "no subnet lease held",
      etcd: () => null,
      broken: () => {
        throw new Error("boom");
      },
    },
  });
  const hz = get(h, "/healthz");
  assert.equal(hz.status, 200);
  assert.equal(await hz.text(), HEALTHZ_BODY);
  assert.equal(HEALTHZ_BODY, "flanneld is running");

  const r1 = get(h, "/readyz");
  assert.equal(r1.status, 503);
  assert.equal(
    await r1.text(),
    "not ready: lease: no subnet lease held\nnot ready: broken: check failed: boom\n",
  );
  leaseOk = true;
  const h2 = healthHandler({ metrics: m, readiness: { lease: () => leaseOk ? null : "x" } });
  const r2 = get(h2, "/readyz");
  assert.equal(r2.status, 200);
  assert.equal(await r2.text(), "ok\n");

  const mx = get(h, "/metrics");
  assert.equal(mx.status, 200);
  assert.equal(mx.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
  assert.match(await mx.text(), /^x_up 1$/m);

  const nf = get(h, "/nope");
  assert.equal(nf.status, 404);
  await nf.body?.cancel();
  const na = get(h, "/healthz", "POST");
  assert.equal(na.status, 405);
  assert.equal(na.headers.get("allow"), "GET, HEAD");
  await na.body?.cancel();
});

Deno.test("serveHealth() listens, answers over HTTP and closes on abort", async () => {
  const stop = new AbortController();
  const s = serveHealth({
    hostname: "127.0.0.1",
    port: 0,
    metrics: new Metrics(),
    readiness: {},
    signal: stop.signal,
  });
  assert.ok(s.addr.port > 0);
  const r = await fetch(`http://127.0.0.1:${s.addr.port}/healthz`);
  assert.equal(await r.text(), "flanneld is running");
  stop.abort();
  await s.finished;
  await assert.rejects(fetch(`http://127.0.0.1:${s.addr.port}/healthz`));
});

Deno.test("serveHealth() on a taken port is a one-line error naming the address", () => {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const stop = new AbortController();
    assert.throws(
      () =>
        serveHealth({
          hostname: "127.0.0.1",
          port: (l.addr as Deno.NetAddr).port,
          metrics: new Metrics(),
          readiness: {},
          signal: stop.signal,
        }),
      new RegExp(`^Error: Cannot serve health checks on 127\\.0\\.0\\.1:\\d+: .*[Aa]ddr.* in use`),
    );
    stop.abort();
  } finally {
    l.close();
  }
});

Deno.test("daemonReadiness() needs a lease, a ready backend and a recent etcd answer", () => {
  let now = 1_000_000_000;
  const checks = daemonReadiness(() => now);
  leaseHeld.set(0);
  backendReady.set(0);
  etcdLastContact.set(0);
  assert.equal(checks.lease(), "no subnet lease held");
  assert.equal(checks.backend(), "backend not set up yet");
  assert.equal(checks.etcd(), "etcd has not answered yet");
  leaseHeld.set(1);
  backendReady.set(1);
  etcdLastContact.set(now / 1000);
  assert.deepEqual([checks.lease(), checks.backend(), checks.etcd()], [null, null, null]);
  now += (ETCD_FRESH_S + 5) * 1000;
  assert.equal(checks.etcd(), "etcd last answered 35 s ago (more than 30 s)");
  leaseHeld.set(0);
  backendReady.set(0);
  etcdLastContact.set(0);
});

/** A registry whose calls succeed or fail on demand, and whose watch yields `events`. */
function fakeRegistry(events: WatchEvent[], failGet: { on: boolean }): Registry {
  return {
    get: () =>
      failGet.on
        ? Promise.reject(new Error("unavailable"))
        : Promise.resolve({ kv: null, revision: 5 }),
    list: () => Promise.resolve({ entries: [], revision: 5 }),
    create: () => Promise.resolve(null),
    update: () => Promise.resolve(null),
    delete: () => Promise.resolve(false),
    leaseTTL: () => Promise.resolve(null),
    watch: () => ({
      async *[Symbol.asyncIterator]() {
        for (const e of events) yield e;
      },
    }),
    close: () => {},
  };
}

Deno.test("instrumentRegistry() counts errors, contact, watch events and reconnects", async () => {
  const fail = { on: true };
  const events: WatchEvent[] = [
    { type: "put", key: "k", value: "v", modRevision: 6, createRevision: 6, leaseId: null },
    { type: "progress", revision: 6 },
    { type: "reconnected", revision: 6 },
    { type: "delete", key: "k", modRevision: 7 },
  ];
  const r = instrumentRegistry(fakeRegistry(events, fail), () => 42_000);
  const errors0 = etcdErrors.get({ op: "get" });
  const puts0 = watchEvents.get({ type: "put" });
  const dels0 = watchEvents.get({ type: "delete" });
  const rec0 = etcdReconnects.get();
  etcdLastContact.set(0);
  await assert.rejects(r.get("k"), /unavailable/);
  assert.equal(etcdErrors.get({ op: "get" }), errors0 + 1);
  assert.equal(etcdLastContact.get(), 0);
  fail.on = false;
  assert.deepEqual(await r.get("k"), { kv: null, revision: 5 });
  assert.equal(etcdLastContact.get(), 42);
  const seen: string[] = [];
  for await (
    const e of r.watch("k", { prefix: true, fromRevision: 1 }, AbortSignal.timeout(5000))
  ) {
    seen.push(e.type);
  }
  assert.deepEqual(seen, ["put", "progress", "reconnected", "delete"], "events pass unchanged");
  assert.equal(watchEvents.get({ type: "put" }), puts0 + 1);
  assert.equal(watchEvents.get({ type: "delete" }), dels0 + 1);
  assert.equal(watchEvents.get({ type: "progress" }), 0, "progress marks are not events");
  assert.equal(etcdReconnects.get(), rec0 + 1);
  assert.match(catalog.render(), /^flannel_etcd_errors_total\{op="get"\} \d+$/m);
  etcdLastContact.set(0);
});

Deno.test("wireguard collectors: every data-path counter in flannel_wireguard_*, drops by reason", () => {
  const m = new Metrics();
  const values = Object.fromEntries(WG_COUNTER_NAMES.map((n, i) => [n, i + 1])) as Record<
    WgCounterName,
    number
  >;
  registerWireguardCounters(m, () => values);
  const text = m.render();
  for (const name of WG_COUNTER_NAMES) {
    const n = values[name];
    assert.ok(new RegExp(`^flannel_wireguard_\\w+_total\\{[^}]*\\} ${n}$`, "m").test(text), name);
  }
  assert.match(text, /^flannel_wireguard_dropped_total\{direction="rx",reason="bad_mac"\} 10$/m);
  assert.match(text, /^flannel_wireguard_dropped_total\{direction="rx",reason="replay"\} 11$/m);
  assert.match(
    text,
    /^flannel_wireguard_dropped_total\{direction="rx",reason="not_allowed"\} 13$/m,
  );
  assert.match(
    text,
    /^flannel_wireguard_handshakes_total\{direction="rx",reason="unknown_peer"\} 19$/m,
  );
  assert.doesNotMatch(text, /flannel_udp|undefined|NaN/);
  unregisterWireguardCounters(m);
  assert.doesNotMatch(m.render(), /flannel_wireguard/);
});
