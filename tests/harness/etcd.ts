/**
 * A real etcd for tests: one member, temp data dir, free ports, optional TLS (client certificates)
 * and user/password auth, optionally inside a network namespace; or a cluster of three members
 * ({@link EtcdCluster}). Keys are read and written through `etcdctl` so tests check what a user
 * would see. Members can be stopped, killed, frozen (SIGSTOP), wiped, and restored from a
 * snapshot.
 */

import { type CertFiles, makeCerts } from "./certs.ts";
import { markOwned, onKill, startTimeOf, unmarkOwned } from "./cleanup.ts";

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
  /** Peer port; 0 (default) picks a free one. */
  peerPort?: number;
  /** Member of a cluster (see {@link EtcdCluster}); default a one-member cluster. */
  member?: { name: string; initialCluster: string; token: string };
  /** Run etcd under this user id (its own uid lets iptables tell its packets apart). */
  uid?: number;
}

const dec = new TextDecoder();

function freePort(host: string): number {
  const l = Deno.listen({ hostname: host, port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** `host:port`, an IPv6 host in brackets (`[fd00:100::1]:2379`), as URLs write it. */
export function hostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

function randomPort(): number {
  return 20000 + Math.floor(Math.random() * 40000);
}

/** One etcd member started by a test. */
export class EtcdServer implements AsyncDisposable {
  /** `http(s)://host:port` (`http(s)://[v6]:port` for an IPv6 host). */
  readonly endpoint: string;
  /** The client certificate, key and CA when TLS is on. */
  readonly tlsFiles?: { caFile: string; certFile: string; keyFile: string };
  /** All certificate files (server ones too) when TLS is on. */
  readonly certs?: CertFiles;
  /** The etcd data directory (inside {@link tmpDir}). */
  readonly dataDir: string;
  #proc: Deno.ChildProcess | null = null;
  /** Drops the kill-time cleanup and owner marker of the running process. */
  #forgetProc: (() => void) | null = null;
  /** Drops the kill-time removal of {@link tmpDir}. */
  #forgetDir: (() => void) | null = null;
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
    this.endpoint = `${scheme}://${hostPort(host, port)}`;
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
      let peerPort = opts.peerPort ?? 0;
      if (opts.netns) {
        if (port === 0) port = randomPort();
        while (peerPort === 0 || peerPort === port) peerPort = randomPort();
      } else {
        if (port === 0) port = freePort(host);
        while (peerPort === 0 || peerPort === port) peerPort = freePort("127.0.0.1");
      }
      const tls = opts.tls || opts.clientCertAuth || opts.certs;
      const certs = opts.certs ??
        (tls
          ? await makeCerts(`${tmpDir}/certs`, { ips: host === "127.0.0.1" ? [] : [host] })
          : undefined);
      const s = new EtcdServer(tmpDir, opts, host, port, peerPort, certs);
      s.#spawn();
      if (opts.member) return s;
      await s.waitHealthy();
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

  /** The peer URL. */
  get peerUrl(): string {
    return `http://127.0.0.1:${this.peerPort}`;
  }

  get #name(): string {
    return this.opts.member?.name ?? "default";
  }

  get #initialCluster(): string {
    return this.opts.member?.initialCluster ?? `default=${this.peerUrl}`;
  }

  /** The process id of etcd while it runs. */
  get pid(): number | null {
    return this.#proc?.pid ?? null;
  }

  /** (Re)starts etcd on the same data dir and ports. */
  async start(): Promise<void> {
    if (this.#proc) return;
    this.#spawn();
    await this.waitHealthy();
  }

  #spawn(): void {
    const peer = this.peerUrl;
    const args = [
      "etcd",
      "--name",
      this.#name,
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
      this.#initialCluster,
      "--logger",
      "zap",
    ];
    if (this.opts.member) args.push("--initial-cluster-token", this.opts.member.token);
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
    const uid = this.opts.uid;
    const asUser = uid === undefined
      ? []
      : ["setpriv", `--reuid=${uid}`, `--regid=${uid}`, "--clear-groups"];
    if (uid !== undefined) Deno.chownSync(this.tmpDir, uid, uid);
    const argv = this.#wrap([...asUser, "sh", "-c", `exec ${quoted} >>etcd.log 2>&1`]);
    this.#proc = new Deno.Command(argv[0], {
      args: argv.slice(1),
      cwd: this.tmpDir,
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    const pid = this.#proc.pid;
    const marker = `etcd-${pid}`;
    // Killed with the test process (SIGTERM); test.sh kills it after a SIGKILL or SIGINT.
    markOwned(marker, `${startTimeOf(pid)} ${this.tmpDir}`);
    const forget = onKill(() => {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch { /* already gone */ }
      unmarkOwned(marker);
    });
    this.#forgetProc = () => {
      forget();
      unmarkOwned(marker);
    };
    this.#forgetDir ??= onKill(() => Deno.removeSync(this.tmpDir, { recursive: true }));
  }

  /** Waits until `etcdctl endpoint health` passes (20 s at most). */
  async waitHealthy(): Promise<void> {
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

  /** Freezes etcd (SIGSTOP): its sockets stay open, nothing answers. */
  pause(): void {
    this.#proc?.kill("SIGSTOP");
  }

  /** Thaws a frozen etcd (SIGCONT). */
  resume(): void {
    this.#proc?.kill("SIGCONT");
  }

  /** Kills etcd, deletes its data dir and starts it again empty (same ports, same name). */
  async wipe(): Promise<void> {
    await this.kill();
    await Deno.remove(this.dataDir, { recursive: true });
    await this.start();
  }

  /** Writes a snapshot of the store to `path` (`etcdctl snapshot save`). */
  async snapshot(path: string): Promise<void> {
    await this.etcdctl(["snapshot", "save", path]);
  }

  /**
   * Kills etcd, replaces its data dir by the snapshot at `path` (`etcdctl snapshot restore`, as an
   * operator restores a backup) and starts it again.
   */
  async restore(path: string): Promise<void> {
    await this.kill();
    await Deno.remove(this.dataDir, { recursive: true });
    const out = await new Deno.Command("etcdctl", {
      args: [
        "snapshot",
        "restore",
        path,
        `--data-dir=${this.dataDir}`,
        `--name=${this.#name}`,
        `--initial-cluster=${this.#initialCluster}`,
        `--initial-advertise-peer-urls=${this.peerUrl}`,
        ...(this.opts.member ? [`--initial-cluster-token=${this.opts.member.token}`] : []),
      ],
      env: { ETCDCTL_API: "3" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!out.success) {
      throw new Error(`etcdctl snapshot restore failed: ${dec.decode(out.stderr).trim()}`);
    }
    await this.start();
  }

  /** Stops etcd with SIGTERM and waits for it to exit. */
  async stop(): Promise<void> {
    const p = this.#proc;
    if (!p) return;
    this.#proc = null;
    this.#forgetProc?.();
    this.#forgetProc = null;
    try {
      p.kill("SIGTERM");
      p.kill("SIGCONT");
    } catch { /* already gone */ }
    await p.status;
  }

  /** Kills etcd with SIGKILL and waits for it to exit. */
  async kill(): Promise<void> {
    const p = this.#proc;
    if (!p) return;
    this.#proc = null;
    this.#forgetProc?.();
    this.#forgetProc = null;
    try {
      p.kill("SIGKILL");
      p.kill("SIGCONT");
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
    this.#forgetDir?.();
    this.#forgetDir = null;
  }
}

/** Options of {@link EtcdCluster.start}. */
export interface EtcdClusterOptions {
  /** Run the members (and etcdctl) inside this network namespace. */
  netns?: string;
  /** Listen IP of every member's client port, default 127.0.0.1. */
  host?: string;
  /** Number of members, default 3. */
  size?: number;
}

/** The connection mark of an isolated member's peer connections (see {@link EtcdCluster.isolate}). */
const ISOLATED_MARK = "0x7e7c";

/**
 * A real etcd cluster of three members (plain HTTP), each with its own data dir and ports; the
 * peers talk over 127.0.0.1 of the namespace.
 */
export class EtcdCluster implements AsyncDisposable {
  readonly #isolated = new Set<EtcdServer>();
  private constructor(readonly members: EtcdServer[], readonly opts: EtcdClusterOptions) {}

  /** Starts every member and waits until each one is healthy (has a leader). */
  static async start(opts: EtcdClusterOptions = {}): Promise<EtcdCluster> {
    const n = opts.size ?? 3;
    const host = opts.host ?? "127.0.0.1";
    const ports = new Set<number>();
    const pick = () => {
      let p: number;
      do p = opts.netns
        ? randomPort()
        : freePort(host === "127.0.0.1" ? host : "127.0.0.1"); while (ports.has(p));
      ports.add(p);
      return p;
    };
    const plan = Array.from({ length: n }, (_, i) => ({
      name: `m${i + 1}`,
      port: pick(),
      peerPort: pick(),
    }));
    const initialCluster = plan.map((m) => `${m.name}=http://127.0.0.1:${m.peerPort}`).join(",");
    const token = `fl-${crypto.randomUUID()}`;
    const members: EtcdServer[] = [];
    const c = new EtcdCluster(members, opts);
    try {
      for (const m of plan) {
        members.push(
          await EtcdServer.start({
            netns: opts.netns,
            host,
            port: m.port,
            peerPort: m.peerPort,
            member: { name: m.name, initialCluster, token },
            // Own uids in a namespace, so that isolate() can tell each member's packets apart.
            ...(opts.netns ? { uid: 40_001 + members.length } : {}),
          }),
        );
      }
      await Promise.all(members.map((m) => m.waitHealthy()));
      return c;
    } catch (err) {
      await c[Symbol.asyncDispose]();
      throw err;
    }
  }

  /** Every member's client URL, comma-separated (the value for `--etcd-endpoints`). */
  get endpoints(): string {
    return this.members.map((m) => m.endpoint).join(",");
  }

  /** Runs etcdctl against every running member not isolated (it fails over among them). */
  async etcdctl(
    args: string[],
    allowFail = false,
  ): Promise<{ code: number; stdout: string; stderr: string }> {
    const up = this.members.filter((m) => m.pid !== null && !this.#isolated.has(m));
    if (up.length === 0) throw new Error("No etcd member is running");
    return await up[0].etcdctl(
      [`--endpoints=${up.map((m) => m.endpoint).join(",")}`, ...args],
      allowFail,
    );
  }

  /** The member that is the raft leader now (asked of every running member). */
  async leader(): Promise<EtcdServer> {
    for (const m of this.members) {
      if (m.pid === null) continue;
      const r = await m.etcdctl(["endpoint", "status", "-w", "json"], true);
      if (r.code !== 0) continue;
      const [st] = JSON.parse(r.stdout) as {
        Status: { header: { member_id: number }; leader: number };
      }[];
      if (st.Status.leader === 0) continue;
      const list = await m.etcdctl(["member", "list", "-w", "json"]);
      const ms = (JSON.parse(list.stdout).members ?? []) as { ID: number; name: string }[];
      const name = ms.find((x) => x.ID === st.Status.leader)?.name;
      const leader = this.members.find((x) => x.opts.member?.name === name);
      if (leader) return leader;
    }
    throw new Error("No etcd member knows a leader");
  }

  /**
   * Cuts `member` off from the other members (its client port stays reachable): iptables in the
   * cluster's namespace drops its peer traffic, told apart by its uid and a connection mark.
   * Only in a namespace of the test's own.
   */
  async isolate(member: EtcdServer): Promise<void> {
    for (const rule of this.#isolation(member)) await this.#iptables(["-A", ...rule]);
    this.#isolated.add(member);
  }

  /** Undoes {@link isolate}. */
  async heal(member: EtcdServer): Promise<void> {
    for (const rule of this.#isolation(member)) await this.#iptables(["-D", ...rule]);
    this.#isolated.delete(member);
  }

  #isolation(m: EtcdServer): string[][] {
    if (!this.opts.netns || m.opts.uid === undefined) {
      throw new Error("isolate() needs a cluster in a namespace of the test's own");
    }
    const mark = ["-m", "connmark", "--mark", ISOLATED_MARK, "-j", "DROP"];
    return [
      // Every connection of the member but its client port's gets the mark…
      [
        "OUTPUT",
        ...["-p", "tcp", "-m", "owner", "--uid-owner", String(m.opts.uid)],
        ...["!", "--sport", String(m.port), "-j", "CONNMARK", "--set-mark", ISOLATED_MARK],
      ],
      // …and its packets are dropped both ways; so are new connections to its peer port.
      ["OUTPUT", ...mark],
      ["INPUT", ...mark],
      ["INPUT", "-p", "tcp", "--dport", String(m.peerPort), "-j", "DROP"],
    ];
  }

  async #iptables(args: string[]): Promise<void> {
    const out = await new Deno.Command("ip", {
      args: ["netns", "exec", this.opts.netns!, "iptables", "-w", ...args],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!out.success) {
      throw new Error(`iptables ${args.join(" ")} failed: ${dec.decode(out.stderr).trim()}`);
    }
  }

  /** Puts `key` through any running member. */
  async put(key: string, value: string): Promise<void> {
    await this.etcdctl(["put", "--", key, value]);
  }

  /** The value of `key`, null when absent. */
  async get(key: string): Promise<string | null> {
    const r = await this.etcdctl(["get", "-w", "json", "--", key]);
    const kvs = JSON.parse(r.stdout).kvs as { value: string }[] | undefined;
    return kvs?.length ? b64(kvs[0].value) : null;
  }

  /** Every key under `prefix` with its value. */
  async list(prefix: string): Promise<Record<string, string>> {
    const r = await this.etcdctl(["get", "--prefix", "-w", "json", "--", prefix]);
    const kvs = (JSON.parse(r.stdout).kvs ?? []) as { key: string; value: string }[];
    const out: Record<string, string> = {};
    for (const kv of kvs) out[b64(kv.key)] = b64(kv.value);
    return out;
  }

  /** Kills every member and removes their temp dirs. */
  async [Symbol.asyncDispose](): Promise<void> {
    await Promise.all(this.members.map((m) => m[Symbol.asyncDispose]()));
  }
}

function b64(s: string): string {
  return new TextDecoder().decode(Uint8Array.from(atob(s), (c) => c.charCodeAt(0)));
}
