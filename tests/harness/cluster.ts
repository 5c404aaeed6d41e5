/**
 * The namespace cluster every end-to-end test builds on.
 *
 * Layout: a hub namespace `fl<hex>-hub` holds a Linux bridge `br0` with 192.168.100.1/24 and runs
 * etcd on 192.168.100.1:2379. Each host is a namespace `fl<hex>-h<i>` whose veth `eth0`
 * (192.168.100.<10+i>/24) is attached to the bridge, with `lo` up and a default route via
 * 192.168.100.1, so flannel's default-route interface discovery finds `eth0`. The test process
 * stays in the root namespace and reaches etcd only through etcdctl (run inside the hub), so the
 * machine's own network namespace is never changed.
 *
 * Teardown (`await using cluster = await Cluster.create(…)`) kills the daemons (SIGKILL after a
 * grace period), stops etcd, deletes the host namespaces, then the hub, then the temp dir — also
 * on Ctrl-C (SIGINT) and on process unload.
 *
 * @example
 * ```ts ignore
 * await using cluster = await Cluster.create({ hosts: 2 });
 * await cluster.putConfig({ Network: "10.1.0.0/16", Backend: { Type: "alloc" } });
 * const d = cluster.hosts[0].startFlannel();
 * await d.waitReady();
 * ```
 */

import { onKill } from "./cleanup.ts";
import { Daemon } from "./daemon.ts";
import { ClusterEtcd, type EtcdHandle } from "./cluster_etcd.ts";
import {
  createNamespace,
  deleteNamespace,
  type ExecResult,
  run,
  runOk,
  uniqueTag,
} from "./netns.ts";

export { Daemon } from "./daemon.ts";
export type { EtcdHandle } from "./cluster_etcd.ts";
export type { ExecResult } from "./netns.ts";

/** The repository root (two levels above this file). */
export const REPO_ROOT: string = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");

/**
 * The daemon's V8 flags as `deno run` arguments, taken from deno.json's compile task (the one place
 * they are set), so that daemons started from source run as the compiled binary does.
 */
export const DAEMON_V8_FLAGS: string[] = (() => {
  const config = JSON.parse(Deno.readTextFileSync(`${REPO_ROOT}/deno.json`));
  const flags = /--v8-flags=(\S+)/.exec(config.tasks?.compile ?? "")?.[1];
  return flags ? [`--v8-flags=${flags}`] : [];
})();

/** The default etcd key prefix of flannel. */
export const ETCD_PREFIX = "/coreos.com/network";

/** The hub bridge's address, where etcd listens. */
export const HUB_IP = "192.168.100.1";

/** The hub bridge's IPv6 address (with `ipv6: true`): the hosts' IPv6 default gateway. */
export const HUB_IP6 = "fd00:100::1";

/** Options of {@linkcode Cluster.create}. */
export interface ClusterOptions {
  /** Hosts created up front (default 1). */
  hosts?: number;
  /** Plain HTTP etcd or TLS with client certificates (default "plain"). */
  etcd?: "plain" | "tls";
  /** Start etcd now (default true); otherwise call `cluster.etcd.start()` later. */
  startEtcd?: boolean;
  /** Underlay MTU of every host's eth0 (default 1500). */
  mtu?: number;
  /**
   * Kept for the scripts that pass it: every cluster is now torn down on SIGINT/SIGTERM (and the
   * process exits 130/143), see `cleanup.ts`.
   */
  handleSigint?: boolean;
  /**
   * Also an IPv6 underlay (default false): br0 gets fd00:100::1/64 and each host's eth0
   * fd00:100::<10+i>/64 with an IPv6 default route via the hub. Every address is `nodad`, so
   * it is usable at once (duplicate address detection would hold it tentative for a second).
   */
  ipv6?: boolean;
  /**
   * An IPv6-only underlay (default false; implies `ipv6`): neither br0 nor any eth0 has an IPv4
   * address, the hosts' only default route is the IPv6 one, and etcd listens on
   * `[fd00:100::1]:2379` ({@linkcode HUB_IP6}).
   */
  ipv6Only?: boolean;
}

/** Options of {@linkcode Cluster.addHost}. */
export interface HostOptions {
  /** Underlay MTU of this host's eth0 (default: the cluster's). */
  mtu?: number;
}

