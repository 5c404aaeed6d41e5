/**
 * External interface discovery: which interface carries overlay traffic, its IPv4 and IPv6
 * addresses, the addresses advertised to peers, and its MTU — all read from the kernel through
 * rtnetlink dumps.
 *
 * Order (as upstream flannel): each `--iface` (a name, or an IPv4 or IPv6 address held by some
 * interface) in turn, first match wins; else each `--iface-regex` against interface names and
 * addresses; else, with `--iface-can-reach`, the interface and source address of the kernel's
 * route to that address (`ip route get`, either family); else the interface of the default IPv4
 * route (the default IPv6 route on an IPv6-only network).
 *
 * Each enabled family needs an address on the chosen interface: the one the choice named, else
 * the first global one (IPv4 falls back to a link-local one, as upstream; IPv6 never does: a
 * link-local underlay address would need a zone).
 */

import { RT_SCOPE_LINK, RT_SCOPE_UNIVERSE } from "../ffi/netlink/mod.ts";
import { type Family, IP, IPNet } from "./ip.ts";

/** The interface that carries overlay traffic between hosts. */
export interface ExternalInterface {
  /** Interface name, e.g. `eth0`. */
  readonly name: string;
  /** Interface index. */
  readonly index: number;
  /** The IPv4 address on the interface; null when the config disables IPv4. */
  readonly ifaceAddr: IP | null;
  /** The IPv4 address advertised to peers (`--public-ip`, else `ifaceAddr`). */
  readonly publicIP: IP | null;
  /** The IPv6 address on the interface; null unless the config enables IPv6. */
  readonly ifaceV6Addr: IP | null;
  /** The IPv6 address advertised to peers (`--public-ipv6`, else `ifaceV6Addr`). */
  readonly publicIPv6: IP | null;
  /** The interface MTU as the kernel reports it. */
  readonly mtu: number;
  /**
   * The connected prefixes of the interface's addresses (enabled families): a lease overlapping
   * one would hand the host an underlay address. Absent (fakes in tests): none known.
   */
  readonly networks?: readonly IPNet[];
}

/** The rtnetlink reads discovery needs (a subset of ffi/netlink `Netlink`). */
export interface LinkReader {
  linkList(): { index: number; name: string; mtu: number }[];
  addrList(
    index?: number,
    family?: Family,
  ): { index: number; address: IP; prefix: number; scope: number }[];
  defaultRoute(family?: Family): { index: number; gateway: IP | null } | null;
  /** `ip route get`: null when unreachable. */
  routeGet(dst: IP): { oif: number | null; prefsrc: IP | null } | null;
}

/** What the command line says about the external interface. */
export interface IfaceOptions {
  iface: string[];
  ifaceRegex: string[];
  publicIP: string;
  /** `--public-ipv6`; `""` = the interface's IPv6 address. */
  publicIPv6?: string;
  /** An IPv4 or IPv6 address; `""` = not used. Consulted only without `--iface`/`--iface-regex`. */
  ifaceCanReach?: string;
}

/** Which families the network config enables (both default to IPv4 only). */
export interface Families {
  readonly ipv4: boolean;
  readonly ipv6: boolean;
}

/** A discovery failure with a message fit for the log. */
export class InterfaceError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "InterfaceError";
  }
}

type Link = { index: number; name: string; mtu: number };
type Addr = { index: number; address: IP; prefix: number; scope: number };

/** Finds the external interface; throws {@link InterfaceError} with a clear message. */
export function findExternalInterface(
  nl: LinkReader,
  opts: IfaceOptions,
  families: Families = { ipv4: true, ipv6: false },
): ExternalInterface {
  const links = nl.linkList().sort((a, b) => a.index - b.index);
  const addrs: Addr[] = [
    ...(families.ipv4 ? nl.addrList(undefined, 4) : []),
    ...(families.ipv6 ? nl.addrList(undefined, 6) : []),
  ];
  const addrsOf = (index: number, family: Family) =>
    addrs.filter((a) => a.index === index && a.address.family === family);
  const { link, named } = chooseLink(nl, opts, links, addrs, [families.ipv4 ? 4 : 6]);

  let ifaceAddr: IP | null = null;
  if (families.ipv4) {
    ifaceAddr = named[4];
    if (ifaceAddr === null) {
      const own = addrsOf(link.index, 4);
      const pick = own.find((a) => a.scope === RT_SCOPE_UNIVERSE) ??
        own.findLast((a) => a.scope === RT_SCOPE_LINK);
      if (!pick) throw new InterfaceError(`Failed to find IPv4 address for interface ${link.name}`);
      ifaceAddr = pick.address;
    }
  }
  let ifaceV6Addr: IP | null = null;
  if (families.ipv6) {
    ifaceV6Addr = named[6];
    if (ifaceV6Addr === null) {
      const pick = addrsOf(link.index, 6).find((a) => a.scope === RT_SCOPE_UNIVERSE);
      if (!pick) {
        throw new InterfaceError(
          `Failed to find a global IPv6 address for interface ${link.name} (EnableIPv6 is true)`,
        );
      }
      ifaceV6Addr = pick.address;
    }
  }
  if (!(link.mtu > 0)) {
    throw new InterfaceError(`Interface ${link.name} reports MTU ${link.mtu}`);
  }

  const publicIP = families.ipv4 ? overrideOf("--public-ip", opts.publicIP, 4) ?? ifaceAddr : null;
  const publicIPv6 = families.ipv6
    ? overrideOf("--public-ipv6", opts.publicIPv6 ?? "", 6) ?? ifaceV6Addr
    : null;
  const networks: IPNet[] = [];
  for (const a of addrs) {
    if (a.index !== link.index) continue;
    const n = IPNet.of(a.address, a.prefix);
    if (!networks.some((m) => m.equals(n))) networks.push(n);
  }
  return {
    name: link.name,
    index: link.index,
    ifaceAddr,
    publicIP,
    ifaceV6Addr,
    publicIPv6,
    mtu: link.mtu,
    networks,
  };
}

