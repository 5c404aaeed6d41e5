/**
 * Upstream flannel daemons (Go, built by `scripts/build-upstream.sh`) on the hosts of a namespace
 * cluster, next to ours, and an etcd with the v2 API enabled for v0.4.0.
 *
 * The binaries live in `FL_UPSTREAM_DIR` (default `/var/cache/flannel-tests/upstream`):
 * `flanneld-v0.20.2` speaks the etcd v3 API and shares our key layout; `flanneld-v0.4.0` speaks
 * only the v2 API, whose store etcd 3.4 keeps apart from the v3 one (`--enable-v2`).
 * {@linkcode upstreamMissing} says why a test must be skipped on a machine without them.
 */

import { Daemon, type Host } from "./cluster.ts";
import { run, runOk } from "./netns.ts";

/** The upstream releases the tests run. */
export type UpstreamVersion = "v0.20.2" | "v0.4.0";

/** Where `scripts/build-upstream.sh` puts the binaries. */
export const UPSTREAM_DIR: string = Deno.env.get("FL_UPSTREAM_DIR") ??
  "/var/cache/flannel-tests/upstream";

/** The path of an upstream binary. */
export function upstreamBinary(version: UpstreamVersion): string {
  return `${UPSTREAM_DIR}/flanneld-${version}`;
}

/** Why `version` cannot run here (binary missing or not executable), or null when it can. */
export function upstreamMissing(version: UpstreamVersion): string | null {
  const path = upstreamBinary(version);
  try {
    const st = Deno.statSync(path);
    if (!st.isFile || ((st.mode ?? 0) & 0o111) === 0) return `${path} is not an executable file`;
    return null;
  } catch {
    return `${path} is missing: build it with scripts/build-upstream.sh <flannel git dir>`;
  }
}

/** Options of {@linkcode startUpstream}. */
export interface UpstreamOptions {
  /** The etcd client URL. */
  endpoints: string;
  /** `--etcd-prefix` (default flannel's). */
  prefix?: string;
  /** More flags, after ours. */
  extraArgs?: string[];
}

/**
 * Starts upstream flanneld `version` on `host` with `--iface=eth0`, the host's subnet file and no
 * masquerading (v0.20.2 also without its FORWARD rules, which need nothing from the test). The
 * daemon is recorded in `host.daemons`, so the cluster's teardown stops it.
 */
export function startUpstream(host: Host, version: UpstreamVersion, opts: UpstreamOptions): Daemon {
  const args = [
    `--etcd-endpoints=${opts.endpoints}`,
    "--iface=eth0",
    `--subnet-file=${host.subnetFile}`,
    "--ip-masq=false",
    ...(opts.prefix ? [`--etcd-prefix=${opts.prefix}`] : []),
    ...(version === "v0.20.2" ? ["--iptables-forward-rules=false"] : []),
    ...(opts.extraArgs ?? []),
  ];
  const d = Daemon.spawn({
    ns: host.ns,
    cmd: [upstreamBinary(version), ...args],
    env: {
      PATH: Deno.env.get("PATH") ?? "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
      HOME: host.dir,
    },
    cwd: host.dir,
    logFile: `${host.dir}/flanneld-${version}.${host.daemons.length + 1}.log`,
    subnetFile: host.subnetFile,
  });
  host.daemons.push(d);
  return d;
}

/**
 * An etcd 3.4 with the v2 API on (`--enable-v2`) in a namespace, for v0.4.0 and ours at once:
 * one server, two stores that do not see each other's keys.
 */
export class EtcdV2 implements AsyncDisposable {
  /** The client URL. */
  readonly endpoint: string;
  readonly #ns: string;
  readonly #dir: string;
  #proc: Deno.ChildProcess | null = null;

  private constructor(ns: string, host: string, port: number, dir: string) {
    this.#ns = ns;
    this.#dir = dir;
    this.endpoint = `http://${host}:${port}`;
  }

