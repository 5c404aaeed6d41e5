/**
 * The EC2 side of aws-vpc: choose the route table, disable the source/destination check, make
 * our own route exist, delete the routes of departed leases — every call retried with backoff on
 * throttling, 5xx and network failures, every other failure an {@link AwsVpcError}.
 *
 * Only routes inside the overlay network with the network's subnet length are ever deleted; the
 * rest of the route table (local route, gateways, other networks) is never touched.
 */

import {
  CreateRouteCommand,
  DeleteRouteCommand,
  DescribeInstancesCommand,
  DescribeRouteTablesCommand,
  type EC2Client,
  ModifyInstanceAttributeCommand,
  ReplaceRouteCommand,
  type Route,
  type RouteTable,
} from "@aws-sdk/client-ec2";
import { type IPNet, parseCIDR } from "../../ip.ts";
import { type Logger, logger } from "../../log.ts";
import { sleep } from "../../async.ts";
import { awsErrorCode, AwsVpcError, describeAwsError, isRetryable } from "./errors.ts";

/** Backoff of transient EC2 failures: delay = min(capMs, baseMs·2^n), `attempts` calls in all. */
export interface RetryPolicy {
  readonly attempts: number;
  readonly baseMs: number;
  readonly capMs: number;
}

/** Six attempts over about 15 s. */
export const DEFAULT_RETRY: RetryPolicy = { attempts: 6, baseMs: 500, capMs: 8000 };

/** What {@link VpcRoutes.ensureRoute} did. */
export type EnsureResult = "created" | "replaced" | "present";

/** Options of {@link VpcRoutes}. */
export interface VpcRoutesOptions {
  readonly client: EC2Client;
  /** This instance: the target of our route. */
  readonly instanceId: string;
  /** The overlay network and its subnet length: the routes this backend may delete. */
  readonly network: IPNet;
  readonly subnetLen: number;
  readonly retry?: RetryPolicy;
  readonly log?: Logger;
}

/** EC2 route-table operations for one instance. */
export class VpcRoutes {
  readonly #client: EC2Client;
  readonly #instanceId: string;
  readonly #network: IPNet;
  readonly #subnetLen: number;
  readonly #retry: RetryPolicy;
  readonly #log: Logger;

  constructor(opts: VpcRoutesOptions) {
    this.#client = opts.client;
    this.#instanceId = opts.instanceId;
    this.#network = opts.network;
    this.#subnetLen = opts.subnetLen;
    this.#retry = opts.retry ?? DEFAULT_RETRY;
    this.#log = opts.log ?? logger("aws-vpc");
  }

