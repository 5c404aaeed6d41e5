/**
 * The daemon's whole life, in order: external interface → etcd → network config → backend init
 * (lease + host setup) → subnet.env → READY=1 → follow leases until SIGTERM/SIGINT or until the
 * own lease is lost.
 *
 * Exit codes: 0 after a signal (the lease stays in etcd, so a restart gets the same subnet);
 * 1 on a fatal error (no usable interface, lease lost, backend failure) so systemd restarts us.
 */

import type { Options } from "./options.ts";
import { VERSION } from "./options.ts";
import { errText, logger, setVerbosity } from "./log.ts";
import {
  checkExternalInterface,
  describeInterface,
  type ExternalInterface,
  findExternalInterface,
} from "./extiface.ts";
import type { NetworkConfig, SubnetRange } from "./config.ts";
import type { IP } from "./ip.ts";
import { connectEtcd } from "./registry/etcd/mod.ts";
import { waitForNetworkConfig } from "./subnet/config_wait.ts";
import { watchNetworkConfig } from "./subnet/config_watch.ts";
import { RegistrySubnetManager } from "./subnet/manager.ts";
import { LeaseLostError } from "./subnet/mod.ts";
import { lockSubnetFile, writeSubnetFile } from "./subnet/subnet_env.ts";
import { describeSubnets } from "./lease.ts";
import { loadBackend } from "./backend/loaders.ts";
import type { BackendContext } from "./backend/mod.ts";
import { isAbort } from "./async.ts";
import { Netlink, subscribe } from "../ffi/netlink/mod.ts";
import { sigusr1Blocked } from "./sigusr1.ts";
import { type HostRange, type HostSetup, setUpHost } from "./host/mod.ts";
import { daemonReadiness, startHealth } from "./health/mod.ts";
import {
  backendReady,
  leaseExpiry,
  leaseHeld,
  registry as metrics,
  setBuildInfo,
} from "./health/catalog.ts";
import { instrumentRegistry } from "./health/registry_metrics.ts";
import { configKey } from "./lease.ts";
import { sdNotify } from "../ffi/notify.ts";

const log = logger("main");

/** How long the daemon waits for the backend to stop after a signal before exiting anyway. */
const STOP_GRACE_MS = 1500;

