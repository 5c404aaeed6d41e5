/**
 * What the acquire, keep and watch parts of the subnet manager share: the registry, the key
 * prefix, the network config, the lease TTL and the logger, and a registry call retried until it
 * succeeds.
 */

import type { NetworkConfig } from "../config.ts";
import { abortable, Backoff, sleep } from "../async.ts";
import { errText, type Logger } from "../log.ts";
import { type Registry, RegistryUnavailableError } from "../registry/mod.ts";

/** The subnet manager's fixed inputs. */
export interface SubnetContext {
  readonly registry: Registry;
  readonly config: NetworkConfig;
  /** etcd key prefix, e.g. `/coreos.com/network`. */
  readonly prefix: string;
  /** etcd lease TTL of our lease, in seconds. */
  readonly ttlSeconds: number;
  readonly log: Logger;
}

/**
 * Runs `fn` until it resolves, with capped backoff; rejects only with `signal`'s reason. Each
 * attempt is abandoned when `signal` aborts (an unanswering etcd fails a call only at its
 * deadline). Unreachable endpoints were already logged one line each by the registry.
 */
export async function retry<T>(
  ctx: SubnetContext,
  fn: () => Promise<T>,
  signal: AbortSignal,
): Promise<T> {
  const backoff = new Backoff();
  while (true) {
    signal.throwIfAborted();
    try {
      return await abortable(fn(), signal);
    } catch (err) {
      signal.throwIfAborted();
      const d = backoff.next();
      if (!(err instanceof RegistryUnavailableError)) {
        ctx.log.warn(`Etcd request failed (trying again in ${d} ms): ${errText(err)}`);
      }
      await sleep(d, signal);
    }
  }
}
