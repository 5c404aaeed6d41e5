/**
 * aws-vpc: no encapsulation; the VPC route table sends each host's subnet to its instance.
 *
 * Installs nothing on the host. Init reads the instance id and region from IMDS (a host that is
 * not on EC2 fails here, before taking a lease: the daemon exits 1 with a line saying so), takes
 * the lease (`{PublicIP}` only), disables the instance's source/destination check, picks the route
 * table (RouteTableID, else the subnet's, else the VPC's main one) and makes the route
 * `<own subnet> → this instance` exist, replacing a route for the same CIDR (a blackhole left by a
 * dead instance, or another instance's). Every EC2 error before the route step is fatal in init
 * (credentials, permissions, RouteTableID, throttling past the retries); on the route step only
 * RouteLimitExceeded and transient failures past the retries are not: the daemon becomes ready
 * and run keeps retrying (10 s, doubling to 60 s), deleting departed routes first, which may free
 * a slot. Fatal means the daemon logs the one line and exits 1.
 *
 * Lease added: nothing (each host installs its own route). Lease removed: every host deletes the
 * route of that subnet (racing hosts get InvalidRoute.NotFound, which is fine). A route inside
 * Network with no lease that was never seen removed (left from before this daemon started) is
 * deleted only after a grace period, so a host that has just taken its lease and created its
 * route is not raced by a peer whose watch lags. Routes outside Network, or of another prefix
 * length, are never touched. Everything is re-checked every 60 s.
 *
 * Survives a restart: the routes and the source/dest setting live in EC2; a restarted host finds
 * its route present (or replaces it) and its lease again by PublicIP.
 */

import {
  backendConfig,
  type BackendContext,
  type BackendFactory,
  ipv4Attrs,
  ipv4Only,
  type Network,
  ownIPv4,
} from "../mod.ts";
import type { LeaseSnapshot } from "../../subnet/mod.ts";
import type { AwsVpcBackendConfig } from "../../config.ts";
import { errText, logger } from "../../log.ts";
import type { Lease } from "../../lease.ts";
import { isAbort } from "../../async.ts";
import type { RouteTable } from "@aws-sdk/client-ec2";
import { ec2Client } from "./client.ts";
import { type RetryPolicy, VpcRoutes } from "./ec2.ts";
import { AwsVpcError, isRetryable } from "./errors.ts";
import { type ImdsOptions, readInstanceIdentity } from "./imds.ts";

const log = logger("aws-vpc");

/** Codes after which init still succeeds and run keeps retrying the own route. */
const RETRY_IN_RUN = new Set(["RouteLimitExceeded", "IncorrectInstanceState"]);

/** Timings and endpoints; the defaults are for production, tests shorten them. */
export interface AwsVpcOptions {
  /** Full re-check interval, default 60 000 ms. */
  readonly recheckMs?: number;
  /** First retry of a failed own route, default 10 000 ms (doubling up to `recheckMs`). */
  readonly routeRetryMs?: number;
  /** How long a route with no lease (never seen removed) survives, default 10 000 ms. */
  readonly graceMs?: number;
  readonly retry?: RetryPolicy;
  readonly imds?: ImdsOptions;
}

/** Creates the aws-vpc backend with the production timings. */
export const create: BackendFactory = awsVpc();

/** The aws-vpc backend factory with other timings (tests shorten them). */
export function awsVpc(opts: AwsVpcOptions = {}): BackendFactory {
  return (ctx) => {
    const cfg = backendConfig(ctx, "aws-vpc");
    return { init: (signal) => initAwsVpc(ctx, cfg, opts, signal) };
  };
}

