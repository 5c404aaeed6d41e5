/**
 * subnet.env: the file other programs (CNI, docker, mk-docker-opts.sh) read to learn the subnet.
 *
 * ```
 * FLANNEL_NETWORK=10.1.0.0/16
 * FLANNEL_SUBNET=10.1.15.1/24
 * FLANNEL_IPV6_NETWORK=fc00::/48
 * FLANNEL_IPV6_SUBNET=fc00:0:0:22::1/64
 * FLANNEL_MTU=1450
 * FLANNEL_IPMASQ=false
 * ```
 *
 * `FLANNEL_SUBNET` and `FLANNEL_IPV6_SUBNET` are the lease's base address + 1 with the lease's
 * prefix length. The IPv4 lines are left out when IPv4 is disabled and the IPv6 lines unless
 * IPv6 is enabled, in upstream's order.
 */

import { addIP, IPNet } from "../ip.ts";

/** What subnet.env says. */
export interface SubnetFileContent {
  /** The overlay network (the config's `Network`); null when IPv4 is disabled. */
  network: IPNet | null;
  /** The lease (network address, e.g. 10.1.15.0/24); null when IPv4 is disabled. */
  subnet: IPNet | null;
  /** The config's `IPv6Network`; null unless IPv6 is enabled. */
  ipv6Network?: IPNet | null;
  /** The IPv6 lease; null unless IPv6 is enabled. */
  ipv6Subnet?: IPNet | null;
  mtu: number;
  ipMasq: boolean;
}

/**
 * The exact text of subnet.env.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { IPNet } from "../ip.ts";
 *
 * const text = formatSubnetFile({
 *   network: IPNet.mustParse("10.1.0.0/16"),
 *   subnet: IPNet.mustParse("10.1.15.0/24"),
 *   mtu: 1450,
 *   ipMasq: false,
 * });
 * assert.equal(
 *   text,
 *   "FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.15.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n",
 * );
 * const dual = formatSubnetFile({
 *   network: null,
 *   subnet: null,
 *   ipv6Network: IPNet.mustParse("fc00::/48"),
 *   ipv6Subnet: IPNet.mustParse("fc00:0:0:22::/64"),
 *   mtu: 1430,
 *   ipMasq: false,
 * });
 * assert.equal(
 *   dual,
 *   "FLANNEL_IPV6_NETWORK=fc00::/48\nFLANNEL_IPV6_SUBNET=fc00:0:0:22::1/64\nFLANNEL_MTU=1430\nFLANNEL_IPMASQ=false\n",
 * );
 * ```
 */
export function formatSubnetFile(c: SubnetFileContent): string {
  let out = "";
  if (c.network && c.subnet) {
    out += `FLANNEL_NETWORK=${c.network}\n` +
      `FLANNEL_SUBNET=${addIP(c.subnet.ip, 1n)}/${c.subnet.prefix}\n`;
  }
  if (c.ipv6Network && c.ipv6Subnet) {
    out += `FLANNEL_IPV6_NETWORK=${c.ipv6Network}\n` +
      `FLANNEL_IPV6_SUBNET=${addIP(c.ipv6Subnet.ip, 1n)}/${c.ipv6Subnet.prefix}\n`;
  }
  return out + `FLANNEL_MTU=${c.mtu}\n` + `FLANNEL_IPMASQ=${c.ipMasq}\n`;
}

/**
 * Writes subnet.env atomically: parent directories created (0755), a temp file in the same
 * directory, mode 0644 whatever the umask, then rename over `path`.
 */
