/**
 * The private key file, `/run/flannel/wgkey` unless `WIREGUARD_KEY_FILE` says otherwise (as
 * upstream): read when present, else generated and written (base64, as `wg genkey` prints it)
 * with mode 0600, so a restart keeps the key and peers need not learn a new one.
 */

import { generatePrivateKey, parseKey, toBase64 } from "./keys.ts";

/** The default key file (upstream's). */
export const DEFAULT_KEY_FILE = "/run/flannel/wgkey";

/** The key file path from the environment. */
export function keyFilePath(env: (name: string) => string | undefined = Deno.env.get): string {
  return env("WIREGUARD_KEY_FILE") || DEFAULT_KEY_FILE;
}

/** Reads the private key from `path`, or creates the file with a new key; `created` says which. */
export async function loadOrCreateKey(
  path: string,
): Promise<{ key: Uint8Array; created: boolean; warning?: string }> {
  let text: string | null = null;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) {
      throw new Error(`Cannot read WireGuard key file ${path}: ${(err as Error).message}`);
    }
  }
  if (text !== null) {
    let key: Uint8Array;
    try {
      key = parseKey(text, "private key");
    } catch (err) {
      throw new Error(`Cannot use WireGuard key file ${path}: ${(err as Error).message}`);
    }
    const mode = (await Deno.stat(path)).mode ?? 0;
    const warning = (mode & 0o077) !== 0
      ? `WireGuard key file ${path} has mode 0${(mode & 0o777).toString(8)}: ` +
        `other users may read the private key (chmod 600 it)`
      : undefined;
    return { key, created: false, warning };
  }
  const key = generatePrivateKey();
  const dir = path.slice(0, path.lastIndexOf("/"));
  try {
    if (dir !== "") await Deno.mkdir(dir, { recursive: true, mode: 0o755 });
    // createNew: never overwrite a key another process wrote meanwhile.
    await Deno.writeTextFile(path, toBase64(key), { createNew: true, mode: 0o600 });
    await Deno.chmod(path, 0o600); // the mode above is subject to the umask
  } catch (err) {
    throw new Error(`Cannot write WireGuard key file ${path}: ${(err as Error).message}`);
  }
  return { key, created: true };
}
