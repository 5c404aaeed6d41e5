/**
 * A recording fake of the netlink verbs the vxlan and host-gw backends use, with the kernel's
 * replace semantics for routes (dst + metric), ARP (ip), FDB (mac, first destination), plus
 * lease and log helpers. Shared by the vxlan and host-gw unit tests; it holds no tests itself.
 */

import type {
  AddrInfo,
  FdbInfo,
  LinkInfo,
  NeighInfo,
  NetlinkEvent,
  RouteInfo,
  RouteSpec,
  VxlanSpec,
} from "../../ffi/netlink/mod.ts";
import type { NetworkConfig } from "../../lib/config.ts";
import type { ExternalInterface } from "../../lib/extiface.ts";
import type { SubnetManager } from "../../lib/subnet/mod.ts";
import type { BackendContext } from "../../lib/backend/mod.ts";
import { SyscallError } from "../../ffi/errno.ts";
import type { IP } from "../../ffi/ip.ts";
import type { Lease } from "../../lib/lease.ts";
import { ip, net } from "../helpers.ts";

const NUD_PERMANENT = 0x80;

function same(a: IP | null | undefined, b: IP | null | undefined): boolean {
  return a === b || (!!a && !!b && a.equals(b));
}

/** A route as the kernel would list it after `routeReplace(spec)`. */
export function routeOf(spec: RouteSpec, protocol = 3): RouteInfo {
  return {
    dst: spec.dst,
    gateway: spec.gateway ?? null,
    oif: spec.oif ?? null,
    table: spec.table ?? 254,
    protocol: spec.protocol ?? protocol,
    scope: spec.scope ?? 0,
    type: 1,
    flags: spec.onlink ? 4 : 0,
    prefsrc: spec.src ?? null,
    priority: spec.metric ?? null,
    onlink: spec.onlink ?? false,
    kernel: (spec.protocol ?? protocol) === 2,
  };
}

/** Records every mutating call as text, e.g. `routeReplace 10.1.2.0/24 via 10.1.2.0 dev 5 onlink`. */
export class FakeNetlink {
  calls: string[] = [];
  routes: RouteInfo[] = [];
  neighs: NeighInfo[] = [];
  fdbs: FdbInfo[] = [];
  links: LinkInfo[] = [];
  addrs: AddrInfo[] = [];
  /** `routeGet` answers: IP text → route; absent → an unreachable (null) answer. */
  lookups = new Map<string, RouteInfo>();
  nextIndex = 10;
  closed = false;
  #randomMacs = 0;

  close(): void {
    this.closed = true;
  }

  // --- links and addresses
  linkGet(nameOrIndex: string | number): LinkInfo | null {
    return this.links.find((l) => l.name === nameOrIndex || l.index === nameOrIndex) ?? null;
  }
  linkAddVxlan(spec: VxlanSpec): void {
    this.calls.push(`linkAddVxlan ${spec.name} vni ${spec.vni} mac ${spec.mac ?? "random"}`);
    if (this.linkGet(spec.name)) throw new SyscallError("RTM_NEWLINK", 17);
    this.links.push({
      index: this.nextIndex++,
      name: spec.name,
      kind: "vxlan",
      mtu: spec.mtu ?? 1450,
      // Random MACs: 0a:00:00:00:00:01, then :02, … (distinct per device, as the kernel's).
      mac: spec.mac ?? `0a:00:00:00:00:${(++this.#randomMacs).toString(16).padStart(2, "0")}`,
      flags: 0,
      up: false,
      vxlan: {
        vni: spec.vni,
        local: spec.local ?? null,
        lowerIndex: spec.lowerIndex ?? null,
        port: spec.port ?? 8472,
        learning: spec.learning ?? true,
        ttl: spec.ttl ?? 0,
        group: null,
        gbp: spec.gbp ?? false,
        proxy: false,
        l2miss: false,
        l3miss: false,
      },
    });
  }
  linkDelete(index: number): void {
    this.calls.push(`linkDelete ${index}`);
    this.links = this.links.filter((l) => l.index !== index);
    this.routes = this.routes.filter((r) => r.oif !== index);
    this.neighs = this.neighs.filter((n) => n.index !== index);
    this.fdbs = this.fdbs.filter((f) => f.index !== index);
    this.addrs = this.addrs.filter((a) => a.index !== index);
  }
  linkSetUp(index: number): void {
    this.calls.push(`linkSetUp ${index}`);
    const l = this.links.findIndex((x) => x.index === index);
    if (l >= 0) this.links[l] = { ...this.links[l], up: true };
  }
  linkSetMtu(index: number, mtu: number): void {
    this.calls.push(`linkSetMtu ${index} ${mtu}`);
    const l = this.links.findIndex((x) => x.index === index);
    if (l >= 0) this.links[l] = { ...this.links[l], mtu };
  }
  addrList(index?: number, family: 4 | 6 = 4): AddrInfo[] {
    return this.addrs.filter((a) =>
      (index === undefined || a.index === index) && a.address.family === family
    );
  }
  addrAdd(index: number, address: IP, prefix: number, opts: { nodad?: boolean } = {}): void {
    this.calls.push(`addrAdd ${index} ${address}/${prefix}${opts.nodad ? " nodad" : ""}`);
    this.addrs.push({ index, address, prefix, scope: 0 });
  }
  addrDel(index: number, address: IP, prefix: number): void {
    this.calls.push(`addrDel ${index} ${address}/${prefix}`);
    this.addrs = this.addrs.filter((a) =>
      !(a.index === index && a.address.equals(address) && a.prefix === prefix)
    );
  }