  /** Starts etcd in `ns` listening on `host:port` (peer port `port + 1` on 127.0.0.1). */
  static async start(ns: string, host: string, port = 2479): Promise<EtcdV2> {
    const dir = await Deno.makeTempDir({ prefix: "fl-etcdv2-" });
    const e = new EtcdV2(ns, host, port, dir);
    const peer = `http://127.0.0.1:${port + 1}`;
    const args = [
      "--enable-v2",
      "--data-dir",
      `${dir}/data`,
      "--listen-client-urls",
      e.endpoint,
      "--advertise-client-urls",
      e.endpoint,
      "--listen-peer-urls",
      peer,
      "--initial-advertise-peer-urls",
      peer,
      "--initial-cluster",
      `default=${peer}`,
      "--logger",
      "zap",
      "--log-outputs",
      `${dir}/etcd.log`,
    ];
    e.#proc = new Deno.Command("ip", {
      args: ["netns", "exec", ns, "etcd", ...args],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    const deadline = Date.now() + 20_000;
    for (;;) {
      const r = await e.#ctl("3", ["endpoint", "health"]);
      if (r.code === 0) return e;
      if (Date.now() > deadline) {
        await e[Symbol.asyncDispose]();
        throw new Error(`etcd --enable-v2 in ${ns} not healthy within 20 s: ${r.stderr.trim()}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  #ctl(api: "2" | "3", args: string[]) {
    return run([
      "ip",
      "netns",
      "exec",
      this.#ns,
      "env",
      `ETCDCTL_API=${api}`,
      "etcdctl",
      `--endpoints=${this.endpoint}`,
      ...args,
    ]);
  }

  /** Sets a key in the v2 store. */
  async putV2(key: string, value: string): Promise<void> {
    await runOk(["ip", "netns", "exec", this.#ns, "curl", "-sfS", "-X", "PUT", ...[
      `${this.endpoint}/v2/keys${key}`,
      "--data-urlencode",
      `value=${value}`,
    ]]);
  }

  /** The keys and values under a v2 directory (`{}` when the directory does not exist). */
  async listV2(dir: string): Promise<Record<string, string>> {
    const r = await run(["ip", "netns", "exec", this.#ns, "curl", "-sS", ...[
      `${this.endpoint}/v2/keys${dir}?recursive=true`,
    ]]);
    if (r.code !== 0) throw new Error(`v2 list ${dir}: ${r.stderr.trim()}`);
    const body = JSON.parse(r.stdout) as {
      errorCode?: number;
      node?: { nodes?: { key: string; value?: string }[] };
    };
    if (body.errorCode === 100) return {};
    if (body.errorCode) throw new Error(`v2 list ${dir}: ${r.stdout.trim()}`);
    const out: Record<string, string> = {};
    for (const n of body.node?.nodes ?? []) if (n.value !== undefined) out[n.key] = n.value;
    return out;
  }

  /** Puts a key in the v3 store. */
  async putV3(key: string, value: string): Promise<void> {
    const r = await this.#ctl("3", ["put", "--", key, value]);
    if (r.code !== 0) throw new Error(`v3 put ${key}: ${r.stderr.trim()}`);
  }

  /** The keys and values under a v3 prefix. */
  async listV3(prefix: string): Promise<Record<string, string>> {
    const r = await this.#ctl("3", ["get", "--prefix", "-w", "json", "--", prefix]);
    if (r.code !== 0) throw new Error(`v3 list ${prefix}: ${r.stderr.trim()}`);
    const kvs = (JSON.parse(r.stdout).kvs ?? []) as { key: string; value: string }[];
    const b64 = (s: string) =>
      new TextDecoder().decode(Uint8Array.from(atob(s), (c) => c.charCodeAt(0)));
    return Object.fromEntries(kvs.map((kv) => [b64(kv.key), b64(kv.value)]));
  }

  /** Kills etcd and removes its data. */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#proc) {
      try {
        this.#proc.kill("SIGKILL");
      } catch {
        // Already gone.
      }
      await this.#proc.status;
      this.#proc = null;
    }
    await Deno.remove(this.#dir, { recursive: true }).catch(() => {});
  }
}
