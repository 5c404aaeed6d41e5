/**
 * The TLS files of `--etcd-cafile`, `--etcd-certfile` and `--etcd-keyfile`, read and checked once
 * at start: grpc-js accepts any bytes and only fails each handshake later, with texts such as
 * "unsupported protocol" or "write EPIPE", retried forever.
 */

import { createPrivateKey, X509Certificate } from "node:crypto";
import { Buffer } from "node:buffer";
import { errText } from "../../log.ts";

/** The PEM contents of the TLS files given (null for each one not given). */
export interface TlsFiles {
  ca: Buffer | null;
  key: Buffer | null;
  cert: Buffer | null;
  /** The path of the client certificate, for error texts. */
  certFile: string | null;
}

/**
 * Reads and checks the TLS files: each one parses as what it should be, key and certificate come
 * together and belong to each other. Throws a one-line error naming the file otherwise.
 *
 * @example
 * ```ts
 * import { readTlsFiles } from "./tls.ts";
 * const none = readTlsFiles({});
 * if (none.ca !== null || none.cert !== null) throw new Error("nothing was given");
 * ```
 */
export function readTlsFiles(
  opts: { caFile?: string; certFile?: string; keyFile?: string },
): TlsFiles {
  const ca = readPem("CA file", opts.caFile, "certificate");
  const key = readPem("key file", opts.keyFile, "private key");
  const cert = readPem("certificate file", opts.certFile, "certificate");
  if ((key === null) !== (cert === null)) {
    throw new Error("Etcd TLS needs both --etcd-keyfile and --etcd-certfile");
  }
  if (key && cert && !new X509Certificate(cert).checkPrivateKey(createPrivateKey(key))) {
    throw new Error(
      `Etcd certificate file ${opts.certFile} does not match key file ${opts.keyFile}`,
    );
  }
  return { ca, key, cert, certFile: cert ? opts.certFile! : null };
}

function readPem(
  what: string,
  path: string | undefined,
  kind: "certificate" | "private key",
): Buffer | null {
  if (!path) return null;
  let pem: Buffer;
  try {
    pem = Buffer.from(Deno.readFileSync(path));
  } catch (err) {
    throw new Error(`Cannot read etcd ${what} ${path}: ${errText(err)}`, { cause: err });
  }
  try {
    if (kind === "certificate") new X509Certificate(pem);
    else createPrivateKey(pem);
  } catch (err) {
    throw new Error(`Etcd ${what} ${path} is not a PEM ${kind}: ${errText(err)}`, { cause: err });
  }
  return pem;
}
