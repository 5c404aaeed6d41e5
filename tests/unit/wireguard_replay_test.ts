import assert from "node:assert/strict";
import {
  REJECT_AFTER_MESSAGES,
  ReplayWindow,
  WINDOW_SIZE,
} from "../../lib/backend/wireguard/replay.ts";

Deno.test("ReplayWindow accepts each counter once, in any order inside the window", () => {
  const w = new ReplayWindow();
  assert.ok(w.validate(0));
  assert.ok(!w.validate(0), "0 replayed");
  for (const c of [5, 3, 4, 1, 2, 100, 50]) assert.ok(w.validate(c), `first ${c}`);
  for (const c of [0, 1, 2, 3, 4, 5, 50, 100]) assert.ok(!w.validate(c), `replayed ${c}`);
  assert.ok(w.validate(99));
});

Deno.test("ReplayWindow judges exactly WINDOW_SIZE (2016) behind the top, refuses older", () => {
  const w = new ReplayWindow();
  const top = 10_000;
  assert.ok(w.validate(top));
  assert.ok(w.validate(top - WINDOW_SIZE), "at the window's edge");
  assert.ok(!w.validate(top - WINDOW_SIZE), "edge replayed");
  assert.ok(!w.validate(top - WINDOW_SIZE - 1), "just outside");
  assert.ok(!w.validate(0), "far behind");
});

Deno.test("ReplayWindow forgets bits when it slides past them (no false replays after a jump)", () => {
  const w = new ReplayWindow();
  for (let c = 0; c < 3000; c++) assert.ok(w.validate(c));
  // A jump of more than the whole bitmap clears every word.
  assert.ok(w.validate(3000 + 5000));
  for (let c = 3000 + 5000 - WINDOW_SIZE; c < 3000 + 5000; c++) assert.ok(w.validate(c), `c=${c}`);
  // Sliding one word at a time: counters that map to reused words are new.
  const v = new ReplayWindow();
  for (let c = 0; c < 20_000; c += 7) assert.ok(v.validate(c));
  for (let c = 20_000 - 1000; c < 20_000; c++) {
    assert.equal(v.validate(c), c % 7 !== 0, `c=${c}`);
  }
});

Deno.test("ReplayWindow refuses counters at REJECT_AFTER_MESSAGES, negative or unsafe", () => {
  const w = new ReplayWindow();
  assert.ok(!w.validate(REJECT_AFTER_MESSAGES));
  assert.ok(!w.validate(-1));
  assert.ok(!w.validate(2 ** 53));
  assert.ok(w.validate(2 ** 53 - 2));
  w.reset();
  assert.ok(w.validate(0), "reset forgets");
});
