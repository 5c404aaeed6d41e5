/**
 * The `flannel.<VNI>` device: reuse a compatible one as it is, recreate an incompatible one.
 *
 * Reuse keeps the MAC (the VtepMAC peers have in their ARP/FDB entries), so a restart is invisible
 * to traffic. A recreated device gets the old MAC back for the same reason.
 */

import { type LinkInfo, type Netlink, RT_SCOPE_UNIVERSE } from "../../../ffi/netlink/mod.ts";
import { isErrno } from "../../../ffi/errno.ts";
import type { IP } from "../../ip.ts";
import type { Logger } from "../../log.ts";

/** The netlink verbs the device setup uses (a subset of `Netlink`). */
export type DeviceOps = Pick<
  Netlink,
  | "linkGet"
  | "linkAddVxlan"
  | "linkDelete"
  | "linkSetUp"
  | "linkSetMtu"
  | "addrList"
  | "addrAdd"
  | "addrDel"
>;

/** The device we want. */
export interface DeviceSpec {
  readonly name: string;
  readonly vni: number;
  /** The external interface address (IPv6 for `flannel-v6.<VNI>`). */
  readonly local: IP;
  readonly lowerIndex: number;
  readonly port: number;
  readonly learning: boolean;
  readonly gbp: boolean;
  readonly mtu: number;
}

/**
 * Why an existing link cannot serve as the device (null when it can): it must be a vxlan link
 * with the same VNI, local address, lower device and port, no multicast group, learning and GBP
 * as configured, and none of proxy, l2miss, l3miss (upstream v0.4.0 created its device with
 * `proxy l2miss l3miss` and learning on, for its own miss handling; we answer nothing of that).
 */
export function incompatibility(link: LinkInfo, spec: DeviceSpec): string | null {
  if (link.kind !== "vxlan" || !link.vxlan) return `kind is ${link.kind ?? "unknown"}, not vxlan`;
  const v = link.vxlan;
  if (v.vni !== spec.vni) return `VNI ${v.vni}, want ${spec.vni}`;
  if (!v.local?.equals(spec.local)) return `local ${v.local ?? "unset"}, want ${spec.local}`;
  if (v.lowerIndex !== spec.lowerIndex) {
    return `lower device #${v.lowerIndex ?? "unset"}, want #${spec.lowerIndex}`;
  }
  if (v.port !== spec.port) return `port ${v.port}, want ${spec.port}`;
  if (v.group !== null) return `multicast group ${v.group}, want none`;
  const onOff = (b: boolean) => (b ? "on" : "off");
  if (v.learning !== spec.learning) {
    return `learning ${onOff(v.learning)}, want ${onOff(spec.learning)}`;
  }
  if (v.gbp !== spec.gbp) return `gbp ${onOff(v.gbp)}, want ${onOff(spec.gbp)}`;
  for (const mode of ["proxy", "l2miss", "l3miss"] as const) {
    if (v[mode]) return `${mode} on, want off`;
  }
  return null;
}

function create(nl: DeviceOps, spec: DeviceSpec, mac: string | null): void {
  nl.linkAddVxlan({
    name: spec.name,
    vni: spec.vni,
    local: spec.local,
    lowerIndex: spec.lowerIndex,
    port: spec.port,
    learning: spec.learning,
    gbp: spec.gbp,
    mtu: spec.mtu,
    ...(mac ? { mac } : {}),
  });
}

/**
 * Makes sure the device exists as `spec` says and is up; returns it as the kernel reports it.
 * `mac` (when known, e.g. after the device was deleted under us) is given to a new device.
 * Throws the netlink error when the device cannot be created.
 */
export function ensureDevice(
  nl: DeviceOps,
  spec: DeviceSpec,
  log: Logger,
  mac: string | null = null,
): LinkInfo {
  let link = nl.linkGet(spec.name);
  if (link) {
    const why = incompatibility(link, spec);
    if (why === null) {
      log.info(`Reusing device ${spec.name} (VtepMAC ${link.mac})`);
    } else {
      log.warn(
        `Device ${spec.name} already exists with incompatible configuration (${why}): recreating it`,
      );
      mac ??= link.mac;
      nl.linkDelete(link.index);
      link = null;
    }
  }
  if (!link) {
    let exists: unknown = null;
    try {
      create(nl, spec, mac);
    } catch (err) {
      // Another process created it between our look-up and add: take the next look-up's answer.
      if (!isErrno(err, "EEXIST")) throw err;
      exists = err;
    }
    link = nl.linkGet(spec.name);
    // EEXIST without a device of that name: another vxlan device holds the VNI and port (the
    // kernel's ext-ack says so).
    if (!link && exists) throw exists;
    if (!link) throw new Error(`Device ${spec.name} vanished right after it was created`);
    const why = incompatibility(link, spec);
    if (why !== null) throw new Error(`Device ${spec.name} was created wrong: ${why}`);
    log.info(`Created device ${spec.name} (VtepMAC ${link.mac})`);
  }
  if (link.mtu !== spec.mtu) {
    nl.linkSetMtu(link.index, spec.mtu);
    log.info(`Set MTU of ${spec.name} from ${link.mtu} to ${spec.mtu}`);
  }
  if (!link.up) nl.linkSetUp(link.index);
  return nl.linkGet(link.index) ?? link;
}

/**
 * Leaves `address/prefix` on the device when present; removes every other address of its family
 * (for IPv6 the global ones: the kernel's own link-local address stays); adds it when missing
 * (an IPv6 one `nodad`: the lease makes it unique, and a tentative address could not be used as
 * a source for a second). Returns the number of changes.
 */
export function ensureAddress(
  nl: DeviceOps,
  index: number,
  address: IP,
  prefix: number,
  log: Logger,
): number {
  let changes = 0;
  let present = false;
  for (const a of nl.addrList(index, address.family)) {
    if (a.index !== index) continue;
    if (address.family === 6 && a.scope !== RT_SCOPE_UNIVERSE) continue;
    if (a.address.equals(address) && a.prefix === prefix) {
      present = true;
      continue;
    }
    nl.addrDel(index, a.address, a.prefix);
    log.info(`Removed stale address ${a.address}/${a.prefix} from device #${index}`);
    changes++;
  }
  if (!present) {
    nl.addrAdd(index, address, prefix, address.family === 6 ? { nodad: true } : {});
    changes++;
  }
  return changes;
}