/**
 * The early check, before the network config (and so the families) is known: the interface the
 * options choose exists. An `--iface` address may be of either family, and without a choice the
 * default IPv4 route, else the default IPv6 one, names it (an IPv6-only host has no IPv4 route).
 * Addresses are checked once the config says which families it needs
 * ({@link findExternalInterface}). Throws {@link InterfaceError}; returns the interface's name.
 */
export function checkExternalInterface(nl: LinkReader, opts: IfaceOptions): string {
  const links = nl.linkList().sort((a, b) => a.index - b.index);
  const addrs: Addr[] = [...nl.addrList(undefined, 4), ...nl.addrList(undefined, 6)];
  return chooseLink(nl, opts, links, addrs, [4, 6]).link.name;
}

/**
 * The interface the options choose among `links` (with `addrs` the addresses an `--iface`,
 * `--iface-regex` may name), and the addresses the choice named; without a choice, the first
 * of `defaultFamilies` with a default route names it.
 */
function chooseLink(
  nl: LinkReader,
  opts: IfaceOptions,
  links: Link[],
  addrs: Addr[],
  defaultFamilies: Family[],
): { link: Link; named: { 4: IP | null; 6: IP | null } } {
  let chosen: Link | undefined;
  /** Addresses the choice itself named (an `--iface` address, a regex match, a route source). */
  const named: { 4: IP | null; 6: IP | null } = { 4: null, 6: null };

  if (opts.iface.length > 0) {
    for (const want of opts.iface) {
      const ip = IP.parse(want.trim());
      if (ip !== null) {
        const a = addrs.find((x) => x.address.equals(ip));
        if (a) {
          chosen = links.find((l) => l.index === a.index);
          named[ip.family] = ip;
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
        const a = addrs.find((x) => x.index === l.index && re.test(x.address.toString()));
        if (a) {
          chosen = l;
          named[a.address.family] = a.address;
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
  } else if (opts.ifaceCanReach) {
    const dst = IP.parse(opts.ifaceCanReach.trim());
    if (dst === null) {
      throw new InterfaceError(
        `--iface-can-reach ${opts.ifaceCanReach} is not an IPv4 or IPv6 address`,
      );
    }
    const r = nl.routeGet(dst);
    if (!r || r.oif === null) {
      throw new InterfaceError(`No route to --iface-can-reach ${opts.ifaceCanReach}`);
    }
    chosen = links.find((l) => l.index === r.oif);
    if (!chosen) {
      throw new InterfaceError(
        `The route to --iface-can-reach ${opts.ifaceCanReach} uses interface index ${r.oif}, which is gone`,
      );
    }
    // The source address the kernel picks for that destination, as upstream flannel.
    if (r.prefsrc !== null) named[r.prefsrc.family] = r.prefsrc;
  } else {
    let def: { index: number } | null = null;
    for (const family of defaultFamilies) {
      def = nl.defaultRoute(family);
      if (def) break;
    }
    if (!def) {
      const which = defaultFamilies.map((f) => `IPv${f}`).join(" or ");
      throw new InterfaceError(
        `No default ${which} route to find the external interface: use --iface`,
      );
    }
    const index = def.index;
    chosen = links.find((l) => l.index === index);
    if (!chosen) {
      throw new InterfaceError(`The default route's interface (index ${index}) is gone`);
    }
  }
  return { link: chosen, named };
}

function overrideOf(flag: string, text: string, family: Family): IP | null {
  if (!text) return null;
  const ip = IP.parse(text.trim());
  if (ip?.family !== family) {
    throw new InterfaceError(`${flag} ${text} is not an IPv${family} address`);
  }
  return ip;
}

/** One line describing the interface for the log. */
export function describeInterface(ext: ExternalInterface): string {
  const parts: string[] = [];
  if (ext.ifaceAddr) {
    const pub = ext.publicIP && !ext.publicIP.equals(ext.ifaceAddr)
      ? ` (public IP ${ext.publicIP})`
      : "";
    parts.push(`address ${ext.ifaceAddr}${pub}`);
  }
  if (ext.ifaceV6Addr) {
    const pub = ext.publicIPv6 && !ext.publicIPv6.equals(ext.ifaceV6Addr)
      ? ` (public IPv6 ${ext.publicIPv6})`
      : "";
    parts.push(`IPv6 address ${ext.ifaceV6Addr}${pub}`);
  }
  return `Using interface ${ext.name} (index ${ext.index}) with ${
    parts.join(" and ")
  }, MTU ${ext.mtu}`;
}
