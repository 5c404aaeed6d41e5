/**
 * One address type for IPv4 and IPv6, from config to netlink.
 *
 * An {@link IP} holds its family and its network-order bytes (4 or 16); an {@link IPNet} is an IP
 * with a prefix length and no host bits set. Subnet arithmetic goes through `bigint` so both
 * families share one code path. It lives in `ffi/` because the netlink verbs take it and `ffi/`
 * never imports `lib/`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { IP, IPNet } from "./ip.ts";
 * assert.equal(IP.mustParse("2001:db8:0:0:1:0:0:1").toString(), "2001:db8::1:0:0:1");
 * const n = IPNet.mustParse("10.1.0.0/16");
 * assert.ok(n.contains(IP.mustParse("10.1.7.1")));
 * ```
 *
 * @module
 */

/** An address family: 4 or 6. */
export type Family = 4 | 6;

/** The number of bits in an address of `family`. */
export function familyBits(family: Family): 32 | 128 {
  return family === 4 ? 32 : 128;
}

/**
 * An IPv4 or IPv6 address. Treat it as immutable: `bytes` is a plain own property (not a private
 * field) so that structural comparisons such as `assert.deepEqual` see the address.
 */
export class IP {
  /** 4 or 6. */
  readonly family: Family;
  /** The network-order bytes (4 or 16); never to be written to. */
  readonly bytes: Uint8Array<ArrayBuffer>;

  private constructor(bytes: Uint8Array<ArrayBuffer>) {
    this.family = bytes.length === 4 ? 4 : 6;
    this.bytes = bytes;
  }

  /** From 4 or 16 network-order bytes (copied); throws on any other length. */
  static fromBytes(b: Uint8Array): IP {
    if (b.length !== 4 && b.length !== 16) {
      throw new TypeError(`Invalid IP address: ${b.length} bytes (expected 4 or 16)`);
    }
    return new IP(Uint8Array.from(b));
  }

  /** An IPv4 address from a host-order u32 (`0x0a000001` → 10.0.0.1). */
  static fromU32(n: number): IP {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, n >>> 0, false);
    return new IP(b);
  }

  /** From an unsigned integer; throws when it does not fit the family. */
  static fromBigInt(v: bigint, family: Family): IP {
    const bits = familyBits(family);
    if (v < 0n || v >> BigInt(bits) !== 0n) {
      throw new RangeError(`Invalid IP address: ${v} does not fit in ${bits} bits`);
    }
    const b = new Uint8Array(bits / 8);
    for (let i = b.length - 1; i >= 0; i--) {
      b[i] = Number(v & 0xffn);
      v >>= 8n;
    }
    return new IP(b);
  }

  /** Parses a dotted quad or IPv6 text (no zone id); null when `s` is neither. */
  static parse(s: string): IP | null {
    const b = s.includes(":") ? parse6(s) : parse4(s);
    return b ? new IP(b) : null;
  }

  /** {@link IP.parse} that throws `TypeError: Invalid IP address: …` instead of returning null. */
  static mustParse(s: string): IP {
    const ip = IP.parse(s);
    if (!ip) throw new TypeError(`Invalid IP address: ${s}`);
    return ip;
  }

  /** 32 or 128. */
  get bits(): 32 | 128 {
    return familyBits(this.family);
  }

  /** The IPv4 address as a host-order u32; throws for IPv6. */
  toU32(): number {
    if (this.family !== 4) throw new TypeError(`Not an IPv4 address: ${this}`);
    const b = this.bytes;
    return ((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]) >>> 0;
  }

  /** The address as an unsigned integer. */
  toBigInt(): bigint {
    let v = 0n;
    for (const x of this.bytes) v = (v << 8n) | BigInt(x);
    return v;
  }

  /** Same family and bytes. */
  equals(o: IP): boolean {
    if (o.family !== this.family) return false;
    const a = this.bytes;
    const b = o.bytes;
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
    return true;
  }

  /** Orders IPv4 before IPv6, then by value: negative, 0 or positive. */
  compare(o: IP): number {
    if (o.family !== this.family) return this.family - o.family;
    const a = this.bytes;
    const b = o.bytes;
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] - b[i];
    return 0;
  }

  /** Dotted quad, or RFC 5952 canonical IPv6 text. */
  toString(): string {
    return this.family === 4 ? format4(this.bytes, 0) : format6(this.bytes);
  }

  /** JSON carries the text form. */
  toJSON(): string {
    return this.toString();
  }
}

