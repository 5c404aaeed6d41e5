/**
 * alloc: lease and renewal only.
 *
 * Installs nothing on the host and follows no peers; something else (a cloud route table, a
 * static setup) carries the traffic. subnet.env's MTU is the external interface's. On restart the
 * same lease is found again by PublicIP.
 */

import { type Backend, backendConfig, type BackendContext } from "../mod.ts";
import { untilAborted } from "../../async.ts";

/** Creates the alloc backend. */
export function create(ctx: BackendContext): Backend {
  backendConfig(ctx, "alloc");
  return {
    async init(signal) {
      const { lease } = await ctx.subnets.acquireLease(
        { publicIP: ctx.ext.publicIP, backendType: "", backendData: null },
        signal,
      );
      return { lease, mtu: ctx.ext.mtu, run: (s) => untilAborted(s) };
    },
  };
}
