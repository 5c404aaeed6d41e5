import assert from "node:assert/strict";
import { History } from "../../lib/registry/etcd/history.ts";

const EP = "http://127.0.0.1:2379";

Deno.test("History: a revision below the highest seen is suspect, confirmed only if still lower", () => {
  const h = new History();
  assert.equal(h.suspect({ cluster_id: "10", revision: "40" }, EP), null);
  h.saw(45);
  assert.deepEqual(h.suspect({ cluster_id: "10", revision: "41" }, EP), {
    kind: "history",
    revision: 41,
    term: 0,
  });
  // The linearizable read shows the member had only lagged.
  assert.equal(h.confirm({ cluster_id: "10", revision: "46" }, EP), null);
  assert.equal(h.epoch, 0);
  const why = h.confirm({ cluster_id: "10", revision: "3" }, EP);
  assert.equal(
    why,
    `etcd at ${EP} is at revision 3, below revision 46 seen before: its data was wiped or ` +
      "restored from an older snapshot",
  );
});

Deno.test("History: reset starts a new epoch from the new store and tells every listener once", () => {
  const h = new History();
  h.suspect({ cluster_id: "10", revision: "40" }, EP);
  let calls = 0;
  const off = h.onReset(() => calls++);
  h.reset({ cluster_id: "10", revision: "2" }, "wiped");
  assert.equal(h.epoch, 1);
  assert.equal(h.reason, "wiped");
  assert.equal(calls, 1);
  // The new store's revisions are the new normal.
  assert.equal(h.suspect({ cluster_id: "10", revision: "2" }, EP), null);
  off();
  h.reset({ cluster_id: "10", revision: "1" }, "again");
  assert.equal(calls, 1);
});

Deno.test("History: another cluster id is a reset at once, whatever the revision", () => {
  const h = new History();
  h.suspect({ cluster_id: "255", revision: "5" }, EP);
  const s = h.suspect({ cluster_id: "256", revision: "900" }, EP);
  assert.ok(s?.kind === "cluster");
  assert.equal(
    s.reason,
    `etcd at ${EP} has cluster id 100, not ff as before: it is another cluster or was re-created`,
  );
});

Deno.test("History: a raft term below the highest seen is suspect, even at a higher revision", () => {
  const h = new History();
  h.suspect({ cluster_id: "10", revision: "40", raft_term: "5" }, EP);
  assert.equal(h.suspect({ cluster_id: "10", revision: "41", raft_term: "6" }, EP), null);
  assert.deepEqual(h.suspect({ cluster_id: "10", revision: "90", raft_term: "2" }, EP), {
    kind: "history",
    revision: 90,
    term: 2,
  });
  assert.equal(
    h.confirm({ cluster_id: "10", revision: "90", raft_term: "2" }, EP),
    `etcd at ${EP} is at raft term 2, below term 6 seen before: its data was wiped or restored ` +
      "from an older snapshot",
  );
});
