import assert from "node:assert/strict";
import { errText, formatLine, logger, setSink, setVerbosity } from "../../lib/log.ts";

Deno.test("formatLine() writes glog lines: severity, MMDD, time with µs, pid, module", () => {
  const line = formatLine(
    "I",
    "subnet",
    "Acquired lease 10.1.15.0/24",
    new Date(2026, 10, 27, 16, 21, 0, 123),
  );
  assert.equal(line, `I1127 16:21:00.123000 ${Deno.pid} subnet] Acquired lease 10.1.15.0/24\n`);
});

Deno.test("Logger.v() logs only at or below the -v level", () => {
  const lines: string[] = [];
  const prev = setSink((l) => lines.push(l));
  try {
    const log = logger("t");
    setVerbosity(1);
    log.v(1, "one");
    log.v(2, "two");
    log.warn("careful");
    assert.deepEqual(lines.map((l) => l.slice(0, 1) + l.slice(l.indexOf("]"))), [
      "I] one\n",
      "W] careful\n",
    ]);
  } finally {
    setSink(prev);
    setVerbosity(0);
  }
});

Deno.test("errText() joins causes on one line without repeating what a wrapper quoted", () => {
  const inner = new Error("No such file or directory (os error 2)");
  const outer = new Error(`Cannot read etcd CA file /x: ${inner.message}`, { cause: inner });
  assert.equal(
    errText(outer),
    "Cannot read etcd CA file /x: No such file or directory (os error 2)",
  );
  const chained = new Error("Failed to acquire a subnet", { cause: new Error("etcd is down") });
  assert.equal(errText(chained), "Failed to acquire a subnet: etcd is down");
  assert.equal(errText("plain"), "plain");
});
