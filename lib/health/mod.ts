/**
 * Health and metrics (`--healthz-ip`, `--healthz-port`): the server with `/healthz`, `/readyz`
 * and `/metrics`, the daemon's readiness checks, and a light etcd probe so that "etcd answered
 * recently" means something while nothing else talks to etcd (a quiet watch sends nothing).
 */

import { sleep } from "../async.ts";
import { backendReady, etcdLastContact, leaseHeld, registry } from "./catalog.ts";
import { type HealthServer, type ReadinessCheck, serveHealth } from "./server.ts";

export { healthHandler, HEALTHZ_BODY, type ReadinessCheck, serveHealth } from "./server.ts";
export { CONTENT_TYPE, Counter, Gauge, Metrics, type Sample } from "./metrics.ts";
export * as catalog from "./catalog.ts";

/** etcd counts as reachable when it answered within this many seconds. */
export const ETCD_FRESH_S = 30;
/** How often the probe reads from etcd while the health server runs. */
export const ETCD_PROBE_MS = 10_000;

/** The readiness checks every daemon has; more can be added to the returned object. */
export function daemonReadiness(now: () => number = Date.now): Record<string, ReadinessCheck> {
  return {
    lease: () => leaseHeld.get() === 1 ? null : "no subnet lease held",
    backend: () => backendReady.get() === 1 ? null : "backend not set up yet",
    etcd: () => {
      const last = etcdLastContact.get();
      if (last === 0) return "etcd has not answered yet";
      const age = now() / 1000 - last;
      return age <= ETCD_FRESH_S
        ? null
        : `etcd last answered ${Math.round(age)} s ago (more than ${ETCD_FRESH_S} s)`;
    },
  };
}

/** Options of {@link startHealth}. */
export interface StartHealthOptions {
  hostname: string;
  port: number;
  readiness: Record<string, ReadinessCheck>;
  /** A cheap etcd read; its success refreshes the etcd check (through the instrumented registry). */
  probeEtcd: () => Promise<unknown>;
  signal: AbortSignal;
}

/** Starts the server and the etcd probe; both stop when `signal` aborts. */
export function startHealth(o: StartHealthOptions): HealthServer {
  const server = serveHealth({
    hostname: o.hostname,
    port: o.port,
    metrics: registry,
    readiness: o.readiness,
    signal: o.signal,
  });
  const probing = (async () => {
    while (!o.signal.aborted) {
      try {
        await sleep(ETCD_PROBE_MS, o.signal);
        await o.probeEtcd();
      } catch {
        // Counted by the instrumented registry; the etcd check turns red by itself.
      }
    }
  })();
  return {
    addr: server.addr,
    finished: Promise.all([server.finished, probing]).then(() => {}),
  };
}
