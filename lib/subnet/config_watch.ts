/**
 * The network config while the daemon runs: a watch on `<prefix>/config` that says in one line
 * what a change means. The running config stays in use whatever happens to the key (upstream
 * flannel also needs a restart): an invalid new config is named with its error, a valid but
 * different one key by key, a deleted one as such. Rewriting the same config says nothing.
 */

import { ConfigError, type NetworkConfig, parseNetworkConfig } from "../config.ts";
import { configKey } from "../lease.ts";
import { errText, type Logger } from "../log.ts";
import { abortable, Backoff, sleep } from "../async.ts";
import { type KeyValue, type Registry, RegistryUnavailableError } from "../registry/mod.ts";
import { nextChange } from "./config_wait.ts";

/** Config JSON names of the backend fields, for the log line. */
const BACKEND_NAMES: Record<string, string> = {
  type: "Type",
  port: "Port",
  offload: "Offload",
  vni: "VNI",
  mtu: "MTU",
  directRouting: "DirectRouting",
  learning: "Learning",
  gbp: "GBP",
  routeTableID: "RouteTableID",
};

/** `config` as config-key → value text, every default filled in. */
function configFields(config: NetworkConfig): Map<string, string> {
  const m = new Map<string, string>([
    ["EnableIPv4", String(config.ipv4 !== null)],
    ["EnableIPv6", String(config.ipv6 !== null)],
  ]);
  for (const [r, p] of [[config.ipv4, ""], [config.ipv6, "IPv6"]] as const) {
    if (!r) continue;
    m.set(`${p}Network`, r.network.toString());
    m.set(`${p}SubnetLen`, String(r.subnetLen));
    m.set(`${p}SubnetMin`, r.subnetMin.toString());
    m.set(`${p}SubnetMax`, r.subnetMax.toString());
  }
  for (const [k, v] of Object.entries(config.backend)) {
    m.set(`Backend.${BACKEND_NAMES[k] ?? k}`, v === null ? "(auto)" : String(v));
  }
  return m;
}

/** What differs from `running` to `next`, key by key (`Network 10.1.0.0/16 → 10.2.0.0/16`). */
function configDiff(running: NetworkConfig, next: NetworkConfig): string[] {
  const a = configFields(running);
  const b = configFields(next);
  const out: string[] = [];
  for (const k of new Set([...a.keys(), ...b.keys()])) {
    const x = a.get(k) ?? "(none)";
    const y = b.get(k) ?? "(none)";
    if (x !== y) out.push(`${k} ${x} → ${y}`);
  }
  return out;
}

/**
 * Watches `<prefix>/config` until `signal` aborts (then it resolves), logging one line per
 * change of what the key says compared with `running`.
 */
export async function watchNetworkConfig(
  registry: Registry,
  prefix: string,
  running: NetworkConfig,
  signal: AbortSignal,
  log: Logger,
): Promise<void> {
  const key = configKey(prefix);
  // What was last said: "same", "deleted", or the revision of the config reported.
  let said = "same";
  const report = (kv: KeyValue | null) => {
    if (kv === null) {
      if (said !== "deleted") {
        log.warn(
          `Network config at ${key} was deleted: the running config stays in use (a restart ` +
            `would wait for a new one)`,
        );
      }
      said = "deleted";
      return;
    }
    const rev = `${kv.createRevision}/${kv.modRevision}`;
    let next: NetworkConfig;
    try {
      next = parseNetworkConfig(kv.value);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      if (said !== rev) {
        log.error(
          `Network config at ${key} changed: keeping the running config, the new one is ` +
            `invalid: ${err.message}`,
        );
      }
      said = rev;
      return;
    }
    const diff = configDiff(running, next);
    if (diff.length === 0) {
      if (said !== "same") log.info(`Network config at ${key} matches the running config again`);
      said = "same";
      return;
    }
    if (said !== rev) {
      log.warn(
        `Network config at ${key} changed (${diff.join(", ")}): it takes effect on restart, ` +
          `the running config stays in use until then`,
      );
    }
    said = rev;
  };
  try {
    const backoff = new Backoff();
    while (!signal.aborted) {
      let got;
      try {
        got = await abortable(registry.get(key), signal);
      } catch (err) {
        signal.throwIfAborted();
        if (!(err instanceof RegistryUnavailableError)) {
          log.warn(`Cannot read the network config at ${key}: ${errText(err)}`);
        }
        await sleep(backoff.next(), signal);
        continue;
      }
      backoff.reset();
      report(got.kv);
      await nextChange(registry, key, got.revision + 1, signal);
    }
  } catch (err) {
    if (!signal.aborted) throw err;
  }
}
