/**
 * A {@link Registry} wrapper that feeds the etcd metrics: errors by operation, the time etcd last
 * answered (for `/readyz`), watch events by type and watch reconnects. It changes no behaviour:
 * every call and every event passes through unchanged.
 */

import type { Registry, WatchEvent } from "../registry/mod.ts";
import { etcdErrors, etcdLastContact, etcdReconnects, watchEvents } from "./catalog.ts";

/** Wraps `r` so that every call and watch event is counted. */
export function instrumentRegistry(r: Registry, now: () => number = Date.now): Registry {
  const contact = () => etcdLastContact.set(now() / 1000);
  const timed =
    <A extends unknown[], T>(op: string, fn: (...a: A) => Promise<T>) =>
    async (...a: A): Promise<T> => {
      try {
        const v = await fn(...a);
        contact();
        return v;
      } catch (err) {
        etcdErrors.inc({ op });
        throw err;
      }
    };
  return {
    get: timed("get", (k) => r.get(k)),
    list: timed("list", (p) => r.list(p)),
    create: timed("create", (k, v, t) => r.create(k, v, t)),
    update: timed("update", (k, v, t, m) => r.update(k, v, t, m)),
    delete: timed("delete", (k, m) => r.delete(k, m)),
    leaseTTL: timed("lease_ttl", (id) => r.leaseTTL(id)),
    watch(key, opts, signal): AsyncIterable<WatchEvent> {
      const inner = r.watch(key, opts, signal);
      return {
        async *[Symbol.asyncIterator]() {
          try {
            for await (const ev of inner) {
              contact();
              if (ev.type === "reconnected") etcdReconnects.inc();
              // A progress event only marks the end of one etcd response: not an event.
              if (ev.type !== "progress") watchEvents.inc({ type: ev.type });
              yield ev;
            }
          } catch (err) {
            if (!signal.aborted) etcdErrors.inc({ op: "watch" });
            throw err;
          }
        },
      };
    },
    close: () => r.close(),
  };
}
