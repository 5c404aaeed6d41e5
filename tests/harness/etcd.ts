/**
 * A real etcd for tests: one member, temp data dir, free ports, optional TLS (client certificates)
 * and user/password auth, optionally inside a network namespace. Keys are read and written through
 * `etcdctl` so tests check what a user would see.
 */

import { type CertFiles, makeCerts } from "./certs.ts";

/** Options of {@link EtcdServer.start}. */
export interface EtcdServerOptions {
  /** Run etcd (and etcdctl) inside this network namespace. */
  netns?: string;
  /** Listen IP, default 127.0.0.1. */
  host?: string;
  /** Client port; 0 (default) picks a free one. */
  port?: number;
  /** Serve clients over TLS (certificates made with openssl, server cert for `host`). */
  tls?: boolean;
  /** Require client certificates (implies `tls`). */
  clientCertAuth?: boolean;
  /** Enable etcd auth with this user (read-write on every key under `/`). */
  auth?: { user: string; password: string };
  /** Use these certificates instead of making new ones (implies `tls`). */
  certs?: CertFiles;
}

const dec = new TextDecoder();

function freePort(host: string): number {
  const l = Deno.listen({ hostname: host, port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

function randomPort(): number {
  return 20000 + Math.floor(Math.random() * 40000);
}

/** One etcd member started by a test. */
export class EtcdServer implements AsyncDisposable {
  /** `http(s)://host:port`. */
  readonly endpoint: string;
  /** The client certificate, key and CA when TLS is on. */
  readonly tlsFiles?: { caFile: string; certFile: string; keyFile: string };
  /** All certificate files (server ones too) when TLS is on. */
  readonly certs?: CertFiles;
  /** The etcd data directory (inside {@link tmpDir}). */
  readonly dataDir: string;
  #proc: Deno.ChildProcess | null = null;
  #root: { user: string; password: string } | null = null;

  private constructor(
    readonly tmpDir: string,
    readonly opts: EtcdServerOptions,
    readonly host: string,
    readonly port: number,
    readonly peerPort: number,
    certs: CertFiles | undefined,
  ) {
    const scheme = certs ? "https" : "http";
    this.endpoint = `${scheme}://${host}:${port}`;
    this.dataDir = `${tmpDir}/data`;
    if (certs) {
      this.certs = certs;
      this.tlsFiles = {
        caFile: certs.caFile,
        certFile: certs.clientCertFile,
        keyFile: certs.clientKeyFile,
      };
    }
  }

  /** Starts a fresh etcd and waits until `etcdctl endpoint health` passes. */
  static async start(opts: EtcdServerOptions = {}): Promise<EtcdServer> {
    const host = opts.host ?? "127.0.0.1";
    const tmpDir = await Deno.makeTempDir({ prefix: "fl-etcd-" });
    try {
      let port = opts.port ?? 0;
      let peerPort: number;
      if (opts.netns) {
        if (port === 0) port = randomPort();
        do peerPort = randomPort(); while (peerPort === port);
      } else {
        if (port === 0) port = freePort(host);
        do peerPort = freePort("127.0.0.1"); while (peerPort === port);
      }
      const tls = opts.tls || opts.clientCertAuth || opts.certs;
      const certs = opts.certs ??
        (tls
          ? await makeCerts(`${tmpDir}/certs`, { ips: host === "127.0.0.1" ? [] : [host] })
          : undefined);
      const s = new EtcdServer(tmpDir, opts, host, port, peerPort, certs);
      await s.start();
      if (opts.auth) await s.#enableAuth(opts.auth);
      return s;
    } catch (err) {
      await Deno.remove(tmpDir, { recursive: true }).catch(() => {});
      throw err;
    }
  }

  /** The etcd log (stdout and stderr). */
  async logs(): Promise<string> {
    return await Deno.readTextFile(`${this.tmpDir}/etcd.log`).catch(() => "");
  }

  #wrap(argv: string[]): string[] {
    return this.opts.netns ? ["ip", "netns", "exec", this.opts.netns, ...argv] : argv;
  }

  /** (Re)starts etcd on the same data dir and ports. */
  async start(): Promise<void> {
    if (this.#proc) return;
    const peer = `http://127.0.0.1:${this.peerPort}`;
    const args = [
      "etcd",
      "--name",
      "default",
      "--data-dir",
      this.dataDir,
      "--listen-client-urls",
      this.endpoint,
      "--advertise-client-urls",
      this.endpoint,
      "--listen-peer-urls",
      peer,
      "--initial-advertise-peer-urls",
      peer,
      "--initial-cluster",
      `default=${peer}`,
      "--logger",
      "zap",
    ];
    if (this.certs) {
      args.push(
        "--cert-file",
        this.certs.serverCertFile,
        "--key-file",
        this.certs.serverKeyFile,
        "--trusted-ca-file",
        this.certs.caFile,
      );
      if (this.opts.clientCertAuth) args.push("--client-cert-auth");
    }
    const quoted = args.map((a) => `'${a}'`).join(" ");
    const argv = this.#wrap(["sh", "-c", `exec ${quoted} >>etcd.log 2>&1`]);
    this.#proc = new Deno.Command(argv[0], {
      args: argv.slice(1),
      cwd: this.tmpDir,
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    const deadline = Date.now() + 20_000;
    while (true) {
      const r = await this.etcdctl(["endpoint", "health"], true);
      if (r.code === 0) return;
      if (Date.now() > deadline) {
        throw new Error(`etcd at ${this.endpoint} not healthy after 20 s: ${await this.logs()}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Stops etcd with SIGTERM and waits for it to exit. */
  async stop(): Promise<void> {
    const p = this.#proc;
    if (!p) return;
    this.#proc = null;
    try {
      p.kill("SIGTERM");
    } catch { /* already gone */ }
    await p.status;
  }

  /** Kills etcd with SIGKILL and waits for it to exit. */
  async kill(): Promise<void> {
    const p = this.#proc;
    if (!p) return;
    this.#proc = null;
    try {
      p.kill("SIGKILL");
    } catch { /* already gone */ }
    await p.status;
  }

  /** Runs etcdctl against this server; throws on failure unless `allowFail`. */
  async etcdctl(
    args: string[],
    allowFail = false,
  ): Promise<{ code: number; stdout: string; stderr: string }> {
    const flags = [`--endpoints=${this.endpoint}`, "--dial-timeout=2s", "--command-timeout=5s"];
    if (this.certs) {
      flags.push(
        `--cacert=${this.certs.caFile}`,
        `--cert=${this.certs.clientCertFile}`,
        `--key=${this.certs.clientKeyFile}`,
      );
    }
    // Caller-supplied certificates may deliberately not match the endpoint.
    if (this.opts.certs) flags.push("--insecure-skip-tls-verify");
    if (this.#root) flags.push(`--user=${this.#root.user}:${this.#root.password}`);
    const argv = this.#wrap(["etcdctl", ...flags, ...args]);
    const out = await new Deno.Command(argv[0], {
      args: argv.slice(1),
      env: { ETCDCTL_API: "3" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const r = { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
    if (!allowFail && r.code !== 0) {
      throw new Error(`etcdctl ${args.join(" ")} failed: ${r.stderr.trim()}`);
    }
    return r;
  }

  async #enableAuth(auth: { user: string; password: string }): Promise<void> {
    const rootPw = auth.user === "root" ? auth.password : `root-${crypto.randomUUID()}`;
    await this.etcdctl(["user", "add", "root", `--new-user-password=${rootPw}`]);
    await this.etcdctl(["role", "add", "root"], true);
    await this.etcdctl(["user", "grant-role", "root", "root"]);
    if (auth.user !== "root") {
      await this.etcdctl(["user", "add", auth.user, `--new-user-password=${auth.password}`]);
      await this.etcdctl(["role", "add", "rw"]);
      await this.etcdctl(["role", "grant-permission", "--prefix=true", "rw", "readwrite", "/"]);
      await this.etcdctl(["user", "grant-role", auth.user, "rw"]);
    }
    await this.etcdctl(["auth", "enable"]);
    this.#root = { user: "root", password: rootPw };
  }

  /** Puts `key`; with `ttlSeconds` attached to a fresh etcd lease. */
  async put(key: string, value: string, opts: { ttlSeconds?: number } = {}): Promise<void> {
    const extra: string[] = [];
    if (opts.ttlSeconds !== undefined) {
      const r = await this.etcdctl(["lease", "grant", String(opts.ttlSeconds)]);
      const m = /lease ([0-9a-f]+) granted/.exec(r.stdout);
      if (!m) throw new Error(`Unexpected etcdctl lease grant output: ${r.stdout.trim()}`);
      extra.push(`--lease=${m[1]}`);
    }
    await this.etcdctl(["put", ...extra, "--", key, value]);
  }

  /** The value of `key`, null when absent. */
  async get(key: string): Promise<string | null> {
    const r = await this.etcdctl(["get", "-w", "json", "--", key]);
    const kvs = JSON.parse(r.stdout).kvs as { value: string }[] | undefined;
    return kvs?.length ? b64(kvs[0].value) : null;
  }

  /** Deletes `key`. */
  async del(key: string): Promise<void> {
    await this.etcdctl(["del", "--", key]);
  }

  /** Every key under `prefix` with its value. */
  async list(prefix: string): Promise<Record<string, string>> {
    const r = await this.etcdctl(["get", "--prefix", "-w", "json", "--", prefix]);
    const kvs = (JSON.parse(r.stdout).kvs ?? []) as { key: string; value: string }[];
    const out: Record<string, string> = {};
    for (const kv of kvs) out[b64(kv.key)] = b64(kv.value);
    return out;
  }

  /** The store's current revision. */
  async revision(): Promise<number> {
    const r = await this.etcdctl(["get", "-w", "json", "--", "/"]);
    return Number(JSON.parse(r.stdout).header.revision);
  }

  /** Compacts the history up to `revision` (physically). */
  async compact(revision: number): Promise<void> {
    await this.etcdctl(["compact", "--physical", String(revision)]);
  }

  /** Kills etcd and removes the temp dir. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.kill();
    await Deno.remove(this.tmpDir, { recursive: true }).catch(() => {});
  }
}

function b64(s: string): string {
  return new TextDecoder().decode(Uint8Array.from(atob(s), (c) => c.charCodeAt(0)));
}
