/**
 * alloc: lease and renewal only.
 *
 * Installs nothing on the host and follows no peers; something else (a cloud route table, a
 * static setup) carries the traffic. subnet.env's MTU is the external interface's. On restart the
 * same lease is found again by PublicIP. With `EnableIPv6` the lease holds both families (or
 * the IPv6 subnet alone when IPv4 is disabled), PublicIPv6 advertised, as upstream.
 */

import { type Backend, backendConfig, type BackendContext } from "../mod.ts";
import { untilAborted } from "../../async.ts";

/** Creates the alloc backend. */
export function create(ctx: BackendContext): Backend {
  backendConfig(ctx, "alloc");
  return {
    async init(signal) {
      const { ext, config } = ctx;
      const { lease } = await ctx.subnets.acquireLease({
        publicIP: config.ipv4 ? ext.publicIP : null,
        publicIPv6: config.ipv6 ? ext.publicIPv6 : null,
        backendType: "",
        backendData: null,
        backendV6Data: null,
      }, signal);
      return { lease, mtu: ctx.ext.mtu, run: (s) => untilAborted(s) };
    },
  };
}
