/**
 * The UAPI socket `<dir>/flannel-wg.sock` (dir `/var/run/wireguard`, or `FLANNEL_WG_SOCKET_DIR`
 * for tests that run several hosts on one machine): `wg show flannel-wg` connects, sends
 * `get=1` and a blank line, and reads the answer (uapi.ts). `set=1` is refused with EPERM.
 *
 * Root only: the directory is made 0700 if we create it; the socket is bound inside a private
 * 0700 directory, chmod-ed to 0600, then renamed into place, so it is never reachable with a
 * looser mode. A stale socket (nothing answers) is replaced; a live one is an error.
 */

import { errText, logger } from "../../log.ts";
import { REFUSED } from "./uapi.ts";

const log = logger("wireguard");

/** The default UAPI directory, shared by wireguard-go and wireguard-tools. */
export const DEFAULT_SOCKET_DIR = "/var/run/wireguard";

/** The UAPI directory from the environment. */
export function socketDir(env: (name: string) => string | undefined = Deno.env.get): string {
  return env("FLANNEL_WG_SOCKET_DIR") || DEFAULT_SOCKET_DIR;
}

/** A running UAPI server; dispose to stop it and remove the socket. */
export class UapiServer implements AsyncDisposable {
  readonly #listener: Deno.UnixListener;
  readonly #accepting: Promise<void>;
  readonly #conns = new Set<Deno.UnixConn>();

  private constructor(
    readonly path: string,
    listener: Deno.UnixListener,
    dump: () => Promise<string>,
  ) {
    this.#listener = listener;
    this.#accepting = this.#accept(dump);
  }

  /** Creates the socket for interface `name` in `dir` and starts answering. */
  static async start(dir: string, name: string, dump: () => Promise<string>): Promise<UapiServer> {
    try {
      await Deno.mkdir(dir, { mode: 0o700 });
      await Deno.chmod(dir, 0o700);
    } catch (err) {
      if (!(err instanceof Deno.errors.AlreadyExists)) {
        throw new Error(`Cannot create the UAPI directory ${dir}: ${errText(err)}`);
      }
    }
    const path = `${dir}/${name}.sock`;
    if (await answers(path)) {
      throw new Error(`Cannot serve ${path}: another process answers on it (a second flanneld?)`);
    }
    await Deno.remove(path).catch(() => {});
    const tmp = await Deno.makeTempDir({ dir, prefix: `.${name}.` }); // 0700
    let listener: Deno.UnixListener | null = null;
    try {
      listener = Deno.listen({ transport: "unix", path: `${tmp}/s` });
      await Deno.chmod(`${tmp}/s`, 0o600);
      await Deno.rename(`${tmp}/s`, path);
    } catch (err) {
      listener?.close();
      throw new Error(`Cannot create the UAPI socket ${path}: ${errText(err)}`);
    } finally {
      await Deno.remove(tmp, { recursive: true }).catch(() => {});
    }
    return new UapiServer(path, listener, dump);
  }

  async #accept(dump: () => Promise<string>): Promise<void> {
    for (;;) {
      let conn: Deno.UnixConn;
      try {
        conn = await this.#listener.accept();
      } catch {
        return; // closed
      }
      this.#conns.add(conn);
      this.#serve(conn, dump).catch((err) => log.v(1, `UAPI client: ${errText(err)}`)).finally(
        () => {
          this.#conns.delete(conn);
          try {
            conn.close();
          } catch {
            // Already closed.
          }
        },
      );
    }
  }

  async #serve(conn: Deno.UnixConn, dump: () => Promise<string>): Promise<void> {
    const dec = new TextDecoder();
    const enc = new TextEncoder();
    let text = "";
    const buf = new Uint8Array(4096);
    // One request per connection is all `wg` sends; read up to the blank line (≤ 64 KiB).
    while (!text.includes("\n\n")) {
      const n = await conn.read(buf);
      if (n === null) return;
      text += dec.decode(buf.subarray(0, n));
      if (text.length > 65536) return;
    }
    const first = text.slice(0, text.indexOf("\n"));
    const answer = first === "get=1" ? await dump() : REFUSED;
    await conn.write(enc.encode(answer));
  }

  /** Stops answering and removes the socket. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.#listener.close();
    for (const c of this.#conns) {
      try {
        c.close();
      } catch {
        // Already closed.
      }
    }
    await this.#accepting;
    await Deno.remove(this.path).catch(() => {});
  }
}

async function answers(path: string): Promise<boolean> {
  try {
    const c = await Deno.connect({ transport: "unix", path });
    c.close();
    return true;
  } catch {
    return false;
  }
}
