/**
 * rtnetlink notifications (link, IPv4 and IPv6 route, ARP and NDP neighbour) as an async iterator that does not block
 * the event loop: a non-blocking socket is drained synchronously and, when empty, waited for with
 * `poll` on a Deno pool thread (`poll_async`). An eventfd in the same poll set wakes it when the
 * AbortSignal fires, so ending a subscription never leaves a pending op behind.
 *
 * @module
 */

import { isErrno } from "../errno.ts";
import { Wakeup } from "../eventfd.ts";
import { sym } from "../libc.ts";
import { POLLFD, POLLIN } from "../structs.ts";
import type { NlMsg } from "./message.ts";
import { NetlinkConn } from "./conn.ts";
import {
  AF_INET,
  AF_INET6,
  RTM_DELLINK,
  RTM_DELNEIGH,
  RTM_DELROUTE,
  RTM_NEWLINK,
  RTM_NEWNEIGH,
  RTM_NEWROUTE,
  RTNLGRP_IPV4_ROUTE,
  RTNLGRP_IPV6_ROUTE,
  RTNLGRP_LINK,
  RTNLGRP_NEIGH,
} from "./consts.ts";
import {
  decodeLink,
  decodeNeigh,
  decodeRoute,
  type LinkInfo,
  type NeighInfo,
  type RouteInfo,
} from "./decode.ts";

/** One notification; `resync` means messages were lost (ENOBUFS) and state must be re-read. */
export type NetlinkEvent =
  | { kind: "link"; type: "new" | "del"; link: LinkInfo }
  | { kind: "route"; type: "new" | "del"; route: RouteInfo }
  | { kind: "neigh"; type: "new" | "del"; neigh: NeighInfo }
  | { kind: "resync" };

const GROUPS = {
  link: [RTNLGRP_LINK],
  route: [RTNLGRP_IPV4_ROUTE, RTNLGRP_IPV6_ROUTE],
  neigh: [RTNLGRP_NEIGH],
} as const;

/** Turns a multicast message into an event; null for what the subscriber did not ask about. */
export function decodeEvent(m: NlMsg): NetlinkEvent | null {
  switch (m.type) {
    case RTM_NEWLINK:
    case RTM_DELLINK:
      return { kind: "link", type: m.type === RTM_NEWLINK ? "new" : "del", link: decodeLink(m) };
    case RTM_NEWROUTE:
    case RTM_DELROUTE:
      if (m.payload[0] !== AF_INET && m.payload[0] !== AF_INET6) return null;
      return {
        kind: "route",
        type: m.type === RTM_NEWROUTE ? "new" : "del",
        route: decodeRoute(m),
      };
    case RTM_NEWNEIGH:
    case RTM_DELNEIGH:
      // AF_BRIDGE (FDB) notifications share the group; NeighInfo describes ARP/NDP entries only.
      if (m.payload[0] !== AF_INET && m.payload[0] !== AF_INET6) return null;
      return {
        kind: "neigh",
        type: m.type === RTM_NEWNEIGH ? "new" : "del",
        neigh: decodeNeigh(m),
      };
    default:
      return null;
  }
}

/**
 * Subscribes to notifications. The socket is joined to the groups before this returns, so a
 * caller can subscribe first and then list the current state without missing a change. The
 * iterator ends (and the socket closes) when `signal` aborts or the consumer stops iterating.
 */
export function subscribe(
  groups: ("link" | "route" | "neigh")[],
  signal: AbortSignal,
  opts: SubscribeOptions = {},
): AsyncIterable<NetlinkEvent> {
  return new Subscription(groups.flatMap((g) => GROUPS[g]), signal, opts);
}

/** Options of {@link subscribe} (an extension of the design's signature). */
export interface SubscribeOptions {
  /** `SO_RCVBUF` of the socket, bytes (default 1 MiB). Small values provoke `resync` in tests. */
  rcvbuf?: number;
}

class Subscription implements AsyncIterable<NetlinkEvent> {
  readonly #signal: AbortSignal;
  #conn: NetlinkConn | null = null;
  #wake: Wakeup | null = null;
  #polling = false;
  readonly #pollfds = new Uint8Array(2 * POLLFD.size);

  constructor(groups: number[], signal: AbortSignal, opts: SubscribeOptions) {
    this.#signal = signal;
    if (signal.aborted) return;
    const conn = NetlinkConn.open({ groups, nonBlocking: true, rcvbuf: opts.rcvbuf });
    try {
      this.#wake = new Wakeup();
    } catch (err) {
      conn.close();
      throw err;
    }
    this.#conn = conn;
    const v = new DataView(this.#pollfds.buffer);
    v.setInt32(POLLFD.fd, conn.fd, true);
    v.setInt16(POLLFD.events, POLLIN, true);
    v.setInt32(POLLFD.size + POLLFD.fd, this.#wake.fd.fd, true);
    v.setInt16(POLLFD.size + POLLFD.events, POLLIN, true);
    signal.addEventListener("abort", this.#onAbort, { once: true });
  }

  #onAbort = (): void => {
    // A poll on a pool thread still uses the fds: wake it and let the iterator close them.
    if (this.#polling && this.#wake) this.#wake.signal();
    else this.#close();
  };

  #close(): void {
    this.#signal.removeEventListener("abort", this.#onAbort);
    this.#conn?.close();
    this.#wake?.close();
    this.#conn = null;
    this.#wake = null;
  }

  #drain(): void {
    for (;;) {
      try {
        if (this.#conn?.recv() == null) return;
      } catch (err) {
        if (!isErrno(err, "ENOBUFS")) throw err;
      }
    }
  }

  async #wait(): Promise<void> {
    this.#polling = true;
    try {
      // errno is lost on a nonblocking FFI call; a failed poll (EINTR) just loops.
      await sym.poll_async(this.#pollfds, 2, -1);
    } finally {
      this.#polling = false;
    }
  }

  async *[Symbol.asyncIterator](): AsyncIterator<NetlinkEvent> {
    try {
      while (!this.#signal.aborted && this.#conn) {
        let msgs: NlMsg[] | null;
        try {
          msgs = this.#conn.recv();
        } catch (err) {
          if (!isErrno(err, "ENOBUFS")) throw err;
          // The kernel reports a drop once per congestion episode, which ends when the queue is
          // empty. Drain it first (its messages are stale: the consumer re-reads state), so
          // that a drop after the consumer's re-read raises ENOBUFS again instead of vanishing.
          this.#drain();
          yield { kind: "resync" };
          continue;
        }
        if (msgs === null) {
          await this.#wait();
          continue;
        }
        for (const m of msgs) {
          const ev = decodeEvent(m);
          if (ev) yield ev;
          if (this.#signal.aborted) return;
        }
      }
    } finally {
      this.#close();
    }
  }
}