/** An IP network: an address with no host bits set and a prefix length. Immutable. */
export class IPNet {
  readonly ip: IP;
  readonly prefix: number;

  /** Throws when the prefix is out of range or `ip` has host bits set ({@link IPNet.of} masks). */
  constructor(ip: IP, prefix: number) {
    if (!Number.isInteger(prefix) || prefix < 0 || prefix > ip.bits) {
      throw new RangeError(`Invalid prefix length /${prefix} for IPv${ip.family}`);
    }
    if ((ip.toBigInt() & ~maskOf(prefix, ip.bits)) !== 0n) {
      throw new RangeError(`${ip}/${prefix} has host bits set`);
    }
    this.ip = ip;
    this.prefix = prefix;
  }

  /** The network of `prefix` bits that contains `ip` (host bits cleared). */
  static of(ip: IP, prefix: number): IPNet {
    if (!Number.isInteger(prefix) || prefix < 0 || prefix > ip.bits) {
      throw new RangeError(`Invalid prefix length /${prefix} for IPv${ip.family}`);
    }
    return new IPNet(IP.fromBigInt(ip.toBigInt() & maskOf(prefix, ip.bits), ip.family), prefix);
  }

  /**
   * Parses `addr/len`. With `strict`, host bits must be zero; without, they are cleared. Returns
   * an error string instead of throwing so callers can name the field at fault.
   */
  static parse(s: string, strict = true): IPNet | string {
    const slash = s.indexOf("/");
    if (slash < 0) return `${JSON.stringify(s)} is not a CIDR (expected address/len)`;
    const ip = IP.parse(s.slice(0, slash));
    const lenText = s.slice(slash + 1);
    if (ip === null || !/^\d{1,3}$/.test(lenText) || Number(lenText) > ip.bits) {
      return `${JSON.stringify(s)} is not a CIDR`;
    }
    const net = IPNet.of(ip, Number(lenText));
    if (strict && !net.ip.equals(ip)) {
      return `${JSON.stringify(s)} has host bits set (network address is ${net})`;
    }
    return net;
  }

  /** {@link IPNet.parse} (strict) that throws `TypeError` with the error text. */
  static mustParse(s: string): IPNet {
    const n = IPNet.parse(s);
    if (typeof n === "string") throw new TypeError(`Invalid CIDR: ${n}`);
    return n;
  }

  /** The address family. */
  get family(): Family {
    return this.ip.family;
  }

  /** The netmask as an integer of the family's width. */
  mask(): bigint {
    return maskOf(this.prefix, this.ip.bits);
  }

  /** The number of addresses (`/24` → 256n). */
  size(): bigint {
    return 1n << BigInt(this.ip.bits - this.prefix);
  }

  /** The last address (the broadcast address for IPv4). */
  last(): IP {
    return IP.fromBigInt(this.ip.toBigInt() + this.size() - 1n, this.ip.family);
  }

  /** True when `ip` (same family) lies inside this network. */
  contains(ip: IP): boolean {
    return ip.family === this.family &&
      (ip.toBigInt() & this.mask()) === this.ip.toBigInt();
  }

  /** True when `inner` lies wholly inside this network. */
  containsNet(inner: IPNet): boolean {
    return inner.prefix >= this.prefix && this.contains(inner.ip);
  }

  /** True when the two networks share any address. */
  overlaps(o: IPNet): boolean {
    if (o.family !== this.family) return false;
    const m = maskOf(Math.min(this.prefix, o.prefix), this.ip.bits);
    return (this.ip.toBigInt() & m) === (o.ip.toBigInt() & m);
  }

