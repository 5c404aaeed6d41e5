/**
 * IPv4 arithmetic on host-order unsigned 32-bit numbers.
 *
 * An address is a `number` in 0..2^32-1; a network is `{ ip, prefix }` with no host bits set.
 */

/** An IPv4 network: base address (host-order u32) and prefix length. */
export interface IPNet {
  readonly ip: number;
  readonly prefix: number;
}

const DOTTED = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** Parses a dotted quad; null when `s` is not one. */
export function parseIPv4(s: string): number | null {
  const m = DOTTED.exec(s.trim());
  if (!m) return null;
  let n = 0;
  for (let i = 1; i <= 4; i++) {
    const part = m[i];
    if (part.length > 1 && part[0] === "0") return null; // no octal-looking parts
    const o = Number(part);
    if (o > 255) return null;
    n = n * 256 + o;
  }
  return n;
}

/** Formats a host-order u32 as a dotted quad. */
export function formatIPv4(ip: number): string {
  ip = ip >>> 0;
  return `${ip >>> 24}.${(ip >>> 16) & 255}.${(ip >>> 8) & 255}.${ip & 255}`;
}

/** The netmask of a prefix length, as a u32 (`/0` → 0). */
export function netmask(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/** The number of addresses in a prefix (`/24` → 256). */
export function prefixSize(prefix: number): number {
  return 2 ** (32 - prefix);
}

/**
 * Parses `a.b.c.d/len`. With `strict`, host bits must be zero (error otherwise).
 * Returns an error string instead of throwing so callers can name the field at fault.
 */
export function parseCIDR(s: string, strict = true): IPNet | string {
  const slash = s.indexOf("/");
  if (slash < 0) return `${JSON.stringify(s)} is not a CIDR (expected a.b.c.d/len)`;
  const ip = parseIPv4(s.slice(0, slash));
  const lenText = s.slice(slash + 1);
  if (ip === null || !/^\d{1,2}$/.test(lenText) || Number(lenText) > 32) {
    return `${JSON.stringify(s)} is not an IPv4 CIDR`;
  }
  const prefix = Number(lenText);
  const base = (ip & netmask(prefix)) >>> 0;
  if (strict && base !== ip) {
    return `${JSON.stringify(s)} has host bits set (network address is ${
      formatIPv4(base)
    }/${prefix})`;
  }
  return { ip: base, prefix };
}

/** Formats a network as `a.b.c.d/len`. */
export function formatCIDR(n: IPNet): string {
  return `${formatIPv4(n.ip)}/${n.prefix}`;
}

/** True when `ip` lies inside `net`. */
export function contains(net: IPNet, ip: number): boolean {
  return ((ip & netmask(net.prefix)) >>> 0) === net.ip;
}

/** True when `inner` lies wholly inside `outer`. */
export function containsNet(outer: IPNet, inner: IPNet): boolean {
  return inner.prefix >= outer.prefix && contains(outer, inner.ip);
}

/** True when two networks share any address (mask both with the shorter prefix and compare). */
export function overlaps(a: IPNet, b: IPNet): boolean {
  const m = netmask(Math.min(a.prefix, b.prefix));
  return ((a.ip & m) >>> 0) === ((b.ip & m) >>> 0);
}

/** True when two networks are the same. */
export function sameNet(a: IPNet, b: IPNet): boolean {
  return a.ip === b.ip && a.prefix === b.prefix;
}

/** Parses a MAC address `aa:bb:cc:dd:ee:ff` (any case) to 6 bytes; null when malformed. */
export function parseMAC(s: string): Uint8Array<ArrayBuffer> | null {
  const m =
    /^([0-9a-fA-F]{2}):([0-9a-fA-F]{2}):([0-9a-fA-F]{2}):([0-9a-fA-F]{2}):([0-9a-fA-F]{2}):([0-9a-fA-F]{2})$/
      .exec(s);
  if (!m) return null;
  return Uint8Array.from(m.slice(1, 7), (h) => parseInt(h, 16));
}

/** Formats 6 bytes as a lower-case MAC with colons. */
export function formatMAC(b: Uint8Array): string {
  return Array.from(b.subarray(0, 6), (x) => x.toString(16).padStart(2, "0")).join(":");
}
