/**
 * Waits for a valid network config at `<prefix>/config`.
 *
 * Missing: one warning, then a watch on the key (not a poll loop). Invalid: the ConfigError (it
 * names the key and the value) once per revision, and wait for the next version. etcd down:
 * the registry logs each failed attempt; this retries with capped exponential backoff.
 */

import { ConfigError, type NetworkConfig, parseNetworkConfig } from "../config.ts";
import { configKey } from "../lease.ts";
import { errText, type Logger } from "../log.ts";
import { abortable, Backoff, sleep } from "../async.ts";
import { type Registry, RegistryUnavailableError } from "../registry/mod.ts";

/**
 * Resolves with the first valid network config; rejects only with `signal`'s reason.
 */
export async function waitForNetworkConfig(
  registry: Registry,
  prefix: string,
  signal: AbortSignal,
  log: Logger,
): Promise<NetworkConfig> {
  const key = configKey(prefix);
  const backoff = new Backoff();
  let waitingLogged = false;
  let badRevision = -1;
  while (true) {
    signal.throwIfAborted();
    let got;
    try {
      // An etcd that does not answer fails the call only at its deadline: stop at once on abort.
      got = await abortable(registry.get(key), signal);
    } catch (err) {
      signal.throwIfAborted();
      // Unreachable endpoints were already logged one line each by the registry.
      if (!(err instanceof RegistryUnavailableError)) {
        log.warn(`Cannot read the network config at ${key}: ${errText(err)}`);
      }
      await sleep(backoff.next(), signal);
      continue;
    }
    backoff.reset();
    if (got.kv === null) {
      if (!waitingLogged) {
        log.warn(
          `Waiting for the network config at ${key} (flannel reads it through the etcd v3 API: ` +
            `ETCDCTL_API=3 etcdctl put ${key} '{"Network":"10.1.0.0/16"}')`,
        );
        waitingLogged = true;
      }
    } else {
      try {
        const config = parseNetworkConfig(got.kv.value);
        if (waitingLogged || badRevision >= 0) log.info(`Found a valid network config at ${key}`);
        return config;
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        if (got.kv.modRevision !== badRevision) {
          log.error(`Invalid network config at ${key}: ${err.message}`);
          badRevision = got.kv.modRevision;
        }
      }
    }
    await nextChange(registry, key, got.revision + 1, signal);
  }
}

/**
 * Returns on the first change of `key` from `fromRevision`, or when the watch ends (compacted,
 * or etcd lost its memory: the caller reads the key again either way).
 */
export async function nextChange(
  registry: Registry,
  key: string,
  fromRevision: number,
  signal: AbortSignal,
): Promise<void> {
  const ac = new AbortController();
  const both = AbortSignal.any([signal, ac.signal]);
  try {
    for await (const ev of registry.watch(key, { prefix: false, fromRevision }, both)) {
      if (ev.type !== "reconnected" && ev.type !== "progress") return;
    }
  } finally {
    ac.abort();
  }
  signal.throwIfAborted();
}