export async function writeSubnetFile(path: string, c: SubnetFileContent): Promise<void> {
  const slash = path.lastIndexOf("/");
  const dir = slash > 0 ? path.slice(0, slash) : slash === 0 ? "/" : ".";
  const base = path.slice(slash + 1);
  try {
    await Deno.mkdir(dir, { recursive: true, mode: 0o755 });
  } catch (err) {
    throw new Error(`Cannot write subnet file ${path}: ${errorText(err)}`, { cause: err });
  }
  const tmp = `${dir === "/" ? "" : dir}/.${base}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  try {
    await Deno.writeTextFile(tmp, formatSubnetFile(c), { mode: 0o644 });
    await Deno.chmod(tmp, 0o644); // the create mode is masked by the umask
    await Deno.rename(tmp, path);
  } catch (err) {
    await Deno.remove(tmp).catch(() => {});
    throw new Error(`Cannot write subnet file ${path}: ${errorText(err)}`, { cause: err });
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** What {@link readSubnetFile} found. */
export interface PreviousSubnets {
  network?: IPNet;
  subnet?: IPNet;
  ipv6Network?: IPNet;
  ipv6Subnet?: IPNet;
}

const FIELDS: Record<string, { key: keyof PreviousSubnets; family: 4 | 6 }> = {
  FLANNEL_NETWORK: { key: "network", family: 4 },
  FLANNEL_SUBNET: { key: "subnet", family: 4 },
  FLANNEL_IPV6_NETWORK: { key: "ipv6Network", family: 6 },
  FLANNEL_IPV6_SUBNET: { key: "ipv6Subnet", family: 6 },
};

/**
 * Reads what parses from an existing subnet.env: `FLANNEL_NETWORK`, `FLANNEL_SUBNET`,
 * `FLANNEL_IPV6_NETWORK` and `FLANNEL_IPV6_SUBNET` (subnets as their network address:
 * 10.1.15.1/24 → 10.1.15.0/24). Missing file, junk lines, bad values or a value of the wrong
 * family: those fields are left out.
 */
export async function readSubnetFile(path: string): Promise<PreviousSubnets> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch {
    return {};
  }
  const out: PreviousSubnets = {};
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    const eq = line.indexOf("=");
    if (eq < 0) continue;
    const field = FIELDS[line.slice(0, eq).trim()];
    if (!field) continue;
    const value = line.slice(eq + 1).trim().replace(/^"(.*)"$/, "$1");
    const net = IPNet.parse(value, false);
    if (typeof net === "string" || net.family !== field.family) continue;
    out[field.key] = IPNet.of(net.ip, net.prefix);
  }
  return out;
}

/**
 * Takes the exclusive lock `<subnet-file>.lock` (flock, no wait) for the daemon's life, and
 * writes our pid into it: two daemons on one host would take two leases for one PublicIP and
 * fight over the devices and subnet.env. Throws naming the lock file (and the holder's pid when
 * it wrote one) when another process holds it. Close the returned file at exit (the kernel
 * drops the lock with the process anyway); the file itself stays, so no race on its removal.
 */
export function lockSubnetFile(subnetFile: string): Deno.FsFile {
  const path = `${subnetFile}.lock`;
  const slash = path.lastIndexOf("/");
  const dir = slash > 0 ? path.slice(0, slash) : slash === 0 ? "/" : ".";
  let file: Deno.FsFile;
  try {
    Deno.mkdirSync(dir, { recursive: true, mode: 0o755 });
    file = Deno.openSync(path, { read: true, write: true, create: true, mode: 0o644 });
  } catch (err) {
    throw new Error(`Cannot open lock file ${path}: ${errorText(err)}`, { cause: err });
  }
  let locked = false;
  try {
    locked = file.tryLockSync(true);
    if (!locked) {
      const buf = new Uint8Array(32);
      const n = file.readSync(buf) ?? 0;
      const pid = /^\d+/.exec(new TextDecoder().decode(buf.subarray(0, n)))?.[0];
      throw new Error(
        `Another flanneld holds the lock file ${path}` +
          `${pid ? ` (pid ${pid})` : ""}: one daemon per host and subnet file`,
      );
    }
    file.truncateSync(0);
    file.writeSync(new TextEncoder().encode(`${Deno.pid}\n`));
    return file;
  } catch (err) {
    file.close();
    if (!locked) throw err;
    throw new Error(`Cannot write lock file ${path}: ${errorText(err)}`, { cause: err });
  }
}
