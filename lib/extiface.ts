/**
 * External interface discovery: which interface carries overlay traffic, its IPv4 address, the
 * address advertised to peers, and its MTU — all read from the kernel through rtnetlink dumps.
 *
 * Order (as upstream flannel): each `--iface` (a name, or an IPv4 address held by some
 * interface) in turn, first match wins; else each `--iface-regex` against interface names and
 * addresses; else the interface of the default IPv4 route.
 */

import { RT_SCOPE_LINK, RT_SCOPE_UNIVERSE } from "../ffi/netlink/mod.ts";
import { type IP, parseIPv4 } from "./ip.ts";

/** The interface that carries overlay traffic between hosts. */
export interface ExternalInterface {
  /** Interface name, e.g. `eth0`. */
  readonly name: string;
  /** Interface index. */
  readonly index: number;
  /** The IPv4 address on the interface. */
  readonly ifaceAddr: IP;
  /** The address advertised to peers (`--public-ip`, else `ifaceAddr`). */
  readonly publicIP: IP;
  /** The interface MTU as the kernel reports it. */
  readonly mtu: number;
}

/** The rtnetlink reads discovery needs (a subset of ffi/netlink `Netlink`). */
export interface LinkReader {
  linkList(): { index: number; name: string; mtu: number }[];
  addrList(index?: number): { index: number; address: IP; prefix: number; scope: number }[];
  defaultRoute(): { index: number; gateway: IP | null } | null;
}

/** What the command line says about the external interface. */
export interface IfaceOptions {
  iface: string[];
  ifaceRegex: string[];
  publicIP: string;
}

/** A discovery failure with a message fit for the log. */
export class InterfaceError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "InterfaceError";
  }
}

/** Finds the external interface; throws {@link InterfaceError} with a clear message. */
export function findExternalInterface(nl: LinkReader, opts: IfaceOptions): ExternalInterface {
  const links = nl.linkList().sort((a, b) => a.index - b.index);
  const addrs = nl.addrList();
  const addrsOf = (index: number) => addrs.filter((a) => a.index === index);

  let chosen: { index: number; name: string; mtu: number } | undefined;
  let ifaceAddr: IP | null = null;

  if (opts.iface.length > 0) {
    for (const want of opts.iface) {
      const ip = parseIPv4(want);
      if (ip !== null) {
        const a = addrs.find((x) => x.address.equals(ip));
        if (a) {
          chosen = links.find((l) => l.index === a.index);
          ifaceAddr = ip;
        }
      } else {
        chosen = links.find((l) => l.name === want);
      }
      if (chosen) break;
    }
    if (!chosen) {
      throw new InterfaceError(
        `No interface matches --iface ${opts.iface.join(", ")}: ` +
          `interfaces here are ${links.map((l) => l.name).join(", ") || "none"}`,
      );
    }
  } else if (opts.ifaceRegex.length > 0) {
    for (const pattern of opts.ifaceRegex) {
      const re = new RegExp(pattern);
      for (const l of links) {
        if (re.test(l.name)) {
          chosen = l;
          break;
        }
        const a = addrsOf(l.index).find((x) => re.test(x.address.toString()));
        if (a) {
          chosen = l;
          ifaceAddr = a.address;
          break;
        }
      }
      if (chosen) break;
    }
    if (!chosen) {
      throw new InterfaceError(
        `No interface name or address matches --iface-regex ${opts.ifaceRegex.join(", ")}`,
      );
    }
  } else {
    const def = nl.defaultRoute();
    if (!def) {
      throw new InterfaceError("No default IPv4 route to find the external interface: use --iface");
    }
    chosen = links.find((l) => l.index === def.index);
    if (!chosen) {
      throw new InterfaceError(`The default route's interface (index ${def.index}) is gone`);
    }
  }

  if (ifaceAddr === null) {
    const own = addrsOf(chosen.index);
    const global = own.find((a) => a.scope === RT_SCOPE_UNIVERSE);
    const linkLocal = own.findLast((a) => a.scope === RT_SCOPE_LINK);
    const pick = global ?? linkLocal;
    if (!pick) throw new InterfaceError(`Failed to find IPv4 address for interface ${chosen.name}`);
    ifaceAddr = pick.address;
    if (ifaceAddr.family !== 4) {
      throw new InterfaceError(`Interface ${chosen.name} has a malformed address ${pick.address}`);
    }
  }
  if (!(chosen.mtu > 0)) {
    throw new InterfaceError(`Interface ${chosen.name} reports MTU ${chosen.mtu}`);
  }

  let publicIP = ifaceAddr;
  if (opts.publicIP) {
    const p = parseIPv4(opts.publicIP);
    if (p === null) throw new InterfaceError(`--public-ip ${opts.publicIP} is not an IPv4 address`);
    publicIP = p;
  }
  return { name: chosen.name, index: chosen.index, ifaceAddr, publicIP, mtu: chosen.mtu };
}

/** One line describing the interface for the log. */
export function describeInterface(ext: ExternalInterface): string {
  const pub = ext.publicIP.equals(ext.ifaceAddr) ? "" : `, public IP ${ext.publicIP}`;
  return `Using interface ${ext.name} (index ${ext.index}) with address ${ext.ifaceAddr}${pub}, MTU ${ext.mtu}`;
}
