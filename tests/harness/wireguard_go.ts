/**
 * A host namespace running Debian's `wireguard-go` as an upstream flannel wireguard host would
 * (device `flannel-wg`, configured with `wg`), for interop tests and benchmarks.
 *
 * wireguard-go's UAPI socket lives in /var/run/wireguard, which every network namespace shares:
 * a holder process keeps a mount namespace with a tmpfs over /run, and every command runs inside
 * it through `nsenter`, so nothing is left in the machine's /run.
 */

import assert from "node:assert/strict";
import type { Host } from "./cluster.ts";
import { run, runOk } from "./netns.ts";

const PORT = 51820;

/** A `wg genkey` key pair, base64. */
export async function genkey(): Promise<{ priv: string; pub: string }> {
  const priv = (await runOk(["wg", "genkey"])).trim();
  const pub = (await runOk(["wg", "pubkey"], { stdin: priv })).trim();
  return { priv, pub };
}

/** An upstream-style WireGuard host made of wireguard-go, in its own mount namespace. */
export class WgGoHost implements AsyncDisposable {
  readonly #holder: Deno.ChildProcess;
  readonly #pid: number;
  private constructor(readonly host: Host, holder: Deno.ChildProcess, pid: number) {
    this.#holder = holder;
    this.#pid = pid;
  }

  static async start(host: Host): Promise<WgGoHost> {
    const holder = new Deno.Command("ip", {
      args: [
        "netns",
        "exec",
        host.ns,
        "unshare",
        "-m",
        "sh",
        "-c",
        "mount -t tmpfs tmpfs /run && mkdir -m 700 /run/wireguard && echo $$ && exec sleep 100000",
      ],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const reader = holder.stdout.pipeThrough(new TextDecoderStream()).getReader();
    const { value } = await reader.read();
    reader.releaseLock();
    const pid = Number(value?.trim());
    assert.ok(pid > 0, `mount namespace holder pid: ${value}`);
    return new WgGoHost(host, holder, pid);
  }

  /** Runs a command in h2's network and mount namespaces. */
  exec(cmd: string[], stdin?: string) {
    return run(["nsenter", "-t", String(this.#pid), "-m", "-n", ...cmd], { stdin });
  }

  async execOk(cmd: string[], stdin?: string): Promise<string> {
    const r = await this.exec(cmd, stdin);
    if (r.code !== 0) throw new Error(`${cmd.join(" ")}: ${r.stderr}`);
    return r.stdout;
  }

  /**
   * Starts wireguard-go as `flannel-wg` and configures it as upstream flannel would: the key,
   * ListenPort 51820, one peer per entry, MTU − 80, `address`/32, the route, and a "container"
   * address on lo. A peer's `endpoint` overrides `ip:51820` (an IPv6 one: `[addr]:port`);
   * `allowed` may list several prefixes, comma-separated. With `v6`, the device also gets the
   * IPv6 subnet base /128, the IPv6 route and an IPv6 container address, as upstream's single
   * device in Mode auto/ipv4/ipv6.
   */
  async up(opts: {
    priv: string;
    peers: { pub: string; ip: string; allowed: string; endpoint?: string }[];
    address: string;
    route: string;
    container: string;
    psk?: string;
    v6?: { address: string; route: string; container: string };
  }) {
    await this.execOk(["sh", "-c", "wireguard-go flannel-wg >/run/wg-go.log 2>&1"]);
    await this.execOk([
      "sh",
      "-c",
      "for i in $(seq 100); do [ -S /run/wireguard/flannel-wg.sock ] && exit 0; sleep 0.05; done; exit 1",
    ]);
    await this.execOk(["sh", "-c", "umask 077; cat > /run/wgkey"], opts.priv);
    const args = [
      "wg",
      "set",
      "flannel-wg",
      "private-key",
      "/run/wgkey",
      "listen-port",
      String(PORT),
    ];
    await this.execOk(args);
    if (opts.psk) await this.execOk(["sh", "-c", "umask 077; cat > /run/psk"], opts.psk);
    for (const p of opts.peers) {
      const endpoint = p.endpoint ?? `${p.ip}:${PORT}`;
      const peer = ["wg", "set", "flannel-wg", "peer", p.pub, "endpoint", endpoint];
      peer.push("allowed-ips", p.allowed);
      if (opts.psk) peer.push("preshared-key", "/run/psk");
      await this.execOk(peer);
    }
    await this.execOk(["ip", "link", "set", "flannel-wg", "mtu", String(this.host.mtu - 80)]);
    await this.execOk(["ip", "addr", "replace", `${opts.address}/32`, "dev", "flannel-wg"]);
    await this.execOk(["ip", "link", "set", "flannel-wg", "up"]);
    await this.execOk(["ip", "route", "replace", opts.route, "dev", "flannel-wg"]);
    await this.execOk(["ip", "addr", "replace", `${opts.container}/32`, "dev", "lo"]);
    if (opts.v6) {
      const v6 = opts.v6;
      await this.execOk(["ip", "addr", "replace", `${v6.address}/128`, "dev", "flannel-wg"]);
      await this.execOk(["ip", "-6", "route", "replace", v6.route, "dev", "flannel-wg"]);
      await this.execOk(["ip", "addr", "replace", `${v6.container}/128`, "dev", "lo", "nodad"]);
    }
  }

  /** Stops wireguard-go (its device goes with it). */
  async down(): Promise<void> {
    await this.exec([
      "sh",
      "-c",
      "pkill -x wireguard-go -n; for i in $(seq 100); do pgrep -x wireguard-go >/dev/null || exit 0; sleep 0.05; done",
    ]);
  }

  /** The wireguard-go process id, or null when it is not running. */
  async pid(): Promise<number | null> {
    const r = await this.exec(["pgrep", "-x", "wireguard-go"]);
    const pid = Number(r.stdout.trim().split("\n")[0]);
    return pid > 0 ? pid : null;
  }

  /** `wg show flannel-wg dump`, split into fields. */
  async dump(): Promise<string[][]> {
    const out = await this.execOk(["wg", "show", "flannel-wg", "dump"]);
    return out.trim().split("\n").map((l) => l.split("\t"));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.down().catch(() => {});
    try {
      this.#holder.kill("SIGKILL");
    } catch {
      // gone
    }
    await this.#holder.stdout.cancel().catch(() => {});
    await this.#holder.stderr.cancel().catch(() => {});
    await this.#holder.status;
  }
}
