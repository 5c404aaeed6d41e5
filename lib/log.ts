/**
 * A glog-style leveled logger writing to stderr:
 * `I1127 16:21:00.123456 4242 subnet] Acquired lease 10.1.15.0/24`.
 *
 * Severity letters I/W/E/F; `-v` sets the verbosity for `log.v(n, …)`.
 */

let verbosity = 0;
const encoder = new TextEncoder();

/** Sets the `-v` level. */
export function setVerbosity(v: number): void {
  verbosity = v;
}

/** The current `-v` level. */
export function getVerbosity(): number {
  return verbosity;
}

let sink: (line: string) => void = (line) => {
  Deno.stderr.writeSync(encoder.encode(line));
};

/** Replaces the output (for tests); returns the previous sink. */
export function setSink(fn: (line: string) => void): (line: string) => void {
  const prev = sink;
  sink = fn;
  return prev;
}

function pad(n: number, w = 2): string {
  return String(n).padStart(w, "0");
}

/** Formats one glog line (without sink); exported for tests. */
export function formatLine(sev: string, module: string, msg: string, now = new Date()): string {
  const micros = pad(now.getMilliseconds(), 3) + "000";
  const head = `${sev}${pad(now.getMonth() + 1)}${pad(now.getDate())} ${pad(now.getHours())}:${
    pad(now.getMinutes())
  }:${pad(now.getSeconds())}.${micros} ${Deno.pid} ${module}] `;
  return head + msg + "\n";
}

/** A logger for one module (the word before `]`). */
export class Logger {
  constructor(readonly module: string) {}
  info(msg: string): void {
    sink(formatLine("I", this.module, msg));
  }
  warn(msg: string): void {
    sink(formatLine("W", this.module, msg));
  }
  error(msg: string): void {
    sink(formatLine("E", this.module, msg));
  }
  /** Logs at info severity when `-v` ≥ `level`. */
  v(level: number, msg: string): void {
    if (verbosity >= level) sink(formatLine("I", this.module, msg));
  }
  /** True when `-v` ≥ `level` (to skip building expensive messages). */
  enabled(level: number): boolean {
    return verbosity >= level;
  }
}

/** A logger named `module`. */
export function logger(module: string): Logger {
  return new Logger(module);
}

/** One-line text of an error: its message and the messages of its causes, no stack. */
export function errText(err: unknown): string {
  const parts: string[] = [];
  let e: unknown = err;
  for (let i = 0; e !== undefined && e !== null && i < 5; i++) {
    if (e instanceof Error) {
      // A wrapper often quotes its cause already: add a cause only when it says something new.
      const msg = e.message;
      if (!parts.some((p) => p.includes(msg))) parts.push(msg);
      e = e.cause;
    } else {
      parts.push(String(e));
      break;
    }
  }
  return parts.join(": ");
}

/**
 * A foreign value (etcd content, a peer's field) as JSON for a log line or an error, cut to
 * about `max` characters with "…" so one hostile value cannot flood the log.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * assert.equal(quote("1.2.3.4"), '"1.2.3.4"');
 * assert.equal(quote("x".repeat(100_000)).length, 61);
 * assert.equal(quote(undefined), "undefined");
 * ```
 */
export function quote(v: unknown, max = 60): string {
  let s: string;
  try {
    s = typeof v === "number" && !Number.isFinite(v) ? String(v) : JSON.stringify(v) ?? String(v);
  } catch {
    s = String(v); // a BigInt or a cycle: not from JSON, but never throw while logging
  }
  return s.length > max ? s.slice(0, max) + "…" : s;
}

/** `s` cut to `max` characters with "…": for a foreign key or name quoted without JSON. */
export function clip(s: string, max = 120): string {
  return s.length > max ? s.slice(0, max) + "…" : s;
}
