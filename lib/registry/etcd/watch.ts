/**
 * {@link Registry.watch} over etcd3 watchers: resume after a broken stream on the next endpoint
 * (own backoff, resume revision), compaction, and `reset` when etcd lost its memory.
 *
 * `reset`: every watch stream (re)connect compares the header of etcd's create response with
 * etcd's history ({@link Endpoints.check}); so does every other answer of the registry. When one
 * of them finds another cluster id or a revision below the highest seen, every watch open at that
 * moment yields `{ type: "reset", reason }` and ends, also a watch that is waiting on a healthy
 * stream for a revision the new store has not reached (it would otherwise wait in silence).
 */

import type { Etcd3, Watcher } from "etcd3";
import { Backoff, sleep } from "../../async.ts";
import { errText } from "../../log.ts";
import type { WatchEvent } from "../mod.ts";
import type { Endpoints } from "./endpoints.ts";
import type { Header } from "./history.ts";
import { type EtcdKV, leaseOf, num } from "./kv.ts";

/** Watches `key` from `fromRevision` (see {@link Registry.watch}). */
export async function* watch(
  eps: Endpoints,
  kv: EtcdKV,
  key: string,
  opts: { prefix: boolean; fromRevision: number },
  signal: AbortSignal,
): AsyncIterable<WatchEvent> {
  let next = opts.fromRevision;
  const backoff = new Backoff();
  let reconnecting = false;
  const epoch = eps.history.epoch;
  const reset = (): WatchEvent => ({ type: "reset", reason: eps.history.reason });
  while (!signal.aborted && !eps.closed) {
    if (eps.history.epoch !== epoch) {
      yield reset();
      return;
    }
    const ep = eps.all[eps.current];
    const stream = new WatchStream(ep.client, key, opts.prefix, next, signal);
    const unlisten = eps.history.onReset(() => stream.end(null));
    try {
      for await (const item of stream) {
        // What is still queued after a reset belongs to the store that was lost.
        if (eps.history.epoch !== epoch) break;
        if (item.kind === "connected") {
          try {
            await eps.check(ep, item.header);
          } catch (err) {
            stream.end(err);
            break;
          }
          if (eps.history.epoch !== epoch) break;
          backoff.reset();
          if (reconnecting) {
            reconnecting = false;
            yield { type: "reconnected", revision: next - 1 };
          }
          continue;
        }
        if (item.kind === "progress") {
          eps.history.saw(item.revision);
          next = Math.max(next, item.revision + 1);
          yield { type: "progress", revision: item.revision };
          continue;
        }
        if (item.kind === "compacted") {
          yield { type: "compacted" };
          return;
        }
        const ev = item.event;
        eps.history.saw(ev.modRevision);
        next = Math.max(next, ev.modRevision + 1);
        yield ev;
      }
    } finally {
      unlisten();
      stream.cancel();
    }
    if (signal.aborted || eps.closed) return;
    if (eps.history.epoch !== epoch) continue;
    if (stream.cancelledByServer && await kv.compacted(key, next)) {
      // etcd 3.4 cancels such a watch with an empty reason; etcd3 does not pass on its
      // compact_revision, so a read at that revision tells.
      yield { type: "compacted" };
      return;
    }
    // The stream broke: log, move to the next endpoint, back off, resume from `next`.
    eps.log.warn(`Failed to reach etcd at ${ep.url}: ${eps.describe(stream.error)}`);
    if (eps.all[eps.current] === ep) eps.rotate();
    reconnecting = true;
    try {
      await sleep(backoff.next(), signal);
    } catch {
      return;
    }
  }
}

type StreamItem =
  | { kind: "connected"; header: Header }
  | { kind: "progress"; revision: number }
  | { kind: "compacted" }
  | { kind: "event"; event: Extract<WatchEvent, { type: "put" | "delete" }> };

/** One etcd3 watcher as an async iterable; ends on disconnect (with `error` set) or abort. */
class WatchStream implements AsyncIterable<StreamItem> {
  #items: StreamItem[] = [];
  #wake: (() => void) | null = null;
  #done = false;
  #serverCancelled = false;
  /** etcd cancelled the watch (compaction, permission, …); see `error`. */
  get cancelledByServer(): boolean {
    return this.#serverCancelled;
  }
  #watcher: Watcher;
  error: unknown = null;

  constructor(
    client: Etcd3,
    key: string,
    prefix: boolean,
    from: number,
    readonly signal: AbortSignal,
  ) {
    const b = client.watch();
    (prefix ? b.prefix(key) : b.key(key)).startRevision(String(from));
    this.#watcher = b.watcher();
    this.#watcher.on("connected", (res) => this.#push({ kind: "connected", header: res.header }));
    this.#watcher.on("data", (res) => {
      for (const ev of res.events) {
        const kv = ev.kv;
        const modRevision = num(kv.mod_revision);
        this.#push({
          kind: "event",
          event: ev.type === "Put"
            ? {
              type: "put",
              key: kv.key.toString(),
              value: kv.value.toString(),
              modRevision,
              createRevision: num(kv.create_revision),
              leaseId: leaseOf(kv),
            }
            : { type: "delete", key: kv.key.toString(), modRevision },
        });
      }
      // etcd sends a watcher that is catching up its backlog in chunks of 1,000 revisions,
      // each headed with the store's current revision: only the last event delivered is
      // known to be complete (resuming from the header would skip the rest of the backlog).
      // An empty response (a progress notification) goes only to a caught-up watcher.
      const last = res.events[res.events.length - 1];
      this.#push({
        kind: "progress",
        revision: last ? num(last.kv.mod_revision) : num(res.header.revision),
      });
    });
    this.#watcher.on("disconnected", (err) => this.end(err ?? new Error("watch disconnected")));
    this.#watcher.on("error", (err) => {
      // etcd cancelled the watch and etcd3 already dropped it: cancelling again would send a
      // cancel request for an id etcd3 no longer knows, whose answer etcd3 cannot route.
      this.#serverCancelled = true;
      if (/compacted/i.test(errText(err))) {
        this.#push({ kind: "compacted" });
        this.end(null);
      } else {
        this.end(err);
      }
    });
    signal.addEventListener("abort", this.#onAbort, { once: true });
  }

  #onAbort = () => this.end(null);

  #push(item: StreamItem): void {
    if (this.#done) return;
    this.#items.push(item);
    this.#wake?.();
  }

  /** Ends the stream after the items already queued; `err` is why (null: on purpose). */
  end(err: unknown): void {
    if (this.#done) return;
    this.error = err;
    this.#done = true;
    this.#wake?.();
  }

  cancel(): void {
    this.#done = true;
    this.signal.removeEventListener("abort", this.#onAbort);
    this.#watcher.removeAllListeners();
    // Keep a listener so a late error on the detached watcher is not an unhandled 'error'.
    this.#watcher.on("error", () => {});
    if (!this.#serverCancelled) this.#watcher.cancel().catch(() => {});
  }

  async *[Symbol.asyncIterator](): AsyncIterator<StreamItem> {
    while (true) {
      const item = this.#items.shift();
      if (item) {
        yield item;
        continue;
      }
      if (this.#done) return;
      await new Promise<void>((r) => (this.#wake = r));
      this.#wake = null;
    }
  }
}
