/**
 * Backend types and their factories. Imports are static so `deno compile` embeds every backend.
 */

import type { BackendFactory } from "./mod.ts";
import type { BackendConfig } from "../config.ts";
import { create as alloc } from "./alloc/mod.ts";
import { create as udp } from "./udp/mod.ts";
import { create as awsVpc } from "./awsvpc/mod.ts";

const FACTORIES: Record<BackendConfig["type"], BackendFactory | undefined> = {
  "alloc": alloc,
  "udp": udp,
  "vxlan": undefined,
  "host-gw": undefined,
  "aws-vpc": awsVpc,
};

/** The factory of a backend type; undefined when this build lacks it. */
export function backendFactory(type: BackendConfig["type"]): BackendFactory | undefined {
  return FACTORIES[type];
}