/** Runs the daemon until a signal or a fatal error; resolves to the process exit code. */
export async function runDaemon(opts: Options): Promise<number> {
  setVerbosity(opts.v);
  setBuildInfo(VERSION);
  const stop = new AbortController();
  const { signal } = stop;

  if (!sigusr1Blocked()) {
    // main.ts blocks it before loading this module; anything else would leave the inspector open.
    log.error(
      "SIGUSR1 is not blocked, so it would open Deno's inspector: start flannel by main.ts",
    );
    return 1;
  }
  log.v(1, "SIGUSR1 is blocked in every thread: it cannot open the inspector");
  let signalled = false;
  const onSignal = (name: Deno.Signal) => () => {
    if (signalled) {
      log.warn(`Received ${name} again, exiting now`);
      Deno.exit(1);
    }
    signalled = true;
    log.info(`Received ${name}, shutting down (the lease stays in etcd)`);
    stop.abort(new DOMException(`${name} received`, "AbortError"));
  };
  const handlers = (["SIGTERM", "SIGINT"] as const).map((s) => {
    const h = onSignal(s);
    Deno.addSignalListener(s, h);
    return [s, h] as const;
  });

  log.info(`flannel ${VERSION} starting (pid ${Deno.pid})`);

  let nl: Netlink | null = null;
  let registry: ReturnType<typeof connectEtcd> | null = null;
  const readiness = daemonReadiness();
  let health: Promise<void> | null = null;
  let keeping: Promise<void> | null = null;
  let lock: Deno.FsFile | null = null;
  try {
    // Before anything touches the kernel or etcd: a second daemon stops here.
    lock = lockSubnetFile(opts.subnetFile);
    // Fail fast on a missing interface before waiting for etcd; the addresses of the families
    // the config enables are looked up once the config is known.
    nl = Netlink.open();
    checkExternalInterface(nl, opts);

    const etcd = connectEtcd({
      endpoints: opts.etcdEndpoints,
      keyFile: opts.etcdKeyfile || undefined,
      certFile: opts.etcdCertfile || undefined,
      caFile: opts.etcdCafile || undefined,
      username: opts.etcdUsername || undefined,
      password: opts.etcdPassword || undefined,
    });
    registry = instrumentRegistry(etcd);
    if (opts.healthzPort > 0) {
      const reg = registry;
      const server = startHealth({
        hostname: opts.healthzIP,
        port: opts.healthzPort,
        readiness,
        probeEtcd: () => reg.get(configKey(opts.etcdPrefix)),
        signal,
      });
      health = server.finished;
      log.info(`Serving /healthz, /readyz and /metrics on ${opts.healthzIP}:${server.addr.port}`);
    }
    const config = await waitForNetworkConfig(registry, opts.etcdPrefix, signal, logger("config"));
    const ranges = [config.ipv4, config.ipv6].filter((r) => r !== null).map((r) =>
      `${r.network.family === 4 ? "Network" : "IPv6Network"} ${r.network}, ` +
      `${r.network.family === 4 ? "SubnetLen" : "IPv6SubnetLen"} ${r.subnetLen}`
    );
    log.info(`${ranges.join(", ")}, backend ${config.backend.type}`);
    const ext = findExternalInterface(nl, opts, {
      ipv4: config.ipv4 !== null,
      ipv6: config.ipv6 !== null,
    });
    log.info(describeInterface(ext));
    warnUnderlayInNetwork(config, ext);
    nl.close();
    nl = null;

    const create = await loadBackend(config.backend.type);
    const subnets = new RegistrySubnetManager({
      registry,
      config,
      prefix: opts.etcdPrefix,
      subnetFile: opts.subnetFile,
      underlay: ext.networks ?? [],
      renewMarginMinutes: opts.subnetLeaseRenewMargin,
    });
    const ctx: BackendContext = {
      config,
      ext,
      subnets,
      netlink: Netlink.open,
      events: (kinds, s) => subscribe(kinds, s),
      env: Deno.env.toObject(),
    };
    const network = await create(ctx).init(signal);
    leaseHeld.set(1);
    leaseExpiry.set(network.lease.expiration ? network.lease.expiration.getTime() / 1000 : 0);
    network.registerMetrics?.(metrics);

    // Firewall rules and the blackhole route, for each family the network has. The handle stays
    // open until exit: the resync loop re-checks the routes.
    const hostRanges: HostRange[] = [];
    if (config.ipv4 && network.lease.subnet) {
      hostRanges.push({ network: config.ipv4.network, subnet: network.lease.subnet });
    }
    if (config.ipv6 && network.lease.ipv6Subnet) {
      hostRanges.push({ network: config.ipv6.network, subnet: network.lease.ipv6Subnet });
    }
    nl = Netlink.open();
    const host: HostSetup = await setUpHost(opts, hostRanges, { routes: nl });
    const fws = host.firewalls;
    if (fws.length > 0) {
      readiness.firewall = () => {
        const off = fws.filter((f) => !f.installed).map((f) => f.tool);
        return off.length === 0 ? null : `firewall rules not in place (${off.join(", ")})`;
      };
    }

    await writeSubnetFile(opts.subnetFile, {
      network: config.ipv4?.network ?? null,
      subnet: network.lease.subnet,
      ipv6Network: config.ipv6?.network ?? null,
      ipv6Subnet: network.lease.ipv6Subnet,
      mtu: network.mtu,
      ipMasq: opts.ipMasq,
    });
    log.info(
      `Wrote ${opts.subnetFile} (subnet ${describeSubnets(network.lease)}, MTU ${network.mtu})`,
    );
    backendReady.set(1);
    try {
      if (sdNotify("READY=1")) log.v(1, "Notified systemd: READY=1");
    } catch (err) {
      log.warn(`Cannot notify systemd: ${errText(err)}`);
    }

    // The backend follows peers; keepLease renews and watches our own key. Whichever ends first
    // (a signal ends both) decides the exit.
    const lost = new AbortController();
    const both = AbortSignal.any([signal, lost.signal]);
    let code = 0;
    keeping = host.keep(both);
    const configWatch = watchNetworkConfig(
      registry,
      opts.etcdPrefix,
      config,
      both,
      logger("config"),
    )
      .catch((err) => log.warn(`Stopped watching the network config: ${errText(err)}`));
    const running = network.run(both).then(() => {
      if (!both.aborted) throw new Error("The backend stopped by itself");
    }).catch((err) => {
      if (isAbort(err, both)) return;
      log.error(`Backend ${config.backend.type} failed: ${errText(err)}`);
      code = 1;
      lost.abort(err);
    });
    try {
      await subnets.keepLease(network.lease, both);
    } catch (err) {
      if (err instanceof LeaseLostError) {
        log.error(`${err.message}: exiting so that a restart acquires a new lease`);
        code = 1;
      } else if (!isAbort(err, both)) {
        log.error(`Lease keeper failed: ${errText(err)}`);
        code = 1;
      }
      lost.abort(err);
    }
    await withDeadline(running, STOP_GRACE_MS, "backend");
    leaseHeld.set(0);
    await configWatch;
    return code;
  } catch (err) {
    if (isAbort(err, signal)) return 0;
    log.error(errText(err));
    return 1;
  } finally {
    stop.abort();
    for (const [s, h] of handlers) Deno.removeSignalListener(s, h);
    if (keeping) await withDeadline(keeping, 300, "host rules resync");
    nl?.close();
    if (health) await withDeadline(health, 300, "health server");
    if (registry) await withDeadline(Promise.resolve(registry.close()), 300, "etcd client");
    lock?.close();
  }
}

/**
 * One warning when a Network holds the external address: the host's own network is then part
 * of the overlay (its subnets are skipped, but peers' routes and masquerading may cut across it).
 */
function warnUnderlayInNetwork(config: NetworkConfig, ext: ExternalInterface): void {
  const pairs: [string, SubnetRange | null, IP | null][] = [
    ["Network", config.ipv4, ext.ifaceAddr],
    ["IPv6Network", config.ipv6, ext.ifaceV6Addr],
  ];
  for (const [key, range, addr] of pairs) {
    if (range && addr && range.network.contains(addr)) {
      log.warn(
        `${key} ${range.network} contains the external address ${addr} of ${ext.name}: ` +
          `subnets overlapping ${ext.name}'s networks are never leased, but choose a ${key} ` +
          `apart from the hosts' own network`,
      );
    }
  }
}

/** Waits for `p` at most `ms`; logs (and never throws) when it fails or overruns. */
async function withDeadline(p: Promise<unknown>, ms: number, what: string): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"timeout">((r) => timer = setTimeout(() => r("timeout"), ms));
  try {
    const r = await Promise.race([p.then(() => "done" as const), timeout]);
    if (r === "timeout") log.warn(`The ${what} did not stop within ${ms} ms`);
  } catch (err) {
    log.warn(`The ${what} stopped with an error: ${errText(err)}`);
  } finally {
    clearTimeout(timer);
  }
}
