/**
 * A flannel daemon process started inside a host namespace, with its output captured.
 *
 * stdout and stderr are read concurrently into memory (for {@linkcode Daemon.waitForLog}) and
 * appended to a log file under the cluster's temp dir, so a failing test can show what the daemon
 * said. The process is `ip netns exec NS deno run -A main.ts …`; iproute2 6.x execs in place, so
 * `pid` is the deno process itself.
 */

import { findDenoPid } from "./netns.ts";

/** How to start one daemon. */
export interface DaemonSpec {
  /** The namespace to run in. */
  ns: string;
  /** The full command run inside the namespace, e.g. `["deno", "run", "-A", "main.ts", …]`. */
  cmd: string[];
  /** The complete environment of the process (it does not inherit the test's). */
  env: Record<string, string>;
  /** Working directory. */
  cwd: string;
  /** Where captured output is appended. */
  logFile: string;
  /** The subnet file the daemon writes when ready. */
  subnetFile: string;
}

/** A running (or finished) daemon. */
export class Daemon {
  /** The pid of the spawned process. */
  readonly pid: number;
  /** When the process was spawned (`performance.now()` milliseconds). */
  readonly startedAt: number;
  /** When the process was spawned (`Date.now()` milliseconds). */
  readonly startedAtWall: number;
  readonly #child: Deno.ChildProcess;
  readonly #spec: DaemonSpec;
  #text = "";
  #listeners = new Set<() => void>();
  #streamReaders: ReadableStreamDefaultReader<Uint8Array>[] = [];
  #exitCode: number | null = null;
  readonly #status: Promise<number>;
  readonly #readers: Promise<void>;
  readonly #log: Deno.FsFile;

