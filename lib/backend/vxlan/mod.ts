/**
 * The vxlan backend: the kernel's VXLAN device carries the traffic, this process only programs it.
 *
 * Installs: the device `flannel.<VNI>` (vxlan id VNI, local = external interface address, lower
 * device = external interface, dstport `Port`, learning off unless `Learning`, no group, MTU =
 * `MTU` or external MTU − 50) holding `<own subnet base>/32`, up. Lease attrs: BackendType
 * "vxlan", BackendData `{"VNI":…,"VtepMAC":…}` (the device MAC).
 *
 * With `EnableIPv6`, as upstream, a second device `flannel-v6.<VNI>` over the IPv6 underlay
 * (local = the interface's IPv6 address, `IFLA_VXLAN_LOCAL6`; MTU external − 70) holding
 * `<own IPv6 subnet base>/128`, advertised as PublicIPv6 and BackendV6Data (its MAC); its peers
 * get permanent NDP entries, FDB entries with IPv6 destinations and onlink routes on it, from a
 * second instance of the same route network (route_network.ts). IPv6-only: only that device.
 * subnet.env gets the smaller MTU of the two.
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
import { type FamilyPlane, isDirect, routeNetwork } from "../route_network.ts";

const log = logger("vxlan");

/** The vxlan device name for a VNI (`flannel-v6.<VNI>` for the IPv6 one, as upstream). */
export function deviceName(vni: number, family: 4 | 6 = 4): string {
  return family === 4 ? `flannel.${vni}` : `flannel-v6.${vni}`;
}

/** Creates the vxlan backend for `ctx` (config.backend must be vxlan). */
export function create(ctx: BackendContext): Backend {
  const cfg = backendConfig(ctx, "vxlan");
  return { init: (signal) => init(ctx, cfg, signal) };
}

/** VXLAN over IPv4 adds 50 bytes (outer IPv4, UDP, VXLAN, inner Ethernet), over IPv6 70. */
const OVERHEAD = { 4: 50, 6: 70 } as const;

/** One family's device as init set it up. */
interface FamilyDevice {
  readonly family: 4 | 6;
  readonly spec: DeviceSpec;
  readonly mac: string;
  index: number;
  mtu: number;
}

async function init(
  ctx: BackendContext,
  cfg: VxlanBackendConfig,
  signal: AbortSignal,
): Promise<Network> {
  const families: { family: 4 | 6; local: IP }[] = [];
  if (ctx.config.ipv4) families.push({ family: 4, local: need(ctx.ext.ifaceAddr, 4) });
  if (ctx.config.ipv6) families.push({ family: 6, local: need(ctx.ext.ifaceV6Addr, 6) });
  const nl = ctx.netlink();
  try {
    const devs: FamilyDevice[] = [];
    for (const { family, local } of families) {
      const spec: DeviceSpec = {
        name: deviceName(cfg.vni, family),
        vni: cfg.vni,
        local,
        lowerIndex: ctx.ext.index,
        port: cfg.port,
        learning: cfg.learning,
        gbp: cfg.gbp,
        mtu: cfg.mtu ?? ctx.ext.mtu - OVERHEAD[family],
      };
      const dev = await retry(spec.name, signal, () => ensureDevice(nl, spec, log));
      if (!dev.mac) throw new Error(`Device ${spec.name} has no MAC address`);
      devs.push({ family, spec, mac: dev.mac, index: dev.index, mtu: dev.mtu });
    }
    const v4 = devs.find((d) => d.family === 4);
    const v6 = devs.find((d) => d.family === 6);
    const { lease, peers } = await ctx.subnets.acquireLease({
      publicIP: v4 ? ctx.ext.publicIP : null,
      publicIPv6: v6 ? ctx.ext.publicIPv6 : null,
      backendType: "vxlan",
      backendData: v4 ? vxlanLeaseData(cfg.vni, v4.mac) : null,
      backendV6Data: v6 ? vxlanLeaseData(cfg.vni, v6.mac) : null,
    }, signal);
    const planes: FamilyPlane[] = devs.map((d) => {
      // The device holds the subnet's base address alone (/32, /128): no broadcast routes, and
      // a source address on the overlay for traffic from the host itself.
      const own = d.family === 4 ? lease.subnet : lease.ipv6Subnet;
      if (!own) throw new Error(`The lease has no IPv${d.family} subnet`);
      const address = own.ip;
      const bits = address.bits;
      ensureAddress(nl, d.index, address, bits, log);
      d.mtu = nl.linkGet(d.index)?.mtu ?? d.mtu;
      const ownIP = d.family === 4 ? ctx.ext.publicIP! : ctx.ext.publicIPv6!;
      const peer = {
        family: d.family,
        vni: cfg.vni,
        extIndex: ctx.ext.index,
        directRouting: cfg.directRouting,
        ownIP,
        isDirect: (ip: IP) => isDirect(nl, ip, ctx.ext.index),
      };
      return {
        family: d.family,
        peer: (l) => planVxlanPeer(l, { ...peer, devIndex: d.index, ownMAC: d.mac }),
        device: {
          name: d.spec.name,
          index: () => d.index,
          recreate: () => {
            const n = ensureDevice(nl, d.spec, log, d.mac);
            d.index = n.index;
            ensureAddress(nl, n.index, address, bits, log);
            return `VtepMAC ${n.mac}`;
          },
        },
      };
    });
    // subnet.env carries one MTU: the smaller one fits both devices.
    const mtu = Math.min(...devs.map((d) => d.mtu));
    return routeNetwork({ ctx, nl, lease, peers, mtu, log, planes });
  } catch (err) {
    nl.close();
    throw err;
  }
}

function need(ip: IP | null, family: 4 | 6): IP {
  if (ip === null) throw new Error(`The external interface has no IPv${family} address`);
  return ip;
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
