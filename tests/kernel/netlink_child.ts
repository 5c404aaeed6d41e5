/**
 * The in-namespace half of the netlink kernel tests: `ip netns exec NS deno run -A
 * tests/kernel/netlink_child.ts '<ops JSON>'` runs each `[verb, ...args]` on one `Netlink` handle
 * and prints one JSON array of results (`{ ok }` or `{ err: { code, message } }`).
 *
 * A Deno process cannot move itself into another network namespace safely (threads), so the
 * tests spawn this under `ip netns exec`. Two pseudo-verbs exist for what one call cannot show:
 * - `["bulkRoutes", count, oif]` replaces `count` /32 routes 10.200.x.y and returns the seconds;
 * - `["watch", groups, dstWanted]` subscribes, prints `ready`, and prints the first route event
 *   for `dstWanted` (or any event if null) as JSON, then aborts the subscription;
 * - `["overrun", oif]` checks that a subscription overflowed by 2,000 routes reports `resync`.
 */

import { SyscallError } from "../../ffi/errno.ts";
import { IP, IPNet } from "../../ffi/ip.ts";
import { Netlink, subscribe } from "../../ffi/netlink/mod.ts";

type Op = [string, ...unknown[]];

/**
 * The JSON ops carry addresses as text (the edge between the test and this child): turns them
 * into the verbs' IP/IPNet arguments. Results go back through JSON, where IP prints as text.
 */
function toArgs(verb: string, args: unknown[]): unknown[] {
  const a = [...args];
  const spec = (o: Record<string, unknown>) => {
    const r: Record<string, unknown> = { ...o };
    if (typeof r.dst === "string") r.dst = IPNet.mustParse(r.dst);
    for (const k of ["gateway", "src", "local"]) {
      if (typeof r[k] === "string") r[k] = IP.mustParse(r[k] as string);
    }
    return r;
  };
  switch (verb) {
    case "addrAdd":
    case "addrDel": {
      const [address, prefix] = (a[1] as string).split("/");
      return [a[0], IP.mustParse(address), Number(prefix), ...a.slice(2)];
    }
    case "routeAdd":
    case "routeReplace":
    case "routeDel":
    case "linkAddVxlan":
      return [spec(a[0] as Record<string, unknown>)];
    case "routeGet":
      return [IP.mustParse(a[0] as string)];
    case "neighSet":
    case "neighDel":
      return [a[0], IP.mustParse(a[1] as string), ...a.slice(2)];
    case "fdbSet":
    case "fdbAppend":
    case "fdbDel":
      return [a[0], a[1], IP.mustParse(a[2] as string)];
    default:
      return a;
  }
}

function bulkRoutes(nl: Netlink, count: number, oif: number): number {
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    nl.routeReplace({ dst: IPNet.mustParse(`10.200.${i >> 8}.${i & 255}/32`), oif });
  }
  return (performance.now() - t0) / 1000;
}

async function watch(groups: ("link" | "route" | "neigh")[], dst: string | null): Promise<void> {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), 10_000);
  const events = subscribe(groups, ac.signal);
  console.log("ready");
  for await (const ev of events) {
    if (dst === null || (ev.kind === "route" && ev.route.dst.toString() === dst)) {
      console.log(JSON.stringify(ev));
      ac.abort();
    }
  }
  clearTimeout(timer);
  console.log("ended");
}

/**
 * Overflows a subscription with a tiny receive buffer, then checks that it reports `resync` and
 * still delivers a later change. Prints `{ eventsBeforeResync, resyncs, after }`.
 */
async function overrun(oif: number): Promise<void> {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), 10_000);
  const events = subscribe(["route"], ac.signal, { rcvbuf: 4096 });
  using nl = Netlink.open();
  bulkRoutes(nl, 2000, oif); // nobody reads meanwhile: the socket overflows
  let before = 0;
  let resyncs = 0;
  let after: string | null = null;
  for await (const ev of events) {
    if (ev.kind === "resync") {
      // A consumer re-reads state here; the test makes a fresh change each time until one's
      // notification fits into the draining buffer.
      resyncs++;
      nl.routeReplace({ dst: IPNet.mustParse(`10.250.${resyncs}.0/24`), oif });
    } else if (ev.kind === "route" && ev.route.dst.toString().startsWith("10.250.")) {
      after = ev.route.dst.toString();
      ac.abort();
    } else if (resyncs === 0) before++;
  }
  clearTimeout(timer);
  console.log(JSON.stringify({ eventsBeforeResync: before, resyncs, after }));
}

if (import.meta.main) {
  const ops = JSON.parse(Deno.args[0]) as Op[];
  if (ops.length === 1 && ops[0][0] === "overrun") {
    await overrun(ops[0][1] as number);
  } else if (ops.length === 1 && ops[0][0] === "watch") {
    await watch(ops[0][1] as ("link" | "route" | "neigh")[], ops[0][2] as string | null);
  } else {
    using nl = Netlink.open();
    const out: unknown[] = [];
    for (const [verb, ...args] of ops) {
      try {
        const result = verb === "bulkRoutes"
          ? bulkRoutes(nl, args[0] as number, args[1] as number)
          : (nl as unknown as Record<string, (...a: unknown[]) => unknown>)[verb](
            ...toArgs(verb, args),
          );
        out.push({ ok: result ?? null });
      } catch (err) {
        if (!(err instanceof SyscallError)) throw err;
        out.push({ err: { code: err.code, message: err.message } });
      }
    }
    console.log(JSON.stringify(out));
  }
}
