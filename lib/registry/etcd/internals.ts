/**
 * What etcd3 1.1.2 offers no option for, patched into its connection pool (the version is pinned
 * in deno.json; tests/e2e/registry_test.ts fails if these internals change):
 *
 * - TLS by IP address: replaces the channel credentials etcd3 built (it has no way to pass
 *   grpc-js `verifyOptions`) with ours, and makes the user/password token exchange use the
 *   host's own Auth client: etcd3 builds a separate one for it without the channel options (so
 *   without the SNI override, which Deno then refuses for an IP).
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
  if (creds === null) return;
  const host = pool.hosts[0];
  host.channelCredentials = creds;
  auth.credentials = creds;
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