  private constructor(spec: DaemonSpec) {
    this.#spec = spec;
    this.#log = Deno.openSync(spec.logFile, { append: true, create: true });
    this.startedAt = performance.now();
    this.startedAtWall = Date.now();
    this.#child = new Deno.Command("ip", {
      args: ["netns", "exec", spec.ns, ...spec.cmd],
      env: spec.env,
      clearEnv: true,
      cwd: spec.cwd,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.pid = this.#child.pid;
    this.#readers = Promise.all([
      this.#pump(this.#child.stdout),
      this.#pump(this.#child.stderr),
    ]).then(() => {});
    this.#status = this.#child.status.then(async (s) => {
      // A grandchild that inherited the pipes may keep them open: stop reading shortly after.
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<void>((r) => timer = setTimeout(r, 500));
      await Promise.race([this.#readers, late]);
      clearTimeout(timer);
      for (const r of this.#streamReaders) await r.cancel().catch(() => {});
      await this.#readers;
      this.#exitCode = s.signal !== null ? 128 + signalNumber(s.signal) : s.code;
      this.#notify();
      try {
        this.#log.close();
      } catch {
        // Already closed.
      }
      return this.#exitCode;
    });
  }

  /** Spawns the daemon described by `spec`. */
  static spawn(spec: DaemonSpec): Daemon {
    return new Daemon(spec);
  }

  async #pump(stream: ReadableStream<Uint8Array>): Promise<void> {
    const dec = new TextDecoder();
    const reader = stream.getReader();
    this.#streamReaders.push(reader);
    for (;;) {
      const { value, done } = await reader.read().catch(() => ({ value: undefined, done: true }));
      if (done || value === undefined) break;
      this.#text += dec.decode(value, { stream: true });
      try {
        this.#log.writeSync(value);
      } catch {
        // The log file is best effort; the in-memory copy is what tests read.
      }
      this.#notify();
    }
  }

  #notify(): void {
    for (const fn of [...this.#listeners]) fn();
  }

  /** Everything the daemon printed so far (stdout and stderr interleaved as read). */
  logs(): string {
    return this.#text;
  }

  /** The exit code once the process has ended, else null (128+N when killed by signal N). */
  get exitCode(): number | null {
    return this.#exitCode;
  }

  /** The pid of the deno process itself (differs from `pid` only with a forking `ip netns exec`). */
  denoPid(): number | null {
    return findDenoPid(this.pid);
  }

  /**
   * Waits for a log line matching `re` (searching everything printed so far first) and returns
   * the first matching line. Rejects on timeout or when the daemon exits without printing it.
   */
  waitForLog(re: RegExp, timeoutMs = 15_000): Promise<string> {
    return this.#waitFor(
      () => {
        const line = this.#text.split("\n").find((l) => re.test(l));
        return line ?? null;
      },
      `log line matching ${re}`,
      timeoutMs,
    );
  }

  /**
   * Waits until this daemon has written the subnet file (it does when ready): the file is not
   * empty and was modified after the spawn, so a file left by an earlier run (or emptied by the
   * test just before) does not count.
   */
  async waitReady(timeoutMs = 20_000): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      try {
        const st = await Deno.stat(this.#spec.subnetFile);
        // File times come from the kernel's coarse clock (one jiffy behind at most).
        const fresh = st.mtime !== null && st.mtime.getTime() >= this.startedAtWall - 20;
        if (fresh && st.size > 0) return;
      } catch (err) {
        if (!(err instanceof Deno.errors.NotFound)) throw err;
      }
      if (this.#exitCode !== null) {
        throw new Error(
          `Daemon in ${this.#spec.ns} exited with code ${this.#exitCode} before writing ` +
            `${this.#spec.subnetFile}:\n${this.tail()}`,
        );
      }
      if (performance.now() > deadline) {
        throw new Error(
          `Timed out after ${timeoutMs} ms waiting for ${this.#spec.subnetFile} in ` +
            `${this.#spec.ns}:\n${this.tail()}`,
        );
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  #waitFor<T>(probe: () => T | null, what: string, timeoutMs: number): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const check = () => {
        const v = probe();
        if (v !== null) {
          done();
          resolve(v);
        } else if (this.#exitCode !== null) {
          done();
          reject(
            new Error(
              `Daemon in ${this.#spec.ns} exited with code ${this.#exitCode} before printing ` +
                `a ${what}:\n${this.tail()}`,
            ),
          );
        }
      };
      const done = () => {
        clearTimeout(timer);
        this.#listeners.delete(check);
      };
      const timer = setTimeout(() => {
        done();
        reject(
          new Error(
            `Timed out after ${timeoutMs} ms waiting for a ${what} in ${this.#spec.ns}:\n` +
              this.tail(),
          ),
        );
      }, timeoutMs);
      this.#listeners.add(check);
      check();
    });
  }

  /** The last `n` lines of output, indented, for error messages. */
  tail(n = 20): string {
    return this.#text.trimEnd().split("\n").slice(-n).map((l) => "  | " + l).join("\n");
  }

  /** Sends a signal; a process that already ended is not an error. */
  kill(signal: Deno.Signal = "SIGTERM"): void {
    if (this.#exitCode !== null) return;
    try {
      this.#child.kill(signal);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound) && !(err instanceof TypeError)) throw err;
    }
  }

  /** Resolves with the exit code (128+N when killed by signal N) once output is fully read. */
  exited(): Promise<number> {
    return this.#status;
  }

  /**
   * Resolves with the exit code, or null when the process is still running after `timeoutMs`.
   */
  async exitedWithin(timeoutMs: number): Promise<number | null> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<null>((r) => timer = setTimeout(() => r(null), timeoutMs));
    try {
      return await Promise.race([this.#status, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. */
  async stop(graceMs = 2_000): Promise<number> {
    this.kill("SIGTERM");
    const code = await this.exitedWithin(graceMs);
    if (code !== null) return code;
    this.kill("SIGKILL");
    return await this.#status;
  }
}

const SIGNALS: Record<string, number> = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGQUIT: 3,
  SIGKILL: 9,
  SIGUSR1: 10,
  SIGSEGV: 11,
  SIGUSR2: 12,
  SIGPIPE: 13,
  SIGALRM: 14,
  SIGTERM: 15,
};

function signalNumber(sig: Deno.Signal): number {
  return SIGNALS[sig] ?? 0;
}
