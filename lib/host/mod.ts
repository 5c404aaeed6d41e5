/**
 * What the daemon installs on the host besides the backend, once the lease is known and before
 * subnet.env is written: the firewall rules (`--ip-masq`, `--iptables-forward-rules`) and the
 * blackhole route for the own subnet (`--ip-blackhole-route`). Both stay when the daemon exits
 * (like the lease), so a restart does not interrupt traffic.
 *
 * The blackhole route (upstream: "in case the bridge plugin is not enabled", e.g. Canal's per-pod
 * /32 routes) is re-checked every `--iptables-resync` seconds like upstream's. It has a metric
 * (1024) above the 0 of the route the kernel adds for a bridge address in the subnet (docker0,
 * cni0): while such a bridge is up its route wins and local containers are reached; without it,
 * a packet to an unused address of the own subnet is dropped instead of leaking out by the
 * default route. Upstream adds it at metric 0, which a bridge's route already holds (EEXIST, or,
 * added first, a blackhole that shadows the bridge and cuts every local container off).
 */

import type { IPNet } from "../ip.ts";
import { errText, type Logger, logger } from "../log.ts";
import {
  Firewall,
  FirewallError,
  type FirewallRunner,
  openIptables,
  wantedRuleSets,
} from "../firewall/mod.ts";
import { configDrift, kernelChanges, kernelFailures, resyncs } from "../health/catalog.ts";
import { sleep } from "../async.ts";
import type { Netlink } from "../../ffi/netlink/mod.ts";
import { RTN_BLACKHOLE } from "../../ffi/netlink/consts.ts";

/** The flags this module acts on (a subset of Options). */
export interface HostSetupOptions {
  ipMasq: boolean;
  ipMasqFullyRandomDisable: boolean;
  iptablesForwardRules: boolean;
  iptablesResync: number;
  ipBlackholeRoute: boolean;
}

/** The metric of flannel's blackhole route (see the module note). */
export const BLACKHOLE_METRIC = 1024;

/** The route verbs the blackhole route needs. */
export type BlackholeOps = Pick<Netlink, "routeList" | "routeReplace" | "routeDel">;

/** What {@link setUpHost} leaves running. */
export interface HostSetup {
  /** The firewall, or null when no flag asked for rules (or iptables is missing, see below). */
  readonly firewall: Firewall | null;
  /** Re-checks the firewall every `--iptables-resync` seconds until `signal` aborts. */
  keep(signal: AbortSignal): Promise<void>;
}

/** Dependencies, replaceable in tests. */
export interface HostSetupDeps {
  routes: BlackholeOps;
  openFirewall?: (why: string) => Promise<FirewallRunner>;
  log?: Logger;
}

/**
 * Installs the firewall rules and the blackhole route for `subnet` of `network`.
 * Throws a one-line error when something a flag asked for cannot be done: `--ip-masq` without
 * iptables, a restore that fails, a blackhole route the kernel refuses. Forward rules are on by
 * default (as upstream); when only they want iptables and it is missing, that is a warning.
 */
export async function setUpHost(
  opts: HostSetupOptions,
  network: IPNet,
  subnet: IPNet,
  deps: HostSetupDeps,
): Promise<HostSetup> {
  const log = deps.log ?? logger("host");
  let firewall: Firewall | null = null;
  if (opts.ipMasq || opts.iptablesForwardRules) {
    const why = opts.ipMasq ? "--ip-masq" : "--iptables-forward-rules";
    let runner: FirewallRunner | null = null;
    try {
      runner = await (deps.openFirewall ?? openIptables)(why);
    } catch (err) {
      if (opts.ipMasq || !(err instanceof FirewallError)) throw err;
      log.warn(`${errText(err)}; no FORWARD rules (or pass --iptables-forward-rules=false)`);
    }
    if (runner) {
      if (opts.ipMasq && !opts.ipMasqFullyRandomDisable && !runner.randomFully) {
        log.warn(`${runner.version} has no MASQUERADE --random-fully: masquerading without it`);
      }
      firewall = new Firewall(
        runner,
        wantedRuleSets({
          network: network.toString(),
          subnet: subnet.toString(),
          ipMasq: opts.ipMasq,
          forwardRules: opts.iptablesForwardRules,
          randomFully: !opts.ipMasqFullyRandomDisable && runner.randomFully,
        }),
      );
      await firewall.install();
    }
  }
  if (opts.ipBlackholeRoute) {
    ensureBlackholeRoute(deps.routes, network, subnet, log);
    log.info(`Blackhole route for ${subnet} (metric ${BLACKHOLE_METRIC}) in place`);
  }
  const fw = firewall;
  const periodMs = opts.iptablesResync * 1000;
  return {
    firewall: fw,
    keep: async (signal) => {
      const loops: Promise<void>[] = [];
      if (fw) loops.push(fw.keep(periodMs, signal));
      if (opts.ipBlackholeRoute) {
        loops.push(keepBlackholeRoute(deps.routes, network, subnet, periodMs, log, signal));
      }
      await Promise.all(loops);
    },
  };
}

/** Re-checks the blackhole route every `periodMs` (as upstream) and restores it when gone. */
async function keepBlackholeRoute(
  nl: BlackholeOps,
  network: IPNet,
  subnet: IPNet,
  periodMs: number,
  log: Logger,
  signal: AbortSignal,
): Promise<void> {
  while (!signal.aborted) {
    try {
      await sleep(periodMs, signal);
    } catch {
      return;
    }
    resyncs.inc({ what: "blackhole_route" });
    try {
      if (ensureBlackholeRoute(nl, network, subnet, log)) {
        configDrift.inc({ what: "blackhole_route" });
        log.warn(`The blackhole route for ${subnet} was removed by someone else: restored`);
      }
    } catch (err) {
      log.error(errText(err));
    }
  }
}

/**
 * Puts `blackhole SUBNET metric 1024` in place unless it is there, and removes flannel's blackhole
 * routes for other subnets of the Network (left by an earlier run that held another lease).
 * Returns true when it had to add the route. Throws when the kernel refuses it.
 */
export function ensureBlackholeRoute(
  nl: BlackholeOps,
  network: IPNet,
  subnet: IPNet,
  log: Logger,
): boolean {
  let present = false;
  for (const r of nl.routeList()) {
    if (r.type !== RTN_BLACKHOLE || r.priority !== BLACKHOLE_METRIC) continue;
    if (r.dst.equals(subnet)) {
      present = true;
      continue;
    }
    if (!network.containsNet(r.dst)) continue;
    try {
      nl.routeDel({ dst: r.dst, type: RTN_BLACKHOLE, metric: BLACKHOLE_METRIC });
      kernelChanges.inc({ kind: "blackhole_route", op: "delete" });
      log.info(`Removed the blackhole route of a former lease: ${r.dst}`);
    } catch (err) {
      kernelFailures.inc({ kind: "blackhole_route", op: "delete" });
      log.warn(`Cannot remove the old blackhole route ${r.dst}: ${errText(err)}`);
    }
  }
  if (present) return false;
  try {
    nl.routeReplace({ dst: subnet, type: RTN_BLACKHOLE, metric: BLACKHOLE_METRIC });
  } catch (err) {
    kernelFailures.inc({ kind: "blackhole_route", op: "set" });
    throw new Error(`Cannot add the blackhole route for ${subnet}: ${errText(err)}`, {
      cause: err,
    });
  }
  kernelChanges.inc({ kind: "blackhole_route", op: "set" });
  return true;
}
