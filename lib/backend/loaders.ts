/**
 * Backend loaders: the factory of each backend type (not the etcd registry: that is lib/registry/).
 *
 * Each backend is loaded only when the config selects it: the aws-vpc backend alone pulls in the
 * AWS SDK (~25 MB of RSS), which a vxlan host should not pay for. The imports name literal paths,
 * so `deno compile` still finds and embeds every backend.
 */

import type { BackendFactory } from "./mod.ts";
import type { BackendConfig } from "../config.ts";

const LOADERS: Record<BackendConfig["type"], () => Promise<{ create: BackendFactory }>> = {
  "alloc": () => import("./alloc/mod.ts"),
  "udp": () => import("./udp/mod.ts"),
  "vxlan": () => import("./vxlan/mod.ts"),
  "host-gw": () => import("./hostgw/mod.ts"),
  "aws-vpc": () => import("./awsvpc/mod.ts"),
  "wireguard": () => import("./wireguard/mod.ts"),
};

/** Loads the factory of a backend type. */
export async function loadBackend(type: BackendConfig["type"]): Promise<BackendFactory> {
  return (await LOADERS[type]()).create;
}
