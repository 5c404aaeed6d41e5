/**
 * The udp data path's endpoint table: which host (PublicIP:Port) holds the subnet of an overlay
 * address, and whether a datagram's source is a current peer.
 *
 * Lookups are O(number of distinct prefix lengths): one Map per prefix length, keyed by the
 * masked address. All leases of a network share `SubnetLen`, so that is one Map lookup with
 * thousands of peers. Values are `ip * 65536 + port` numbers so a lookup allocates nothing.
 *
 * The other direction: each endpoint keeps the subnets routed to it ({@link PeerSource}), so a
 * received datagram's inner source is checked against the subnet of the peer whose PublicIP:Port
 * sent it, with one Map lookup and a u32 compare per subnet (one, normally).
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

/** The subnets routed to one endpoint: the inner sources its datagrams may carry. */
export class PeerSource {
  /** (network, mask) pairs, host order, unsigned. */
  readonly nets: number[] = [];

  /**
   * True when `addr` lies in one of the subnets routed to this endpoint. That includes the
   * peer's own flannel address (its subnet's base, the source of the ICMP errors it generates).
   */
  holds(addr: number): boolean {
    const n = this.nets;
    for (let i = 0; i < n.length; i += 2) {
      if (((addr & n[i + 1]) >>> 0) === n[i]) return true;
    }
    return false;
  }
}

/** Subnet → endpoint routes plus, per endpoint, the subnets routed to it (for source checks). */
export class EndpointTable {
  #tables: PrefixTable[] = []; // longest prefix first
  #sources = new Map<number, PeerSource>(); // packed endpoint → its subnets

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
    if (old !== undefined) this.#unref(old, key, t.mask);
    const e = packEndpoint(ip, port);
    t.routes.set(key, e);
    let src = this.#sources.get(e);
    if (!src) this.#sources.set(e, src = new PeerSource());
    src.nets.push(key, t.mask);
  }

  /** Removes the route of `net/prefix`; true when there was one. */
  delete(net: number, prefix: number): boolean {
    const t = this.#tables.find((x) => x.prefix === prefix);
    if (!t) return false;
    const key = (net & t.mask) >>> 0;
    const old = t.routes.get(key);
    if (old === undefined) return false;
    t.routes.delete(key);
    this.#unref(old, key, t.mask);
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

  /** The subnets routed to `ip:port`, or undefined when it is no current peer. */
  source(ip: number, port: number): PeerSource | undefined {
    return this.#sources.get(packEndpoint(ip, port));
  }

  #unref(e: number, net: number, mask: number): void {
    const src = this.#sources.get(e);
    if (!src) return;
    const n = src.nets;
    for (let i = 0; i < n.length; i += 2) {
      if (n[i] === net && n[i + 1] === mask) {
        n.splice(i, 2);
        break;
      }
    }
    if (n.length === 0) this.#sources.delete(e);
  }
}