async function initAwsVpc(
  ctx: BackendContext,
  cfg: AwsVpcBackendConfig,
  opts: AwsVpcOptions,
  signal: AbortSignal,
): Promise<Network> {
  const recheckMs = opts.recheckMs ?? 60_000;
  const routeRetryMs = opts.routeRetryMs ?? 10_000;
  const graceMs = opts.graceMs ?? 10_000;
  let tableId = "";
  const v4 = ipv4Only(ctx, "aws-vpc");
  let lease: Lease;
  let peers: LeaseSnapshot;
  let ownCidr = "";
  let routePending = false;
  let instanceId = "";

  /** Makes our route exist; true when done, false when it must be retried later. */
  async function ensureOwn(
    signal: AbortSignal,
    fatal: boolean,
    table?: RouteTable,
  ): Promise<boolean> {
    try {
      const r = await routes.ensureRoute(tableId, ownCidr, signal, table);
      if (r !== "present" || routePending) {
        log.info(`Route ${ownCidr} → ${instanceId} in ${tableId}: ${r}`);
      }
      return true;
    } catch (err) {
      if (isAbort(err, signal)) throw err;
      const retryLater = !fatal ||
        (err instanceof AwsVpcError &&
          (RETRY_IN_RUN.has(err.code ?? "") || isRetryable(err.cause)));
      if (!retryLater) throw err;
      log.error(errText(err));
      return false;
    }
  }

  async function run(signal: AbortSignal): Promise<void> {
    const leased = new Set<string>();
    const removed = new Set<string>();
    const suspects = new Map<string, number>();
    let synced = false;
    let watchErr: unknown = null;
    let wake: (() => void) | null = null;
    let dirty = false;
    const poke = () => {
      dirty = true;
      wake?.();
    };

    const watcher = (async () => {
      try {
        for await (const batch of ctx.subnets.watchLeases(lease, peers, signal)) {
          for (const ev of batch) {
            // IPv4 only (upstream's aws-vpc is): a lease without an IPv4 subnet has no route.
            if (!ev.lease.subnet) continue;
            const cidr = ev.lease.subnet.toString();
            if (ev.type === "added") {
              leased.add(cidr);
              removed.delete(cidr);
            } else {
              leased.delete(cidr);
              removed.add(cidr);
              log.info(`Lease ${cidr} removed: deleting its route`);
            }
          }
          synced = true;
          poke();
        }
      } catch (err) {
        if (!isAbort(err, signal)) watchErr = err;
        poke();
      }
    })();

    // init already said "Retrying … in routeRetryMs" when the route is pending.
    let nextOwnTry = Date.now() + routeRetryMs;
    let retryDelay = Math.min(recheckMs, routeRetryMs * 2);
    while (!signal.aborted && watchErr === null) {
      let waitMs = recheckMs;
      dirty = false;
      try {
        // One DescribeRouteTables per pass; deletions never touch our own route.
        const table = await routes.describeTable(tableId, signal);
        if (synced) {
          // A deletion that keeps failing must not keep our own route from being checked.
          try {
            await deleteDeparted(table, signal);
          } catch (err) {
            if (isAbort(err, signal)) throw err;
            log.error(`Deleting departed routes failed: ${errText(err)}`);
            waitMs = routeRetryMs;
          }
        }
        if (!routePending || Date.now() >= nextOwnTry) {
          const ok = await ensureOwn(signal, false, table);
          if (ok) {
            routePending = false;
            retryDelay = routeRetryMs;
          } else {
            routePending = true;
            nextOwnTry = Date.now() + retryDelay;
            log.info(`Retrying route ${ownCidr} in ${retryDelay / 1000}s`);
            retryDelay = Math.min(recheckMs, retryDelay * 2);
          }
        }
        if (routePending) waitMs = Math.min(waitMs, Math.max(0, nextOwnTry - Date.now()));
        if (suspects.size > 0) waitMs = Math.min(waitMs, graceMs);
      } catch (err) {
        if (isAbort(err, signal)) break;
        log.error(`Route check failed, next in ${routeRetryMs / 1000}s: ${errText(err)}`);
        waitMs = routeRetryMs;
      }
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          signal.removeEventListener("abort", done);
          wake = null;
          resolve();
        };
        const timer = setTimeout(done, dirty ? 0 : waitMs);
        signal.addEventListener("abort", done, { once: true });
        wake = done;
      });
    }
    await watcher;
    client.destroy();
    if (watchErr !== null) throw watchErr;

    async function deleteDeparted(table: RouteTable, signal: AbortSignal): Promise<void> {
      // A route is kept while its lease exists, deleted at once when we saw its lease go, and
      // after graceMs when no lease was ever seen (its owner may be between lease and route).
      const now = Date.now();
      const keep = new Set<string>([ownCidr, ...leased]);
      const present = new Set<string>();
      for (const r of table.Routes ?? []) {
        if (!routes.isOverlayRoute(r)) continue;
        const cidr = r.DestinationCidrBlock!;
        present.add(cidr);
        if (keep.has(cidr) || removed.has(cidr)) {
          suspects.delete(cidr);
          continue;
        }
        const since = suspects.get(cidr);
        if (since === undefined) {
          suspects.set(cidr, now);
          log.info(`Route ${cidr} in ${tableId} has no lease; deleting it in ${graceMs / 1000}s`);
        }
        if (since === undefined || now - since < graceMs) keep.add(cidr);
      }
      for (const c of [...suspects.keys(), ...removed]) {
        if (!present.has(c)) {
          suspects.delete(c);
          removed.delete(c);
        }
      }
      // Live view: a lease that reappears while this pass runs still saves its route.
      const live = { has: (c: string) => keep.has(c) || leased.has(c) };
      const deleted = await routes.deleteDepartedRoutes(tableId, live, signal, table);
      for (const c of deleted) {
        suspects.delete(c);
        removed.delete(c);
      }
    }
  }

  const imds = {
    ...opts.imds,
    endpoint: opts.imds?.endpoint ?? ctx.env["AWS_EC2_METADATA_SERVICE_ENDPOINT"],
  };
  const id = await readInstanceIdentity(imds, signal);
  instanceId = id.instanceId;
  log.info(`Instance ${id.instanceId} in ${id.region} (${id.availabilityZone})`);
  const client = ec2Client(id.region, ctx.env);
  const routes = new VpcRoutes({
    client,
    instanceId: id.instanceId,
    network: v4.range.network,
    subnetLen: v4.range.subnetLen,
    retry: opts.retry,
    log,
  });
  try {
    ({ lease, peers } = await ctx.subnets.acquireLease(ipv4Attrs(v4.publicIP), signal));
    ownCidr = ownIPv4(lease).toString();
    await routes.disableSourceDestCheck(signal);
    log.info(`Disabled the source/destination check of ${id.instanceId}`);
    tableId = await routes.chooseRouteTable(cfg.routeTableID, signal);
    log.info(`Using route table ${tableId}`);
    routePending = !(await ensureOwn(signal, true));
    if (routePending) log.info(`Retrying route ${ownCidr} in ${routeRetryMs / 1000}s`);
  } catch (err) {
    client.destroy();
    throw err;
  }
  return { lease, mtu: ctx.ext.mtu, run };
}