/** One host: a namespace with eth0 on the hub bridge. */
export class Host {
  /** `h1`, `h2`, … */
  readonly name: string;
  /** The namespace name, `fl<hex>-h<i>`. */
  readonly ns: string;
  /** The IPv4 underlay address of eth0 (not on eth0 with `ipv6Only`). */
  readonly ip: string;
  /** The IPv6 underlay address of eth0; null unless the cluster has `ipv6: true`. */
  readonly ip6: string | null;
  readonly iface = "eth0" as const;
  /** The underlay MTU of eth0. */
  readonly mtu: number;
  /** Where the daemon writes subnet.env. */
  readonly subnetFile: string;
  /** This host's temp dir (logs, subnet.env). */
  readonly dir: string;
  /** Every daemon started on this host, in order. */
  readonly daemons: Daemon[] = [];
  readonly #cluster: Cluster;

  constructor(cluster: Cluster, index: number, mtu: number) {
    this.#cluster = cluster;
    this.name = `h${index}`;
    this.ns = `${cluster.tag}-${this.name}`;
    this.ip = `192.168.100.${10 + index}`;
    this.ip6 = cluster.ipv6 ? `fd00:100::${10 + index}` : null;
    this.mtu = mtu;
    this.dir = `${cluster.dir}/${this.name}`;
    this.subnetFile = `${this.dir}/subnet.env`;
  }

  /** Runs a command inside the namespace. */
  exec(cmd: string[]): Promise<ExecResult> {
    return run(["ip", "netns", "exec", this.ns, ...cmd]);
  }

  /** Runs `ip -j <args>` inside the namespace and parses its JSON. */
  async ipJson<T = unknown>(args: string[]): Promise<T> {
    const out = await runOk(["ip", "-n", this.ns, "-j", ...args]);
    return JSON.parse(out.trim() === "" ? "[]" : out) as T;
  }

  /**
   * Starts `deno run -A --v8-flags=… main.ts` ({@link DAEMON_V8_FLAGS}) in this host with `--etcd-endpoints`, `--iface=eth0` and
   * `--subnet-file` (and the TLS files when etcd uses TLS), then `extraArgs` (which win, as the
   * last occurrence of a Go flag does). `--iface` is repeatable (the first match wins), so it is
   * left out when `extraArgs` choose the interface (`--iface`, `--iface-regex`,
   * `--iface-can-reach`) or `defaultIface` is false (discovery by the default route). The
   * environment is only PATH, HOME, DENO_DIR (shared with the test, so no download), NO_COLOR
   * and `env`.
   */
  startFlannel(
    extraArgs: string[] = [],
    env: Record<string, string> = {},
    { defaultIface = true }: { defaultIface?: boolean } = {},
  ): Daemon {
    const etcd = this.#cluster.etcd;
    const tls = etcd.tlsFiles;
    const chosen = extraArgs.some((a) => /^--?iface(-regex|-can-reach)?(=|$)/.test(a));
    const args = [
      `--etcd-endpoints=${etcd.endpoints}`,
      ...(defaultIface && !chosen ? ["--iface=eth0"] : []),
      `--subnet-file=${this.subnetFile}`,
      ...(tls
        ? [
          `--etcd-cafile=${tls.caFile}`,
          `--etcd-certfile=${tls.certFile}`,
          `--etcd-keyfile=${tls.keyFile}`,
        ]
        : []),
      ...extraArgs,
    ];
    const d = Daemon.spawn({
      ns: this.ns,
      // --cached-only: a namespace cannot reach the registry, so a module that setup did not
      // cache fails at once with its name instead of hanging until the ready timeout.
      cmd: [
        Deno.execPath(),
        "run",
        "--cached-only",
        "-A",
        ...DAEMON_V8_FLAGS,
        `${REPO_ROOT}/main.ts`,
        ...args,
      ],
      env: { ...baseEnv(), ...env },
      cwd: REPO_ROOT,
      logFile: `${this.dir}/flanneld.${this.daemons.length + 1}.log`,
      subnetFile: this.subnetFile,
    });
    this.daemons.push(d);
    return d;
  }

  /** Reads subnet.env as key/value pairs; null when absent. */
  async readSubnetEnv(): Promise<Record<string, string> | null> {
    let text: string;
    try {
      text = await Deno.readTextFile(this.subnetFile);
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return null;
      throw err;
    }
    const env: Record<string, string> = {};
    for (const line of text.split("\n")) {
      const i = line.indexOf("=");
      if (i > 0) env[line.slice(0, i)] = line.slice(i + 1);
    }
    return env;
  }

  /**
   * Puts the "container" address — FLANNEL_SUBNET's base+1 — as a /32 on `lo` (the kernel here
   * has no dummy module) and returns it. Idempotent.
   */
  async addContainerAddress(): Promise<string> {
    const env = await this.readSubnetEnv();
    const subnet = env?.FLANNEL_SUBNET;
    if (!subnet) throw new Error(`No FLANNEL_SUBNET in ${this.subnetFile}: start flannel first`);
    const ip = subnet.split("/")[0];
    const r = await run(["ip", "-n", this.ns, "addr", "replace", `${ip}/32`, "dev", "lo"]);
    if (r.code !== 0) {
      throw new Error(`Cannot add ${ip}/32 on lo in ${this.ns}: ${r.stderr.trim()}`);
    }
    return ip;
  }

