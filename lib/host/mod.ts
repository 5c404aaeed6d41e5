/**
 * What the daemon installs on the host besides the backend, once the lease is known and before
 * subnet.env is written: the firewall rules (`--ip-masq`, `--iptables-forward-rules`) and the
 * blackhole route for the own subnet (`--ip-blackhole-route`), for each family the network has
 * (Network with the IPv4 lease through iptables, IPv6Network with the IPv6 lease through
 * ip6tables, as upstream). Both stay when the daemon exits (like the lease), so a restart does
 * not interrupt traffic.
 *
 * The blackhole route (upstream: "in case the bridge plugin is not enabled", e.g. Canal's per-pod
 * /32 routes) is re-checked every `--iptables-resync` seconds like upstream's. It has a metric
 * (1024) above the 0 of the route the kernel adds for a bridge address in the subnet (docker0,
 * cni0): while such a bridge is up its route wins and local containers are reached; without it,
 * a packet to an unused address of the own subnet is dropped instead of leaking out by the
 * default route. Upstream adds it at metric 0, which a bridge's route already holds (EEXIST, or,
 * added first, a blackhole that shadows the bridge and cuts every local container off).
 * For IPv6 the same 1024 is what upstream gets too: the kernel gives an IPv6 route without a
 * metric 1024 (IP6_RT_PRIO_USER), and the prefix route of a bridge address has 256, so it wins.
 * The flip side: a blackhole someone else added in the IPv6Network with `ip -6 route add` (also
 * 1024 by default) looks like a former lease's and is removed.
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
import { RT_TABLE_MAIN, RTN_BLACKHOLE } from "../../ffi/netlink/consts.ts";

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

/** One family's overlay Network (Network or IPv6Network) and the own lease in it. */
export interface HostRange {
  network: IPNet;
  subnet: IPNet;
}

/** What {@link setUpHost} leaves running. */
export interface HostSetup {
  /**
   * One firewall per family that has rules (IPv4 first); empty when no flag asked for rules, or
   * when only the default forward rules did and the tools are missing (see below).
   */
  readonly firewalls: readonly Firewall[];
  /** Re-checks the firewall every `--iptables-resync` seconds until `signal` aborts. */
  keep(signal: AbortSignal): Promise<void>;
}

/** Dependencies, replaceable in tests. */
export interface HostSetupDeps {
  routes: BlackholeOps;
  openFirewall?: (why: string, family: 4 | 6) => Promise<FirewallRunner>;
  log?: Logger;
}

/**
 * Installs the firewall rules and the blackhole route for each range (one per family of the
 * network, `subnet` of `network`). Throws a one-line error when something a flag asked for cannot
 * be done: `--ip-masq` without iptables (ip6tables for an IPv6 range), a restore that fails, a
 * blackhole route the kernel refuses. Forward rules are on by default (as upstream); when only
 * they want a tool and it is missing, that is a warning.
 */
export async function setUpHost(
  opts: HostSetupOptions,
  ranges: readonly HostRange[],
  deps: HostSetupDeps,
): Promise<HostSetup> {
  const log = deps.log ?? logger("host");
  const firewalls: Firewall[] = [];
  for (const r of ranges) {
    const fw = await openFirewall(opts, r, deps, log);
    if (fw) firewalls.push(fw);
  }
  if (opts.ipBlackholeRoute) {
    for (const { network, subnet } of ranges) {
      ensureBlackholeRoute(deps.routes, network, subnet, log);
      log.info(`Blackhole route for ${subnet} (metric ${BLACKHOLE_METRIC}) in place`);
    }
  }
  const periodMs = opts.iptablesResync * 1000;
  return {
    firewalls,
    keep: async (signal) => {
      const loops = firewalls.map((fw) => fw.keep(periodMs, signal));
      if (opts.ipBlackholeRoute) {
        for (const { network, subnet } of ranges) {
          loops.push(keepBlackholeRoute(deps.routes, network, subnet, periodMs, log, signal));
        }
      }
      await Promise.all(loops);
    },
  };
}

/** The installed firewall of one range, or null when no flag (or no tool, see above) has one. */
async function openFirewall(
  opts: HostSetupOptions,
  { network, subnet }: HostRange,
  deps: HostSetupDeps,
  log: Logger,
): Promise<Firewall | null> {
  if (!opts.ipMasq && !opts.iptablesForwardRules) return null;
  const why = opts.ipMasq ? "--ip-masq" : "--iptables-forward-rules";
  let runner: FirewallRunner;
  try {
    runner = await (deps.openFirewall ?? openIptables)(why, network.family);
  } catch (err) {
    if (opts.ipMasq || !(err instanceof FirewallError)) throw err;
    // The tool in the message (iptables-restore, ip6tables-restore) names the family.
    log.warn(`${errText(err)}; no FORWARD rules (or pass --iptables-forward-rules=false)`);
    return null;
  }
  if (opts.ipMasq && !opts.ipMasqFullyRandomDisable && !runner.randomFully) {
    log.warn(`${runner.version} has no MASQUERADE --random-fully: masquerading without it`);
  }
  const fw = new Firewall(
    runner,
    wantedRuleSets({
      network: network.toString(),
      subnet: subnet.toString(),
      ipMasq: opts.ipMasq,
      forwardRules: opts.iptablesForwardRules,
      randomFully: !opts.ipMasqFullyRandomDisable && runner.randomFully,
    }),
  );
  await fw.install();
  return fw;
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
 * Puts `blackhole SUBNET metric 1024` in place unless it is there (`ip -6 route` for an IPv6
 * subnet), and removes flannel's blackhole routes for other subnets of the Network (left by an earlier run that held another lease).
 * Returns true when it had to add the route. Throws when the kernel refuses it.
 */
export function ensureBlackholeRoute(
  nl: BlackholeOps,
  network: IPNet,
  subnet: IPNet,
  log: Logger,
): boolean {
  let present = false;
  for (const r of nl.routeList(RT_TABLE_MAIN, subnet.family)) {
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
