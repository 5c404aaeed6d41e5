/**
 * What etcd3 1.1.2 offers no option for, patched into its connection pool (the version is pinned
 * in deno.json; tests/e2e/registry_test.ts fails if these internals change):
 *
 * - TLS by IP address: replaces the channel credentials etcd3 built (it has no way to pass
 *   grpc-js `verifyOptions`) with ours.
 * - user/password: the token exchange uses the host's own Auth client. etcd3 builds a separate
 *   one for each exchange, without the channel options (so without the SNI override, which Deno
 *   then refuses for an IP) and never closes it: its channel outlived close().
 * - close: every channel of the host is closed at once (etcd3 defers a connecting one by 1 s).
 * - require-leader: every call carries the gRPC metadata `hasleader: true` (what etcd's Go
 *   client sets with `clientv3.WithRequireLeader`). A member without a leader then refuses calls
 *   at once ("etcdserver: no leader") instead of leaving them to their deadline, and cancels a
 *   watch stream once it has lost its leader for a few election timeouts, instead of keeping it
 *   open and silent while the rest of the cluster moves on.
 */

import type { Etcd3 } from "etcd3";
import { castGrpcError } from "etcd3";
import { type ChannelCredentials, Metadata } from "@grpc/grpc-js";

/** The parts of etcd3 1.1.2's connection pool that are patched here. */
interface PoolInternals {
  hosts: {
    channelCredentials: unknown;
    cachedServices: Record<string, { close(): void } | undefined>;
    resetAllServices(): void;
    getServiceClient(name: "Auth"): {
      authenticate(
        req: { name: string; password: string },
        md: Metadata,
        opts: object,
        cb: (err: Error | null, res?: { token: string }) => void,
      ): void;
    };
  }[];
  authenticator: {
    credentials: unknown;
    getMetadata(): Promise<Metadata>;
    getCredentialsFromHost(
      address: string,
      name: string,
      password: string,
      callOptions: object | undefined,
    ): Promise<string>;
  };
}

/** gRPC metadata of etcd's require-leader (`rpctypes.MetadataRequireLeaderKey`). */
const REQUIRE_LEADER: [string, string] = ["hasleader", "true"];

/**
 * Patches one single-host etcd3 client: require-leader on every call, and with `creds` our TLS
 * credentials. Throws when etcd3's internals are not what this was written against.
 */
export function patchClient(client: Etcd3, creds: ChannelCredentials | null): void {
  const pool = (client as unknown as { pool: PoolInternals }).pool;
  if (
    pool?.hosts?.length !== 1 || typeof pool.hosts[0].getServiceClient !== "function" ||
    typeof pool.hosts[0].resetAllServices !== "function" ||
    typeof pool.hosts[0].cachedServices !== "object" ||
    typeof pool.authenticator?.getCredentialsFromHost !== "function" ||
    typeof pool.authenticator?.getMetadata !== "function"
  ) {
    throw new Error("Etcd3 internals changed: cannot patch the connection pool");
  }
  const auth = pool.authenticator;
  const getMetadata = auth.getMetadata.bind(auth);
  // getMetadata hands out one cached object (with the auth token): add to a copy.
  auth.getMetadata = async () => {
    const md = (await getMetadata()).clone();
    md.set(...REQUIRE_LEADER);
    return md;
  };
  const host = pool.hosts[0];
  // etcd3 defers closing a channel that is still connecting by up to 1 s (waitForReady, for
  // grpc-node#1487, fixed long before grpc-js 1.14): that channel and its timers would outlive
  // close(). Closed at once instead, on failover as on close().
  host.resetAllServices = () => {
    const services = Object.values(host.cachedServices);
    const subchannels = services.flatMap(subchannelsOf);
    host.cachedServices = Object.create(null);
    for (const service of services) service?.close();
    // A subchannel closed while connecting or after a failed attempt keeps its reconnect
    // backoff timer (up to grpc.max_reconnect_backoff_ms) running: grpc-js stops it only on
    // READY, and offers no way to stop it from outside.
    for (const sc of subchannels) sc.backoffTimeout?.stop();
  };
  if (creds !== null) {
    host.channelCredentials = creds;
    auth.credentials = creds;
  }
  auth.getCredentialsFromHost = (_address, name, password, callOptions) =>
    new Promise((resolve, reject) => {
      host.getServiceClient("Auth").authenticate(
        { name, password },
        new Metadata(),
        callOptions ?? {},
        (err, res) => err ? reject(castGrpcError(err)) : resolve(res!.token),
      );
    });
}

/** The parts of etcd3 1.1.2's watch manager that {@link closeClient} ends. */
interface WatchManagerInternals {
  /** 0 idle, 1 connecting, 2 connected. */
  state: number;
  watchers: unknown[];
  stream?: { removeAllListeners(): void; on(ev: "error", fn: () => void): void; cancel(): void };
  queue?: { destroy(): void };
}

/**
 * Closes an etcd3 client and everything it opened. etcd3 keeps its watch stream open after the
 * last watcher is cancelled, and grpc-js's `close()` leaves calls in flight running: the stream
 * (and the connection under it) would outlive close() until etcd drops it, then etcd3 would
 * schedule a reconnect. The stream is cancelled here, with etcd3's listeners removed first so
 * that the cancellation schedules nothing.
 */
export function closeClient(client: Etcd3): void {
  const wm = (client as unknown as { watchManager?: WatchManagerInternals }).watchManager;
  if (wm && typeof wm.state === "number" && Array.isArray(wm.watchers)) {
    wm.watchers = [];
    if (wm.state === 2 && wm.stream) {
      wm.queue?.destroy();
      wm.stream.removeAllListeners();
      wm.stream.on("error", () => {});
      wm.stream.cancel();
    }
    wm.state = 0;
  }
  // Closes every channel through the patched resetAllServices (see patchClient).
  client.close();
}

/** The parts of grpc-js 1.14's channel that hold its subchannels (a local subchannel pool). */
interface ChannelInternals {
  internalChannel?: {
    subchannelPool?: {
      pool?: Record<string, { subchannel: { backoffTimeout?: { stop(): void } } }[]>;
    };
  };
}

/** The subchannels of one grpc-js service client's channel (none when the internals differ). */
function subchannelsOf(service: unknown): { backoffTimeout?: { stop(): void } }[] {
  const channel = (service as { getChannel?(): unknown } | undefined)?.getChannel?.() as
    | ChannelInternals
    | undefined;
  const entries = channel?.internalChannel?.subchannelPool?.pool ?? {};
  return Object.values(entries).flatMap((list) => list.map((e) => e.subchannel));
}