  /** Same address and prefix. */
  equals(o: IPNet): boolean {
    return this.prefix === o.prefix && this.ip.equals(o.ip);
  }

  /** `addr/len`. */
  toString(): string {
    return `${this.ip}/${this.prefix}`;
  }

  /** JSON carries the text form. */
  toJSON(): string {
    return this.toString();
  }
}

function maskOf(prefix: number, bits: number): bigint {
  const all = (1n << BigInt(bits)) - 1n;
  return all ^ ((1n << BigInt(bits - prefix)) - 1n);
}

// -- text forms ------------------------------------------------------------------------------

/** A dotted quad: four decimal parts 0..255, no leading zeros (they read as octal elsewhere). */
function parse4(s: string): Uint8Array<ArrayBuffer> | null {
  const parts = s.split(".");
  if (parts.length !== 4) return null;
  const b = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i];
    if (!/^\d{1,3}$/.test(p) || (p.length > 1 && p[0] === "0")) return null;
    const v = Number(p);
    if (v > 255) return null;
    b[i] = v;
  }
  return b;
}

/** RFC 4291 section 2.2 text: hex groups, one `::`, an optional trailing dotted quad. */
function parse6(s: string): Uint8Array<ArrayBuffer> | null {
  if (s.length > 45 || !/^[0-9a-fA-F:.]+$/.test(s)) return null; // also rejects zone ids ("%")
  const dbl = s.indexOf("::");
  if (dbl >= 0 && s.indexOf("::", dbl + 1) >= 0) return null;
  const head = words6(dbl >= 0 ? s.slice(0, dbl) : s, dbl < 0);
  const tail = dbl >= 0 ? words6(s.slice(dbl + 2), true) : [];
  if (head === null || tail === null) return null;
  const n = head.length + tail.length;
  // Without "::" there must be eight groups; "::" stands for at least one zero group.
  if (dbl < 0 ? n !== 8 : n > 7) return null;
  const words = [...head, ...new Array<number>(8 - n).fill(0), ...tail];
  const b = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    b[2 * i] = words[i] >> 8;
    b[2 * i + 1] = words[i] & 0xff;
  }
  return b;
}

/** The 16-bit groups of one side of "::"; a dotted quad is allowed only last when `last`. */
function words6(s: string, last: boolean): number[] | null {
  if (s === "") return [];
  const groups = s.split(":");
  const out: number[] = [];
  for (let i = 0; i < groups.length; i++) {
    const g = groups[i];
    if (g.includes(".")) {
      if (!last || i !== groups.length - 1) return null;
      const q = parse4(g);
      if (!q) return null;
      out.push((q[0] << 8) | q[1], (q[2] << 8) | q[3]);
    } else if (/^[0-9a-fA-F]{1,4}$/.test(g)) {
      out.push(parseInt(g, 16));
    } else {
      return null;
    }
  }
  return out;
}

function format4(b: Uint8Array, off: number): string {
  return `${b[off]}.${b[off + 1]}.${b[off + 2]}.${b[off + 3]}`;
}

/** RFC 5952: lower case, no leading zeros, the longest run (first on a tie) of 2+ zero groups as `::`. */
function format6(b: Uint8Array): string {
  const w: number[] = [];
  for (let i = 0; i < 8; i++) w.push((b[2 * i] << 8) | b[2 * i + 1]);
  // RFC 5952 section 5: IPv4-mapped addresses keep the dotted quad.
  if (w[0] === 0 && w[1] === 0 && w[2] === 0 && w[3] === 0 && w[4] === 0 && w[5] === 0xffff) {
    return `::ffff:${format4(b, 12)}`;
  }
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (w[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && w[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (xs: number[]) => xs.map((x) => x.toString(16)).join(":");
  if (best < 0) return hex(w);
  return `${hex(w.slice(0, best))}::${hex(w.slice(best + bestLen))}`;
}