  // --- routes
  routeList(table = 254, family: 4 | 6 = 4): RouteInfo[] {
    return this.routes.filter((r) => r.table === table && r.dst.family === family);
  }
  routeGet(dst: IP): RouteInfo | null {
    return this.lookups.get(dst.toString()) ?? null;
  }
  routeReplace(r: RouteSpec): void {
    this.calls.push(`routeReplace ${describe(r)}`);
    const i = this.routes.findIndex((x) =>
      x.dst.equals(r.dst) && (x.priority ?? 0) === (r.metric ?? 0)
    );
    if (i >= 0) this.routes[i] = routeOf(r);
    else this.routes.push(routeOf(r));
  }
  routeDel(r: RouteSpec): void {
    this.calls.push(`routeDel ${describe(r)}`);
    const i = this.routes.findIndex((x) =>
      x.dst.equals(r.dst) && (r.gateway === undefined || same(x.gateway, r.gateway)) &&
      (r.oif === undefined || x.oif === r.oif) && (x.priority ?? 0) === (r.metric ?? 0) &&
      (r.protocol === undefined || x.protocol === r.protocol)
    );
    if (i < 0) throw new SyscallError("RTM_DELROUTE", 3);
    this.routes.splice(i, 1);
  }

  // --- ARP
  neighList(index?: number, family: 4 | 6 = 4): NeighInfo[] {
    return this.neighs.filter((n) =>
      (index === undefined || n.index === index) && n.ip.family === family
    );
  }
  neighSet(index: number, ip: IP, mac: string): void {
    this.calls.push(`neighSet ${index} ${ip} ${mac}`);
    this.neighs = this.neighs.filter((n) => !(n.index === index && n.ip.equals(ip)));
    this.neighs.push({ index, ip, mac, state: NUD_PERMANENT, flags: 0, permanent: true });
  }
  neighDel(index: number, ip: IP): void {
    this.calls.push(`neighDel ${index} ${ip}`);
    const before = this.neighs.length;
    this.neighs = this.neighs.filter((n) => !(n.index === index && n.ip.equals(ip)));
    if (this.neighs.length === before) throw new SyscallError("RTM_DELNEIGH", 2);
  }

  // --- FDB
  fdbList(index?: number): FdbInfo[] {
    return this.fdbs.filter((f) => index === undefined || f.index === index);
  }
  fdbSet(index: number, mac: string, dst: IP): void {
    this.calls.push(`fdbSet ${index} ${mac} ${dst}`);
    const i = this.fdbs.findIndex((f) => f.index === index && f.mac === mac);
    const entry = { index, mac, dst, state: NUD_PERMANENT, flags: 2, permanent: true };
    if (i >= 0) this.fdbs[i] = entry;
    else this.fdbs.push(entry);
  }
  fdbDel(index: number, mac: string, dst: IP): void {
    this.calls.push(`fdbDel ${index} ${mac} ${dst}`);
    const before = this.fdbs.length;
    this.fdbs = this.fdbs.filter((f) => !(f.index === index && f.mac === mac && same(f.dst, dst)));
    if (this.fdbs.length === before) throw new SyscallError("RTM_DELNEIGH", 2);
  }

  /** Returns and clears the recorded calls. */
  take(): string[] {
    const c = this.calls;
    this.calls = [];
    return c;
  }
}

function describe(r: RouteSpec): string {
  return `${r.dst}${r.gateway ? ` via ${r.gateway}` : ""}${
    r.oif !== undefined ? ` dev ${r.oif}` : ""
  }${r.onlink ? " onlink" : ""}${r.metric ? ` metric ${r.metric}` : ""}`;
}

/** A peer lease as the subnet manager would hand it over (`v6`: its IPv6 half). */
export function lease(
  subnet: string,
  publicIP: string,
  backendType = "vxlan",
  backendData: unknown = { VNI: 1, VtepMAC: "aa:bb:cc:00:00:0b" },
  v6: { subnet: string; publicIPv6: string; backendV6Data?: unknown } | null = null,
): Lease {
  return {
    subnet: subnet ? net(subnet) : null,
    ipv6Subnet: v6 ? net(v6.subnet) : null,
    attrs: {
      publicIP: publicIP ? ip(publicIP) : null,
      publicIPv6: v6 ? ip(v6.publicIPv6) : null,
      backendType,
      backendData,
      backendV6Data: v6?.backendV6Data ?? null,
    },
    expiration: null,
    modRevision: 1,
    etcdLeaseId: null,
  };
}

/** A backend context over a fake kernel: `nl` for every netlink handle, `events` for notifications. */
export function fakeContext(parts: {
  config: NetworkConfig;
  ext: ExternalInterface;
  subnets: SubnetManager;
  nl?: FakeNetlink;
  events?: (signal: AbortSignal) => AsyncIterable<NetlinkEvent>;
  env?: Record<string, string | undefined>;
}): BackendContext {
  const nl = parts.nl ?? new FakeNetlink();
  return {
    config: parts.config,
    ext: parts.ext,
    subnets: parts.subnets,
    netlink: () => nl,
    events: (_kinds, signal) => (parts.events ?? noEvents)(signal),
    env: parts.env ?? {},
  };
}

/** An event source that yields nothing and ends on abort. */
export async function* noEvents(signal: AbortSignal): AsyncIterable<NetlinkEvent> {
  await new Promise((r) => signal.addEventListener("abort", r, { once: true }));
  yield* [];
}
