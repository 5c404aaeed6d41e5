/**
 * The udp data path's peer table: which host (PublicIP:Port) holds the subnet of an overlay
 * address, and whether a datagram's source is a current peer.
 *
 * Lookups are O(number of distinct prefix lengths): one Map per prefix length, keyed by the
 * masked address. All leases of a network share `SubnetLen`, so that is one Map lookup with
 * thousands of peers. Values are `ip * 65536 + port` numbers so a lookup allocates nothing.
 */

// IPv4 as host-order u32 here: this table is on the per-packet path (no allocation per lookup).

/** The netmask of a prefix length as a u32 (`/0` → 0). */
function netmask(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/** Packs an endpoint into one number (exact below 2^53). */
export function packEndpoint(ip: number, port: number): number {
  return (ip >>> 0) * 65536 + port;
}

/** The address of a packed endpoint. */
export function endpointIp(e: number): number {
  return Math.floor(e / 65536);
}

/** The port of a packed endpoint. */
export function endpointPort(e: number): number {
  return e % 65536;
}

interface PrefixTable {
  readonly prefix: number;
  readonly mask: number;
  readonly routes: Map<number, number>;
}

/** Subnet → endpoint routes plus a reference count of endpoints (for source checks). */
export class PeerTable {
  #tables: PrefixTable[] = []; // longest prefix first
  #sources = new Map<number, number>(); // packed endpoint → number of subnets routed to it

  /** The number of routes. */
  get size(): number {
    let n = 0;
    for (const t of this.#tables) n += t.routes.size;
    return n;
  }

  /** Routes `net/prefix` (host bits are masked off) to `ip:port`, replacing an older route. */
  set(net: number, prefix: number, ip: number, port: number): void {
    let t = this.#tables.find((x) => x.prefix === prefix);
    if (!t) {
      t = { prefix, mask: netmask(prefix), routes: new Map() };
      this.#tables.push(t);
      this.#tables.sort((a, b) => b.prefix - a.prefix);
    }
    const key = (net & t.mask) >>> 0;
    const old = t.routes.get(key);
    if (old !== undefined) this.#unref(old);
    const e = packEndpoint(ip, port);
    t.routes.set(key, e);
    this.#sources.set(e, (this.#sources.get(e) ?? 0) + 1);
  }

  /** Removes the route of `net/prefix`; true when there was one. */
  delete(net: number, prefix: number): boolean {
    const t = this.#tables.find((x) => x.prefix === prefix);
    if (!t) return false;
    const key = (net & t.mask) >>> 0;
    const old = t.routes.get(key);
    if (old === undefined) return false;
    t.routes.delete(key);
    this.#unref(old);
    if (t.routes.size === 0) this.#tables = this.#tables.filter((x) => x !== t);
    return true;
  }

  /** The packed endpoint for destination `dst` (longest prefix wins), or -1 when none. */
  lookup(dst: number): number {
    const tables = this.#tables;
    for (let i = 0; i < tables.length; i++) {
      const t = tables[i];
      const e = t.routes.get((dst & t.mask) >>> 0);
      if (e !== undefined) return e;
    }
    return -1;
  }

  /** True when `ip:port` is the endpoint of at least one current route. */
  isPeer(ip: number, port: number): boolean {
    return this.#sources.has(packEndpoint(ip, port));
  }

  #unref(e: number): void {
    const n = (this.#sources.get(e) ?? 1) - 1;
    if (n <= 0) this.#sources.delete(e);
    else this.#sources.set(e, n);
  }
}