  /**
   * Puts the IPv6 "container" address — FLANNEL_IPV6_SUBNET's base+1 — as a /128 on `lo`
   * (`nodad`) and returns it. Idempotent.
   */
  async addContainerAddress6(): Promise<string> {
    const env = await this.readSubnetEnv();
    const subnet = env?.FLANNEL_IPV6_SUBNET;
    if (!subnet) throw new Error(`No FLANNEL_IPV6_SUBNET in ${this.subnetFile}`);
    const ip = subnet.split("/")[0];
    const r = await run([
      "ip",
      "-n",
      this.ns,
      "addr",
      "replace",
      `${ip}/128`,
      "dev",
      "lo",
      "nodad",
    ]);
    if (r.code !== 0) {
      throw new Error(`Cannot add ${ip}/128 on lo in ${this.ns}: ${r.stderr.trim()}`);
    }
    return ip;
  }

  /** Pings `ip` from this host (optionally from a source address); rttMs is the average. */
  async ping(
    ip: string,
    opts: { count?: number; timeoutS?: number; from?: string } = {},
  ): Promise<{ ok: boolean; rttMs: number | null; output: string }> {
    const count = opts.count ?? 1;
    const cmd = ["ping", "-n", "-q", "-c", String(count), "-W", String(opts.timeoutS ?? 1)];
    if (count > 1) cmd.push("-i", "0.2");
    if (opts.from) cmd.push("-I", opts.from);
    const r = await this.exec([...cmd, ip]);
    const m = /= [\d.]+\/([\d.]+)\//.exec(r.stdout);
    return { ok: r.code === 0, rttMs: m ? Number(m[1]) : null, output: r.stdout + r.stderr };
  }
}

function baseEnv(): Record<string, string> {
  const home = Deno.env.get("HOME") ?? "/root";
  return {
    PATH: Deno.env.get("PATH") ?? "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
    HOME: home,
    DENO_DIR: Deno.env.get("DENO_DIR") ?? `${home}/.cache/deno`,
    NO_COLOR: "1",
  };
}

/** The kill-time teardown of each live cluster (see `cleanup.ts`: SIGTERM, SIGINT, unload). */
const live = new Map<Cluster, () => void>();

function track(c: Cluster): void {
  live.set(c, onKill(() => c.disposeSync()));
}

function untrack(c: Cluster): void {
  live.get(c)?.();
  live.delete(c);
}

/** A hub namespace with a bridge and etcd, plus host namespaces attached to it. */
export class Cluster implements AsyncDisposable {
  /** The `fl<4 hex>` prefix of every namespace of this cluster. */
  readonly tag: string;
  /** The hub namespace (bridge + etcd). */
  readonly hub: string;
  /** The temp dir holding host dirs, logs and subnet files. */
  readonly dir: string;
  /** etcd, reachable from every host at {@linkcode HUB_IP} ({@linkcode HUB_IP6} with `ipv6Only`). */
  readonly etcd: EtcdHandle;
  readonly hosts: Host[] = [];
  /** The default underlay MTU. */
  readonly mtu: number;
  /** Whether Ctrl-C tears the cluster down and exits: always (see `cleanup.ts`). */
  readonly handleSigint: boolean;
  /** Whether the underlay has IPv6 too. */
  readonly ipv6: boolean;
  /** Whether the underlay has IPv6 only (no IPv4 address on br0 or eth0). */
  readonly ipv6Only: boolean;
  #etcd: ClusterEtcd;
  #namespaces: string[] = [];
  #disposed = false;

  private constructor(tag: string, dir: string, opts: ClusterOptions) {
    this.tag = tag;
    this.hub = `${tag}-hub`;
    this.dir = dir;
    this.mtu = opts.mtu ?? 1500;
    this.ipv6Only = opts.ipv6Only ?? false;
    this.ipv6 = this.ipv6Only || (opts.ipv6 ?? false);
    this.#etcd = new ClusterEtcd(this.hub, this.ipv6Only ? HUB_IP6 : HUB_IP, opts.etcd === "tls");
    this.etcd = this.#etcd;
    this.handleSigint = true;
  }

