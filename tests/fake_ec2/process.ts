/**
 * The fake EC2 + IMDS as a child process in a network namespace (e.g. the cluster hub), driven
 * from the test through its control API on a unix socket.
 *
 * @example
 * ```ts ignore
 * await using ec2 = await FakeEc2Process.start({ ns: cluster.hub, hostname: HUB_IP, hosts });
 * const env = ec2.clientEnv(); // AWS_* variables for the daemon
 * await ec2.setFaults({ throttle: 2 });
 * ```
 */

import {
  type FakeCall,
  type FakeFaults,
  type FakeRoute,
  type FakeState,
  TEST_ACCESS_KEY_ID,
  TEST_SECRET_ACCESS_KEY,
} from "./state.ts";

const MAIN = new URL("./main.ts", import.meta.url).pathname;

/** Options of {@link FakeEc2Process.start}. */
export interface FakeEc2ProcessOptions {
  /** The namespace to run in. */
  ns: string;
  /** The address to listen on inside `ns`. */
  hostname: string;
  port?: number;
  /** The instances: id and the address IMDS recognises them by. */
  hosts: { instanceId: string; privateIp: string }[];
}

/** A running fake EC2 process. */
export class FakeEc2Process implements AsyncDisposable {
  readonly url: string;
  readonly #child: Deno.ChildProcess;
  readonly #client: Deno.HttpClient;
  readonly #dir: string;
  #output = "";

  private constructor(url: string, child: Deno.ChildProcess, socket: string, dir: string) {
    this.url = url;
    this.#child = child;
    this.#client = Deno.createHttpClient({ proxy: { transport: "unix", path: socket } });
    this.#dir = dir;
  }

  /** Starts the fake and waits until it listens. */
  static async start(opts: FakeEc2ProcessOptions): Promise<FakeEc2Process> {
    const dir = await Deno.makeTempDir({ prefix: "fake-ec2-" });
    const socket = `${dir}/control.sock`;
    const port = opts.port ?? 8080;
    const child = new Deno.Command("ip", {
      args: [
        "netns",
        "exec",
        opts.ns,
        Deno.execPath(),
        "run",
        "-A",
        MAIN,
        `--hostname=${opts.hostname}`,
        `--port=${port}`,
        `--control=${socket}`,
        `--hosts=${opts.hosts.map((h) => `${h.instanceId}=${h.privateIp}`).join(",")}`,
      ],
      stdout: "piped",
      stderr: "piped",
      stdin: "null",
    }).spawn();
    const p = new FakeEc2Process(`http://${opts.hostname}:${port}`, child, socket, dir);
    const decoder = new TextDecoder();
    const pump = async (s: ReadableStream<Uint8Array>) => {
      for await (const chunk of s) p.#output += decoder.decode(chunk);
    };
    pump(child.stdout);
    pump(child.stderr);
    const end = Date.now() + 20_000;
    while (!p.#output.includes("listening on")) {
      if (Date.now() > end) {
        await p[Symbol.asyncDispose]();
        throw new Error(`Fake EC2 did not start: ${p.#output}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    return p;
  }

  /** The environment that points the SDK at this fake, with the test credentials. */
  clientEnv(): Record<string, string> {
    return {
      AWS_ENDPOINT_URL_EC2: this.url,
      AWS_EC2_METADATA_SERVICE_ENDPOINT: this.url,
      AWS_ACCESS_KEY_ID: TEST_ACCESS_KEY_ID,
      AWS_SECRET_ACCESS_KEY: TEST_SECRET_ACCESS_KEY,
    };
  }

  async #json<T>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await fetch(`http://fake${path}`, {
      method,
      client: this.#client,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!res.ok) throw new Error(`Fake EC2 control ${method} ${path}: HTTP ${res.status}`);
    return await res.json() as T;
  }

  /** The whole state. */
  state(): Promise<FakeState> {
    return this.#json("GET", "/_fake/state");
  }

  /** Replaces the state (and clears the call log). */
  async setState(s: FakeState): Promise<void> {
    await this.#json("PUT", "/_fake/state", s);
  }

  /** Edits the state with `fn` (read, modify, write). */
  async update(fn: (s: FakeState) => void): Promise<void> {
    const s = await this.state();
    fn(s);
    await this.setState(s);
  }

  /** Merges fault switches. */
  async setFaults(f: Partial<FakeFaults>): Promise<void> {
    await this.#json("POST", "/_fake/faults", f);
  }

  /** The EC2 calls received so far. */
  calls(): Promise<FakeCall[]> {
    return this.#json("GET", "/_fake/calls");
  }

  /** The routes of one table. */
  async routes(tableId: string): Promise<FakeRoute[]> {
    const s = await this.state();
    const t = s.routeTables.find((t) => t.routeTableId === tableId);
    if (!t) throw new Error(`Fake EC2 has no route table ${tableId}`);
    return t.routes;
  }

  /** Everything the process printed. */
  output(): string {
    return this.#output;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#client.close();
    try {
      this.#child.kill("SIGTERM");
    } catch {
      // Already exited.
    }
    const timer = setTimeout(() => {
      try {
        this.#child.kill("SIGKILL");
      } catch {
        // Already exited.
      }
    }, 2000);
    await this.#child.status;
    clearTimeout(timer);
    await Deno.remove(this.#dir, { recursive: true }).catch(() => {});
  }
}