  /**
   * Runs one EC2 call, retrying transient failures with exponential backoff (one warning per
   * retry). Rejects with {@link AwsVpcError} naming `what`, or with the abort reason.
   */
  async call<T>(what: string, op: () => Promise<T>, signal: AbortSignal): Promise<T> {
    const { attempts, baseMs, capMs } = this.#retry;
    for (let n = 0;; n++) {
      signal.throwIfAborted();
      try {
        return await op();
      } catch (err) {
        if (signal.aborted) throw signal.reason;
        if (!isRetryable(err) || n + 1 >= attempts) throw new AwsVpcError(what, err);
        const delay = Math.min(capMs, baseMs * 2 ** n);
        this.#log.warn(
          `${what}: ${describeAwsError(err)}; retrying in ${delay / 1000}s (attempt ${
            n + 2
          } of ${attempts})`,
        );
        await sleep(delay, signal);
      }
    }
  }

  /** ModifyInstanceAttribute SourceDestCheck=false: the instance forwards for its subnet. */
  async disableSourceDestCheck(signal: AbortSignal): Promise<void> {
    await this.call(
      `ModifyInstanceAttribute ${this.#instanceId} SourceDestCheck=false`,
      () =>
        this.#client.send(
          new ModifyInstanceAttributeCommand({
            InstanceId: this.#instanceId,
            SourceDestCheck: { Value: false },
          }),
          { abortSignal: signal },
        ),
      signal,
    );
  }

  /**
   * The route table to program: `configured` when given (checked to exist), else the one
   * associated with the instance's subnet, else the main table of the instance's VPC.
   */
  async chooseRouteTable(configured: string | null, signal: AbortSignal): Promise<string> {
    if (configured) {
      await this.describeTable(configured, signal);
      return configured;
    }
    const out = await this.call(
      `DescribeInstances ${this.#instanceId}`,
      () =>
        this.#client.send(new DescribeInstancesCommand({ InstanceIds: [this.#instanceId] }), {
          abortSignal: signal,
        }),
      signal,
    );
    const inst = out.Reservations?.[0]?.Instances?.[0];
    if (!inst?.SubnetId || !inst.VpcId) {
      throw new Error(`Cannot choose a route table: instance ${this.#instanceId} is not in a VPC`);
    }
    const bySubnet = await this.#findTables(
      `the route table of ${inst.SubnetId}`,
      [{ Name: "association.subnet-id", Values: [inst.SubnetId] }],
      signal,
    );
    if (bySubnet[0]?.RouteTableId) return bySubnet[0].RouteTableId;
    const main = await this.#findTables(
      `the main route table of ${inst.VpcId}`,
      [{ Name: "vpc-id", Values: [inst.VpcId] }, { Name: "association.main", Values: ["true"] }],
      signal,
    );
    if (main[0]?.RouteTableId) return main[0].RouteTableId;
    throw new Error(
      `Cannot choose a route table: neither ${inst.SubnetId} nor ${inst.VpcId} has one; set RouteTableID`,
    );
  }

  async #findTables(
    what: string,
    filters: { Name: string; Values: string[] }[],
    signal: AbortSignal,
  ): Promise<RouteTable[]> {
    const out = await this.call(
      `DescribeRouteTables (${what})`,
      () =>
        this.#client.send(new DescribeRouteTablesCommand({ Filters: filters }), {
          abortSignal: signal,
        }),
      signal,
    );
    return out.RouteTables ?? [];
  }

  /** DescribeRouteTables for one table id. */
  async describeTable(tableId: string, signal: AbortSignal): Promise<RouteTable> {
    const out = await this.call(
      `DescribeRouteTables ${tableId}`,
      () =>
        this.#client.send(new DescribeRouteTablesCommand({ RouteTableIds: [tableId] }), {
          abortSignal: signal,
        }),
      signal,
    );
    const table = out.RouteTables?.[0];
    if (!table) throw new Error(`DescribeRouteTables ${tableId} returned no route table`);
    return table;
  }

  /**
   * Makes `cidr` → this instance exist in `tableId`: nothing when an active route to us is there,
   * ReplaceRoute when another route for `cidr` exists (another instance, a blackhole), else
   * CreateRoute (falling back to ReplaceRoute when one appeared meanwhile). `table` saves a
   * DescribeRouteTables when the caller just made one.
   */
  async ensureRoute(
    tableId: string,
    cidr: string,
    signal: AbortSignal,
    table?: RouteTable,
  ): Promise<EnsureResult> {
    table ??= await this.describeTable(tableId, signal);
    const existing = table.Routes?.find((r) => r.DestinationCidrBlock === cidr);
    if (existing?.InstanceId === this.#instanceId && existing.State === "active") return "present";
    if (existing) {
      await this.#replace(tableId, cidr, existing, signal);
      return "replaced";
    }
    try {
      await this.call(
        `CreateRoute ${cidr} → ${this.#instanceId} in ${tableId}`,
        () =>
          this.#client.send(
            new CreateRouteCommand({
              RouteTableId: tableId,
              DestinationCidrBlock: cidr,
              InstanceId: this.#instanceId,
            }),
            { abortSignal: signal },
          ),
        signal,
      );
      return "created";
    } catch (err) {
      if ((err as AwsVpcError).code !== "RouteAlreadyExists") throw err;
      await this.#replace(tableId, cidr, null, signal);
      return "replaced";
    }
  }

  async #replace(
    tableId: string,
    cidr: string,
    old: Route | null,
    signal: AbortSignal,
  ): Promise<void> {
    const was = old ? ` (was ${routeTarget(old)}, ${old.State ?? "unknown"})` : "";
    this.#log.info(`Replacing route ${cidr} in ${tableId} with ${this.#instanceId}${was}`);
    await this.call(
      `ReplaceRoute ${cidr} → ${this.#instanceId} in ${tableId}`,
      () =>
        this.#client.send(
          new ReplaceRouteCommand({
            RouteTableId: tableId,
            DestinationCidrBlock: cidr,
            InstanceId: this.#instanceId,
          }),
          { abortSignal: signal },
        ),
      signal,
    );
  }

  /** True for a route this backend may delete: a subnet of the overlay network, not local. */
  isOverlayRoute(route: Route): boolean {
    if (!route.DestinationCidrBlock || route.GatewayId === "local") return false;
    if (route.Origin && route.Origin !== "CreateRoute") return false;
    const net = parseCIDR(route.DestinationCidrBlock);
    return typeof net !== "string" && net.prefix === this.#subnetLen &&
      this.#network.containsNet(net);
  }

  /**
   * Deletes the overlay routes of `tableId` whose subnet `leased` does not hold (CIDR strings, our
   * own included). Another host deleting the same route first (InvalidRoute.NotFound) is fine.
   * Returns the deleted CIDRs. `table` saves a DescribeRouteTables when the caller just made one.
   */
  async deleteDepartedRoutes(
    tableId: string,
    leased: { has(cidr: string): boolean },
    signal: AbortSignal,
    table?: RouteTable,
  ): Promise<string[]> {
    table ??= await this.describeTable(tableId, signal);
    const deleted: string[] = [];
    for (const route of table.Routes ?? []) {
      if (!this.isOverlayRoute(route)) continue;
      const cidr = (parseCIDR(route.DestinationCidrBlock!) as IPNet).toString();
      if (leased.has(cidr)) continue;
      try {
        await this.call(
          `DeleteRoute ${cidr} in ${tableId}`,
          () =>
            this.#client.send(
              new DeleteRouteCommand({ RouteTableId: tableId, DestinationCidrBlock: cidr }),
              { abortSignal: signal },
            ),
          signal,
        );
        this.#log.info(`Deleted route ${cidr} → ${routeTarget(route)} in ${tableId}: no lease`);
        deleted.push(cidr);
      } catch (err) {
        if (awsErrorCode((err as Error).cause) !== "InvalidRoute.NotFound") throw err;
      }
    }
    return deleted;
  }
}

function routeTarget(r: Route): string {
  return r.InstanceId ?? r.NetworkInterfaceId ?? r.GatewayId ?? r.NatGatewayId ?? "unknown target";
}
