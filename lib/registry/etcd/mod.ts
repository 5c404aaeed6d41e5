/**
 * {@link Registry} over etcd v3 (`npm:etcd3`; this folder is the only importer of it).
 *
 * - `tls.ts`: the TLS files, read and checked at start.
 * - `internals.ts`: what etcd3 1.1.2 has no option for, patched into its connection pool (TLS by
 *   IP address, require-leader).
 * - `endpoints.ts`: one client per endpoint, failover, error texts, keepalive.
 * - `history.ts`: etcd's cluster id and highest revision seen, to notice a wiped or restored etcd.
 * - `kv.ts`: reads, leases and guarded writes.
 * - `watch.ts`: watches with resume, compaction and reset.
 *
 * @example
 * ```ts ignore
 * import { connectEtcd } from "./mod.ts";
 * const reg = connectEtcd({ endpoints: ["http://127.0.0.1:2379"] });
 * console.log((await reg.get("/coreos.com/network/config")).kv?.value);
 * reg.close();
 * ```
 */

import { type Logger, logger } from "../../log.ts";
import type { Registry } from "../mod.ts";
import { Endpoints } from "./endpoints.ts";
import { EtcdKV } from "./kv.ts";
import { readTlsFiles } from "./tls.ts";
import { watch } from "./watch.ts";

/** How to reach etcd (flannel's `--etcd-*` flags). */
export interface EtcdOptions {
  /** `http://host:port` or `https://host:port`, tried in turn. */
  endpoints: string[];
  keyFile?: string;
  certFile?: string;
  caFile?: string;
  username?: string;
  password?: string;
  /** Deadline of each unary call, default 5000 ms. */
  callTimeoutMs?: number;
  log?: Logger;
}

/**
 * Connects to etcd (lazily: no call is made here). Throws when a TLS file cannot be read or an
 * endpoint is not a URL.
 */
export function connectEtcd(opts: EtcdOptions): Registry {
  const eps = new Endpoints({
    endpoints: opts.endpoints,
    tls: readTlsFiles(opts),
    username: opts.username,
    password: opts.password,
    callTimeoutMs: opts.callTimeoutMs ?? 5000,
    log: opts.log ?? logger("etcd"),
  });
  const kv = new EtcdKV(eps);
  return {
    get: (key) => kv.get(key),
    list: (prefix) => kv.list(prefix),
    create: (key, value, ttl) => kv.create(key, value, ttl),
    update: (key, value, ttl, rev) => kv.update(key, value, ttl, rev),
    delete: (key, rev) => kv.delete(key, rev),
    leaseTTL: (id) => kv.leaseTTL(id),
    watch: (key, o, signal) => watch(eps, kv, key, o, signal),
    close: () => eps.close(),
  };
}
