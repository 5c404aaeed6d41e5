/**
 * subnet.env: the file other programs (CNI, docker, mk-docker-opts.sh) read to learn the subnet.
 *
 * ```
 * FLANNEL_NETWORK=10.1.0.0/16
 * FLANNEL_SUBNET=10.1.15.1/24
 * FLANNEL_MTU=1450
 * FLANNEL_IPMASQ=false
 * ```
 *
 * `FLANNEL_SUBNET` is the lease's base address + 1 with the lease's prefix length.
 */

import { addIP, IPNet, parseCIDR } from "../ip.ts";

/** What subnet.env says. */
export interface SubnetFileContent {
  /** The overlay network (the config's `Network`). */
  network: IPNet;
  /** The lease (network address, e.g. 10.1.15.0/24). */
  subnet: IPNet;
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
 * ```
 */
export function formatSubnetFile(c: SubnetFileContent): string {
  return `FLANNEL_NETWORK=${c.network}\n` +
    `FLANNEL_SUBNET=${addIP(c.subnet.ip, 1n)}/${c.subnet.prefix}\n` +
    `FLANNEL_MTU=${c.mtu}\n` +
    `FLANNEL_IPMASQ=${c.ipMasq}\n`;
}

/**
 * Writes subnet.env atomically: parent directories created (0755), a temp file in the same
 * directory, mode 0644 whatever the umask, then rename over `path`.
 */
export async function writeSubnetFile(path: string, c: SubnetFileContent): Promise<void> {
  const slash = path.lastIndexOf("/");
  const dir = slash > 0 ? path.slice(0, slash) : slash === 0 ? "/" : ".";
  const base = path.slice(slash + 1);
  await Deno.mkdir(dir, { recursive: true, mode: 0o755 });
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

/**
 * Reads what parses from an existing subnet.env: `FLANNEL_NETWORK` and `FLANNEL_SUBNET` (as its
 * network address: 10.1.15.1/24 → 10.1.15.0/24). Missing file, junk lines, bad values: those
 * fields are left out.
 */
export async function readSubnetFile(path: string): Promise<{ network?: IPNet; subnet?: IPNet }> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch {
    return {};
  }
  const out: { network?: IPNet; subnet?: IPNet } = {};
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    const eq = line.indexOf("=");
    if (eq < 0) continue;
    const name = line.slice(0, eq).trim();
    const value = line.slice(eq + 1).trim().replace(/^"(.*)"$/, "$1");
    if (name !== "FLANNEL_NETWORK" && name !== "FLANNEL_SUBNET") continue;
    const net = parseCIDR(value, false);
    if (typeof net === "string") continue;
    const masked = IPNet.of(net.ip, net.prefix);
    if (name === "FLANNEL_NETWORK") out.network = masked;
    else out.subnet = masked;
  }
  return out;
}
