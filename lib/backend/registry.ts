/**
 * Backend types and their factories. Imports are static so `deno compile` embeds every backend.
 */

import type { BackendFactory } from "./mod.ts";
import type { BackendConfig } from "../config.ts";
import { create as alloc } from "./alloc/mod.ts";
import { create as awsVpc } from "./awsvpc/mod.ts";
import { create as hostGw } from "./hostgw/mod.ts";
import { create as udp } from "./udp/mod.ts";
import { create as vxlan } from "./vxlan/mod.ts";

const FACTORIES: Record<BackendConfig["type"], BackendFactory> = {
  "alloc": alloc,
  "udp": udp,
  "vxlan": vxlan,
  "host-gw": hostGw,
  "aws-vpc": awsVpc,
};

/** The factory of a backend type. */
export function backendFactory(type: BackendConfig["type"]): BackendFactory {
  return FACTORIES[type];
}
