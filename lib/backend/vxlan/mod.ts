/**
 * The vxlan backend: the kernel's VXLAN device carries the traffic, this process only programs it.
 *
 * Installs: the device `flannel.<VNI>` (vxlan id VNI, local = external interface address, lower
 * device = external interface, dstport `Port`, learning off unless `Learning`, no group, MTU =
 * `MTU` or external MTU − 50) holding `<own subnet base>/32`, up. Lease attrs: BackendType
 * "vxlan", BackendData `{"VNI":…,"VtepMAC":…}` (the device MAC).
 *
 * Lease added or changed: permanent FDB `VtepMAC → dst PublicIP`, permanent ARP `<peer base> →
 * VtepMAC`, route `<peer subnet> via <peer base> dev flannel.<VNI> onlink` (all replace); with
 * DirectRouting a peer on a directly connected subnet gets `<subnet> via <PublicIP> dev <ext>`
 * instead. A peer of another backend type or VNI: one warning, skipped. Removed: route, ARP and
 * FDB entries are deleted.
 *
 * Restart: nothing is removed on exit. On start a compatible device is reused as it is (same MAC,
 * address left alone when right) and the first lease batch reconciles: entries of peers that are
 * gone are removed, right ones are not touched, so traffic does not blink. While running, a
 * deleted device is recreated with the same MAC and reprogrammed, and a deleted peer route or ARP
 * entry is restored (netlink subscription), and the entries are reconciled when the external
 * interface comes back up (the kernel drops routes through it silently when it goes down).
 */

import type { VxlanBackendConfig } from "../../config.ts";
import type { IP } from "../../ip.ts";
import { errText, logger } from "../../log.ts";
import { sleep } from "../../async.ts";
import { type Backend, backendConfig, type BackendContext, type Network } from "../mod.ts";
import { type DeviceSpec, ensureAddress, ensureDevice } from "./device.ts";
import { planVxlanPeer, vxlanLeaseData } from "./entries.ts";
import { isDirect, routeNetwork } from "../route_network.ts";

const log = logger("vxlan");

/** The vxlan device name for a VNI. */
export function deviceName(vni: number): string {
  return `flannel.${vni}`;
}

/** Creates the vxlan backend for `ctx` (config.backend must be vxlan). */
export function create(ctx: BackendContext): Backend {
  const cfg = backendConfig(ctx, "vxlan");
  return { init: (signal) => init(ctx, cfg, signal) };
}

async function init(
  ctx: BackendContext,
  cfg: VxlanBackendConfig,
  signal: AbortSignal,
): Promise<Network> {
  const spec: DeviceSpec = {
    name: deviceName(cfg.vni),
    vni: cfg.vni,
    local: ctx.ext.ifaceAddr,
    lowerIndex: ctx.ext.index,
    port: cfg.port,
    learning: cfg.learning,
    gbp: cfg.gbp,
    mtu: cfg.mtu ?? ctx.ext.mtu - 50,
  };
  const nl = ctx.netlink();
  try {
    const dev = await retry(spec.name, signal, () => ensureDevice(nl, spec, log));
    if (!dev.mac) throw new Error(`Device ${spec.name} has no MAC address`);
    const mac = dev.mac;
    let devIndex = dev.index;
    const { lease, peers } = await ctx.subnets.acquireLease({
      publicIP: ctx.ext.publicIP,
      backendType: "vxlan",
      backendData: vxlanLeaseData(cfg.vni, mac),
    }, signal);
    const address = lease.subnet.ip;
    ensureAddress(nl, devIndex, address, 32, log);
    const mtu = nl.linkGet(devIndex)?.mtu ?? dev.mtu;
    const peer = {
      vni: cfg.vni,
      extIndex: ctx.ext.index,
      directRouting: cfg.directRouting,
      ownIP: ctx.ext.publicIP,
      isDirect: (ip: IP) => isDirect(nl, ip, ctx.ext.index),
    };
    return routeNetwork({
      ctx,
      nl,
      lease,
      peers,
      mtu,
      log,
      peer: (l) => planVxlanPeer(l, { ...peer, devIndex }),
      device: {
        name: spec.name,
        index: () => devIndex,
        recreate: () => {
          const d = ensureDevice(nl, spec, log, mac);
          devIndex = d.index;
          ensureAddress(nl, d.index, address, 32, log);
          return `VtepMAC ${d.mac}`;
        },
      },
    });
  } catch (err) {
    nl.close();
    throw err;
  }
}

/** Retries `fn` every second (as upstream does for device creation) until it works or aborts. */
async function retry<T>(name: string, signal: AbortSignal, fn: () => T): Promise<T> {
  for (;;) {
    signal.throwIfAborted();
    try {
      return fn();
    } catch (err) {
      log.error(`Cannot set up ${name}: ${errText(err)}; retrying in 1 s`);
    }
    await sleep(1000, signal);
  }
}