  /** Builds the hub, `opts.hosts` hosts and (unless `startEtcd: false`) etcd. */
  static async create(opts: ClusterOptions = {}): Promise<Cluster> {
    const tag = uniqueTag();
    const dir = await Deno.makeTempDir({ prefix: `${tag}-` });
    const c = new Cluster(tag, dir, opts);
    track(c);
    try {
      await createNamespace(c.hub, c.dir);
      c.#namespaces.push(c.hub);
      await runOk(["ip", "-n", c.hub, "-batch", "-"], {
        stdin: [
          "link add br0 type bridge",
          ...(c.ipv6Only ? [] : [`addr add ${HUB_IP}/24 dev br0`]),
          ...(c.ipv6 ? [`addr add ${HUB_IP6}/64 dev br0 nodad`] : []),
          "link set br0 up",
          "",
        ].join("\n"),
      });
      for (let i = 0; i < (opts.hosts ?? 1); i++) await c.addHost();
      if (opts.startEtcd ?? true) await c.etcd.start();
    } catch (err) {
      await c[Symbol.asyncDispose]();
      throw err;
    }
    return c;
  }

  /** Adds a host namespace with eth0 on the hub bridge and a default route via the hub. */
  async addHost(opts: HostOptions = {}): Promise<Host> {
    const host = new Host(this, this.hosts.length + 1, opts.mtu ?? this.mtu);
    await Deno.mkdir(host.dir, { recursive: true });
    await createNamespace(host.ns);
    this.#namespaces.push(host.ns);
    this.hosts.push(host);
    const hubSide = `v${host.name}`;
    const mtu = String(host.mtu);
    await runOk([
      "ip",
      "-n",
      this.hub,
      "link",
      "add",
      hubSide,
      "mtu",
      mtu,
      "type",
      "veth",
      "peer",
      "name",
      "eth0",
      "netns",
      host.ns,
      "mtu",
      mtu,
    ]);
    await runOk(["ip", "-n", this.hub, "link", "set", hubSide, "master", "br0", "up"]);
    await runOk(["ip", "-n", host.ns, "-batch", "-"], {
      stdin: [
        ...(this.ipv6Only ? [] : [`addr add ${host.ip}/24 dev eth0`]),
        ...(host.ip6 ? [`addr add ${host.ip6}/64 dev eth0 nodad`] : []),
        "link set eth0 up",
        ...(this.ipv6Only ? [] : [`route add default via ${HUB_IP} dev eth0`]),
        ...(host.ip6 ? [`route add default via ${HUB_IP6} dev eth0`] : []),
        "",
      ].join("\n"),
    });
    return host;
  }

  /** Writes `<prefix>/config`; a string is written as is (for malformed configs). */
  async putConfig(config: unknown, prefix = ETCD_PREFIX): Promise<void> {
    const text = typeof config === "string" ? config : JSON.stringify(config);
    await this.etcd.put(`${prefix}/config`, text);
  }

  /** The subnet leases in etcd: key → parsed value. */
  async leases(prefix = ETCD_PREFIX): Promise<Record<string, unknown>> {
    const raw = await this.etcd.list(`${prefix}/subnets/`);
    return Object.fromEntries(Object.entries(raw).map(([k, v]) => [k, JSON.parse(v)]));
  }

  /** Every daemon started on any host. */
  get daemons(): Daemon[] {
    return this.hosts.flatMap((h) => h.daemons);
  }

  /** Kills daemons (SIGTERM, SIGKILL after `graceMs`), stops etcd, deletes namespaces and files. */
  async [Symbol.asyncDispose](graceMs = 1_000): Promise<void> {
    if (this.#disposed) return;
    this.#disposed = true;
    const errors: unknown[] = [];
    await Promise.all(this.daemons.map((d) => d.stop(graceMs).catch((e) => errors.push(e))));
    await this.#etcd.dispose().catch((e) => errors.push(e));
    this.#removeAll();
    untrack(this);
    if (errors.length > 0) {
      throw new AggregateError(errors, `Cluster ${this.tag} teardown failed: ${errors[0]}`);
    }
  }

  /** Synchronous teardown for Ctrl-C and unload: SIGKILL everything, delete namespaces and files. */
  disposeSync(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    for (const d of this.daemons) d.kill("SIGKILL");
    const etcdDir = this.#etcd.server?.tmpDir;
    this.#removeAll();
    if (etcdDir) {
      try {
        Deno.removeSync(etcdDir, { recursive: true });
      } catch {
        // Already gone.
      }
    }
    untrack(this);
  }

  #removeAll(): void {
    // Hosts first, then the hub; deleteNamespace kills whatever still runs inside (etcd too).
    for (const ns of [...this.#namespaces].reverse()) deleteNamespace(ns);
    this.#namespaces = [];
    if (Deno.env.get("FL_KEEP_LOGS") === "1") {
      console.error(`Cluster ${this.tag}: logs kept in ${this.dir}`);
      return;
    }
    try {
      Deno.removeSync(this.dir, { recursive: true });
    } catch {
      // Already gone.
    }
  }
}
