/**
 * The health endpoint (`--healthz-ip`/`--healthz-port`):
 * - `GET /healthz` → 200 `flanneld is running` (upstream's liveness answer, unconditional);
 * - `GET /readyz` → 200 when every readiness check passes, else 503 with one line per failing
 *   check (upstream added /readyz later; ours checks lease, backend and etcd);
 * - `GET /metrics` → the Prometheus text format of the metrics registry.
 * Anything else is 404, a method other than GET/HEAD 405. The server closes when `signal`
 * aborts.
 */

import { CONTENT_TYPE, type Metrics } from "./metrics.ts";

/** One readiness condition: null when it holds, else why not (one line). */
export type ReadinessCheck = () => string | null;

/** What the server answers from. */
export interface HealthOptions {
  hostname: string;
  port: number;
  metrics: Metrics;
  /** Named checks for `/readyz`, evaluated at each request. */
  readiness: Readonly<Record<string, ReadinessCheck>>;
  signal: AbortSignal;
  /** Called once the socket listens (with the bound port, useful when `port` is 0 in tests). */
  onListen?: (addr: { hostname: string; port: number }) => void;
}

/** A running health server. */
export interface HealthServer {
  /** The bound address. */
  readonly addr: { hostname: string; port: number };
  /** Resolves when the server has closed (after `signal` aborted). */
  readonly finished: Promise<void>;
}

/** The body of `/healthz`, byte for byte as upstream (no newline). */
export const HEALTHZ_BODY = "flanneld is running";

/** Builds the request handler (exported for tests that do not need a socket). */
export function healthHandler(
  opts: Pick<HealthOptions, "metrics" | "readiness">,
): (req: Request) => Response {
  return (req) => {
    if (req.method !== "GET" && req.method !== "HEAD") {
      return text(405, "method not allowed\n", { allow: "GET, HEAD" });
    }
    const path = new URL(req.url).pathname;
    switch (path) {
      case "/healthz":
        return text(200, HEALTHZ_BODY);
      case "/readyz": {
        const failing: string[] = [];
        for (const [name, check] of Object.entries(opts.readiness)) {
          let why: string | null;
          try {
            why = check();
          } catch (err) {
            why = `check failed: ${(err as Error).message}`;
          }
          if (why !== null) failing.push(`${name}: ${why}`);
        }
        return failing.length === 0
          ? text(200, "ok\n")
          : text(503, failing.map((l) => `not ready: ${l}`).join("\n") + "\n");
      }
      case "/metrics":
        return new Response(opts.metrics.render(), {
          status: 200,
          headers: { "content-type": CONTENT_TYPE },
        });
      default:
        return text(404, "not found\n");
    }
  };
}

/**
 * Starts the server; throws a clear error when the address cannot be bound.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Metrics } from "./metrics.ts";
 * import { serveHealth } from "./server.ts";
 *
 * const stop = new AbortController();
 * const s = serveHealth({
 *   hostname: "127.0.0.1", port: 0, metrics: new Metrics(), readiness: {}, signal: stop.signal,
 * });
 * const r = await fetch(`http://127.0.0.1:${s.addr.port}/healthz`);
 * assert.equal(await r.text(), "flanneld is running");
 * stop.abort();
 * await s.finished;
 * ```
 */
export function serveHealth(opts: HealthOptions): HealthServer {
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve({
      hostname: opts.hostname,
      port: opts.port,
      signal: opts.signal,
      onListen: (a) => opts.onListen?.({ hostname: a.hostname, port: a.port }),
      onError: () => text(500, "internal error\n"),
    }, healthHandler(opts));
  } catch (err) {
    throw new Error(
      `Cannot serve health checks on ${opts.hostname}:${opts.port}: ${(err as Error).message}`,
      { cause: err },
    );
  }
  return {
    addr: { hostname: server.addr.hostname, port: server.addr.port },
    finished: server.finished,
  };
}

function text(status: number, body: string, headers: Record<string, string> = {}): Response {
  return new Response(body, {
    status,
    headers: { "content-type": "text/plain; charset=utf-8", ...headers },
  });
}
